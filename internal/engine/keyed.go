package engine

import (
	"context"

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
