package engine

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/registry"
)

// queueState lists, per stream, the subjects holding messages and the
// durable consumers: what the queue keeps on the server.
func queueState(t testing.TB, f *fixture) (subjects, consumers []string) {
	t.Helper()
	js, err := jetstream.New(f.q.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		// Retained events belong to the namespace, not to a subscription: they
		// stay for the retention window whatever happens to the objects.
		// The dispatchers' membership records belong to the replicas.
		if name == "HL_RETAINED" || name == "HL_MEMBERS" {
			continue
		}
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			t.Fatal(err)
		}
		for subj := range info.State.Subjects {
			subjects = append(subjects, subj)
		}
		cs := s.ConsumerNames(ctx)
		for c := range cs.Name() {
			consumers = append(consumers, name+"/"+c)
		}
		if err := cs.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(subjects)
	slices.Sort(consumers)
	return subjects, consumers
}

func ordered(s *hooklinev1.Subscription) {
	policy(func(p *hooklinev1.DeliveryPolicy) { p.Ordering = hooklinev1.OrderingOrdered })(s)
}

func withUID(uid string) func(*hooklinev1.Subscription) {
	return func(s *hooklinev1.Subscription) { s.UID = types.UID(uid) }
}

// TestDeletedSubscriptionLeavesNothing: deleting subscriptions removes their
// dead letters, attempt log and ordered lane from the queue, and a new
// subscription of the same name starts clean.
func TestDeletedSubscriptionLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var ok successes
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		if strings.Contains(string(r.body), `"id":"fail"`) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ok.add(r.id())
		w.WriteHeader(http.StatusNoContent)
	})
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp", schedule("1s"), func(s *hooklinev1.Subscription) { s.Spec.Filter = `data.id == "fail"` })
	f.subscription("orders", "erp", ordered, func(s *hooklinev1.Subscription) { s.Spec.Filter = `data.id != "fail"` })
	f.build()
	before := f.reg
	routes := &switchRoutes{}
	routes.cur.Store(before)

	// Deleted: only the endpoint is left.
	endpointOnly := f.objs
	endpointOnly.Subscriptions = nil
	gone, err := registry.NewStatic(endpointOnly, registry.Options{SSRF: loopback()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gone.Close)
	// Created again under the same name: another object.
	f.objs.Subscriptions = nil
	f.subscription("invoices", "erp", withUID("uid-sub-invoices-2"))
	again, err := registry.NewStatic(f.objs, registry.Options{SSRF: loopback()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(again.Close)

	opts := testOptions()
	opts.SweepEvery = 100 * time.Millisecond
	f.reg = before
	f.startRoutes(routes, opts)

	f.publish("fail", "o1")
	eventually(t, "the dead letter", func() bool { return len(f.dead("invoices")) == 1 })
	eventually(t, "the ordered delivery", func() bool { return len(ok.get()) == 1 })
	eventually(t, "the attempt logs", func() bool { return len(f.attempts("invoices")) == 2 && len(f.attempts("orders")) == 1 })
	subjects, consumers := queueState(t, f)
	t.Logf("before deleting: subjects %v, consumers %v", subjects, consumers)
	if !slices.Contains(consumers, "HL_DELIVERIES/ord__team-a__orders") {
		t.Fatalf("consumers %v, want the ordered lane of orders", consumers)
	}

	routes.cur.Store(gone)
	wantConsumers := idleConsumers()
	eventually(t, "nothing left of the deleted subscriptions", func() bool {
		subjects, consumers = queueState(t, f)
		return len(subjects) == 0 && slices.Equal(consumers, wantConsumers)
	})

	routes.cur.Store(again)
	f.reg = again
	if d := f.dead("invoices"); len(d) != 0 {
		t.Errorf("the new invoices has dead letters %+v", d)
	}
	if a := f.attempts("invoices"); len(a) != 0 {
		t.Errorf("the new invoices has attempts %+v", a)
	}
	f.publish("n1")
	eventually(t, "the new subscription's delivery", func() bool { return len(f.attempts("invoices")) == 1 })
	eventually(t, "the new object's attempt log, and nothing else, on the server", func() bool {
		subjects, consumers = queueState(t, f)
		return slices.Equal(subjects, []string{"hl.att.team-a.invoices.uid-sub-invoices-2"}) && slices.Equal(consumers, wantConsumers)
	})
}
