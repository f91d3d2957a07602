package engine

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
)

// TestParkedBacklogFollowsTheSubscription: deliveries parked for a dead
// endpoint stay parked, without going round, while their subscription
// points at a deleted endpoint, and are delivered once it points at a live
// one; nothing is left in the queue afterwards.
func TestParkedBacklogFollowsTheSubscription(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	down := newReceiver(t, false, func(w http.ResponseWriter, r request) { w.WriteHeader(http.StatusInternalServerError) })
	var ok successes
	up := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		ok.add(r.id())
		w.WriteHeader(http.StatusNoContent)
	})
	f.endpoint("old", down)
	f.endpoint("new", up)
	f.subscription("invoices", "old", schedule("1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"))
	static := func(objs registry.StaticObjects) *registry.Registry {
		r, err := registry.NewStatic(objs, registry.Options{SSRF: loopback()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		return r
	}
	pointedAtOld := static(f.objs)
	// The old endpoint is deleted; the subscription still names it.
	oldDeleted := f.objs
	oldDeleted.Endpoints = slices.DeleteFunc(slices.Clone(f.objs.Endpoints), func(ep hooklinev1.WebhookEndpoint) bool { return ep.Name == "old" })
	dangling := static(oldDeleted)
	// Re-pointed at the live endpoint.
	repointed := oldDeleted
	repointed.Subscriptions = slices.Clone(f.objs.Subscriptions)
	repointed.Subscriptions[0].Spec.EndpointRef.Name = "new"
	live := static(repointed)

	routes := &switchRoutes{}
	routes.cur.Store(pointedAtOld)
	f.reg = pointedAtOld
	opts := testOptions()
	opts.Breaker = BreakerConfig{Threshold: 3, MinCooldown: time.Hour, MaxCooldown: time.Hour}
	opts.UnparkCheck = 200 * time.Millisecond
	opts.SweepEvery = 200 * time.Millisecond
	eng := f.startRoutes(routes, opts)

	const n = 20
	f.publish(ids(n)...)
	eventually(t, "the backlog parked for the dead endpoint", func() bool { return f.parked("old") == n })
	failed := down.count()

	routes.cur.Store(dangling)
	// Ten unpark checks: the backlog stays where it is, and nothing moves.
	moved := metricValue(eng.m.unparks.WithLabelValues(ns, "old"))
	deadline := time.Now().Add(10 * opts.UnparkCheck)
	for time.Now().Before(deadline) {
		if p := f.parked("old"); p != n {
			t.Fatalf("%d parked while the subscription points at a deleted endpoint, want all %d kept", p, n)
		}
		time.Sleep(opts.UnparkCheck / 2)
	}
	// Status counts it as the subscription's backlog.
	bl, err := f.q.Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := bl.ParkedBySubscription[queue.SubscriptionKey{Namespace: ns, Subscription: "invoices"}]; got != n {
		t.Errorf("backlog of the subscription %d, want %d parked", got, n)
	}
	if m := metricValue(eng.m.unparks.WithLabelValues(ns, "old")); m != moved {
		t.Errorf("%v deliveries unparked for a deleted endpoint, want none", m-moved)
	}

	routes.cur.Store(live)
	f.reg = live
	eventually(t, "every delivery at the new endpoint", func() bool { return len(ok.get()) == n })
	for id, c := range ok.get() {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
	if c := down.count(); c != failed {
		t.Errorf("the old receiver got %d more requests after the subscription left it", c-failed)
	}
	eventually(t, "nothing but the attempt log left in the queue", func() bool {
		subjects, consumers := queueState(t, f)
		return slices.Equal(subjects, []string{"hl.att.team-a.invoices.uid-sub-invoices"}) &&
			slices.Equal(consumers, idleConsumers())
	})
}
