package engine

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookline/hookline/internal/match"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
)

// keyLane gives the keyed lane of an event for a subscription ordered per
// key, and its key's hash, which lets a failing key hold only its own
// successors on that lane (queue.KeyHash). in is the event decoded for CEL, decodeErr why it could not be. An
// event the key expression fails on, or gives no string for, gets the empty
// key, as the CRD documents: it is still delivered, in order with the other
// such events, and counted in hookline_ordering_key_missing_total.
func (e *Engine) keyLane(ctx context.Context, s *registry.Subscription, ev *queue.Event, in *match.FilterInput, decodeErr error) (lane int, hash uint64) {
	key, err := "", decodeErr
	if err == nil {
		key, _, err = s.OrderKey.Eval(ctx, *in)
	}
	if err != nil {
		e.m.keyMissing.WithLabelValues(ev.Namespace, s.Name).Inc()
		e.log.V(2).Info("Ordering key gave no string for an event; it goes with the empty key",
			"namespace", ev.Namespace, "subscription", s.Name, "event", ev.ID, "error", err.Error())
	}
	return queue.KeyLane(key, s.Lanes), queue.KeyHash(key)
}

// blockedKeys exports hookline_ordered_blocked_keys: the keys of each
// subscription ordered per key that are blocked (failing at their head,
// their later deliveries parked), summed over the keyed lanes this process
// runs. The lanes count (queue.Lane.BlockedKeys); a figure is read at each
// scrape, so a subscription's series is there exactly while one of its keyed
// lanes runs here, and goes with the lane when it stops, moves to another
// replica, or is removed with its subscription.
type blockedKeys struct {
	desc  *prometheus.Desc
	mu    sync.Mutex
	lanes map[*queue.Lane]struct{}
}

func newBlockedKeys() *blockedKeys {
	return &blockedKeys{
		desc: prometheus.NewDesc("hookline_ordered_blocked_keys",
			"Keys of a subscription ordered per key that are blocked: their head delivery is failing and their later deliveries wait behind it. "+
				"Only the replica that runs a keyed lane (its endpoint's owner) reports it: sum across replicas for the subscription's total.",
			[]string{"namespace", "subscription"}, nil),
		lanes: map[*queue.Lane]struct{}{},
	}
}

// running reports lane's blocked keys until done is called, when the lane
// has stopped.
func (b *blockedKeys) running(lane *queue.Lane) (done func()) {
	b.mu.Lock()
	b.lanes[lane] = struct{}{}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.lanes, lane)
		b.mu.Unlock()
	}
}

func (b *blockedKeys) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b *blockedKeys) Collect(ch chan<- prometheus.Metric) {
	sums := map[queue.SubscriptionKey]int{}
	b.mu.Lock()
	for l := range b.lanes {
		if sub, n, ok := l.BlockedKeys(); ok {
			sums[sub] += n
		}
	}
	b.mu.Unlock()
	for sub, n := range sums {
		ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, float64(n), sub.Namespace, sub.Subscription)
	}
}
