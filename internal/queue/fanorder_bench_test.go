package queue

import (
	"context"
	"testing"
)

// BenchmarkFanoutOrderedLane measures stored events fanned out into one
// ordered lane (plus one unordered delivery each), with nobody taking the
// deliveries: what storing a lane's deliveries one after another costs the
// fan-out.
func BenchmarkFanoutOrderedLane(b *testing.B) {
	q := openTest(b, testConfig(b.TempDir()))
	evs := benchEvents(b.N)
	for i := 0; i < len(evs); i += 1000 {
		if _, err := q.PublishEvents(context.Background(), evs[i:min(i+1000, len(evs))]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	stop := run(b, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			return []Delivery{
				{Subscription: "ledger", SubscriptionUID: "u1", Endpoint: "erp", Ordered: true},
				{Subscription: "audit", SubscriptionUID: "u2", Endpoint: "siem"},
			}, nil
		})
	})
	for streamMsgs(b, q, streamEvents) > 0 || streamMsgs(b, q, streamDeliveries) < uint64(2*b.N) {
		if b.Failed() {
			return
		}
	}
	b.StopTimer()
	stop()
}
