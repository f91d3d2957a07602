package queue

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestFanoutPublishesDeliveriesAndAcksEvents(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	publish(t, q, testEvent("team-a", "e1"), testEvent("team-a", "e2"), testEvent("team-b", "e3"))

	var failed atomic.Bool
	stop := run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			// A matching error (say, a cache not yet synced) must not lose
			// the event: it comes back.
			if ev.ID == "e2" && failed.CompareAndSwap(false, true) {
				return nil, errors.New("not ready")
			}
			return []Delivery{
				{Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp"},
				{Subscription: "audit.all", SubscriptionUID: "u2", Endpoint: "siem.prod"},
			}, nil
		})
	})
	eventually(t, "all events fanned out and acknowledged", func() bool {
		return streamMsgs(t, q, streamEvents) == 0 && streamMsgs(t, q, streamDeliveries) == 6
	})
	stop()
	if !failed.Load() {
		t.Fatal("the failing match was never called")
	}

	b, err := q.Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[EndpointKey]uint64{
		{"team-a", "erp"}: 2, {"team-a", "siem.prod"}: 2,
		{"team-b", "erp"}: 1, {"team-b", "siem.prod"}: 1,
	}
	if len(b.Endpoints) != len(want) {
		t.Fatalf("backlog %v, want %v", b.Endpoints, want)
	}
	for k, n := range want {
		if b.Endpoints[k] != n {
			t.Errorf("backlog of %v = %d, want %d", k, b.Endpoints[k], n)
		}
	}

	// A fan-out repeated after a crash publishes the same ids: nothing new
	// is stored.
	futures, err := q.publishDeliveries(q.publishAsync, testEvent("team-a", "e1"),
		[]Delivery{{Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp"}}, nil)
	if err == nil {
		err = await(context.Background(), futures)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, streamDeliveries); n != 6 {
		t.Fatalf("a repeated fan-out stored a copy: %d deliveries", n)
	}
}
