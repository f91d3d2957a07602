package engine

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
)

// TestEndpointTestLogKeptWhileTheEndpointIs: the sweep that removes deleted
// subscriptions' attempt logs keeps an endpoint's log of test sends while the
// endpoint exists, and removes it once the endpoint is deleted.
func TestEndpointTestLogKeptWhileTheEndpointIs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, _ request) { w.WriteHeader(http.StatusNoContent) })
	f.endpoint("erp", rc)
	f.build()
	routes := &switchRoutes{}
	routes.cur.Store(f.reg)
	gone, err := registry.NewStatic(registry.StaticObjects{}, registry.Options{SSRF: loopback()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gone.Close)

	ctx := context.Background()
	epLog := queue.EndpointLog(ns, "erp", "uid-ep-erp")
	// A deleted subscription's log: its removal shows the sweep has run.
	deleted := queue.SubscriptionID{Namespace: ns, Name: "deleted", UID: "uid-deleted"}
	for _, id := range []queue.SubscriptionID{epLog, deleted} {
		if err := f.q.RecordAttempt(ctx, id, queue.Attempt{Time: time.Now(), StatusCode: 200}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(id queue.SubscriptionID) int {
		a, err := f.q.RecentAttempts(ctx, id, 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(a)
	}
	eventually(t, "both logs stored", func() bool {
		subjects, _ := queueState(t, f)
		return len(subjects) == 2
	})

	opts := testOptions()
	opts.SweepEvery = 100 * time.Millisecond
	f.startRoutes(routes, opts)
	eventually(t, "the deleted subscription's log removed", func() bool { return count(deleted) == 0 })
	if n := count(epLog); n != 1 {
		t.Fatalf("the endpoint's test log has %d entries after the sweep, want 1", n)
	}

	routes.cur.Store(gone)
	eventually(t, "the deleted endpoint's test log removed", func() bool { return count(epLog) == 0 })
}
