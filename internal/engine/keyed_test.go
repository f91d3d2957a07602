package engine

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
)

// TestOrderingKeyPicksTheLane: a subscription ordered per key sends each
// event to the lane of its key; an event without the key goes to the empty
// key's lane and is counted, not dropped; and the keyed lanes deliver.
func TestOrderingKeyPicksTheLane(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) { w.WriteHeader(http.StatusNoContent) })
	f.endpoint("erp", rc)
	lanes := int32(4)
	keyed := func(name, key string) {
		f.subscription(name, "erp", func(s *hooklinev1.Subscription) {
			s.Spec.Delivery = &hooklinev1.DeliveryPolicy{Ordering: hooklinev1.OrderingOrdered, OrderingKey: key, OrderingLanes: &lanes}
		})
	}
	keyed("by-id", "data.id")             // event data is {"id": <event id>, "amount": 42}
	keyed("by-customer", "data.customer") // missing: the empty key
	keyed("by-amount", "data.amount")     // a number, not a string: the empty key
	eng := f.start(testOptions())

	ds, err := eng.Match(context.Background(), event("e7"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"by-id": queue.KeyLane("e7", 4), "by-customer": queue.KeyLane("", 4), "by-amount": queue.KeyLane("", 4)}
	if len(ds) != len(want) {
		t.Fatalf("Match gave %d deliveries, want %d", len(ds), len(want))
	}
	for _, d := range ds {
		if !d.Ordered || d.Lane != want[d.Subscription] {
			t.Errorf("%s: ordered %v, lane %d; want ordered on lane %d", d.Subscription, d.Ordered, d.Lane, want[d.Subscription])
		}
	}
	for _, sub := range []string{"by-customer", "by-amount"} {
		if got := metricValue(f.eng.m.keyMissing.WithLabelValues(ns, sub)); got != 1 {
			t.Errorf("%s: ordering key missing metric %v, want 1", sub, got)
		}
	}
	if got := metricValue(f.eng.m.keyMissing.WithLabelValues(ns, "by-id")); got != 0 {
		t.Errorf("by-id: ordering key missing metric %v, want 0", got)
	}

	const n = 12
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("k%d", i))
	}
	f.publish(ids...)
	eventually(t, "every delivery of the three subscriptions", func() bool { return rc.count() >= 3*n })
}

// TestInvalidOrderingKeyIsUnusable: the dispatcher refuses a key that does
// not give a string, naming the field, like the operator does.
func TestInvalidOrderingKeyIsUnusable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) { w.WriteHeader(http.StatusNoContent) })
	f.endpoint("erp", rc)
	f.subscription("bad", "erp", func(s *hooklinev1.Subscription) {
		s.Spec.Delivery = &hooklinev1.DeliveryPolicy{Ordering: hooklinev1.OrderingOrdered, OrderingKey: "data.amount > 3"}
	})
	f.build()
	s := f.reg.Subscription(ns, "bad")
	if s == nil || s.Usable || s.Reason != hooklinev1.ReasonInvalidOrderingKey || !strings.Contains(s.Message, "spec.delivery.orderingKey does not compile") {
		t.Fatalf("subscription %+v, want unusable with reason InvalidOrderingKey", s)
	}
}
