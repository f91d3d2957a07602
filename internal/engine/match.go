package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"

	"github.com/hookline/hookline/internal/match"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
)

// Match gives the deliveries of one event in the fan-out: one per subscription
// of the event's namespace whose patterns match its type and whose filter,
// if any, accepts it. The registry memoises the pattern matching per event
// type and leaves out suspended and unusable subscriptions, so the common
// event costs two map reads and one small allocation; the event's data is
// decoded only when a matching subscription has a filter, and then once.
//
// A filter that fails to evaluate on an event (a missing field, the cost
// limit) skips that subscription for that event and is counted in
// hookline_filter_errors_total: retrying cannot change the outcome.
func (e *Engine) Match(ctx context.Context, ev queue.Event) ([]queue.Delivery, error) {
	subs := e.routes.Matching(ev.Namespace, ev.Type)
	if len(subs) == 0 {
		return nil, nil
	}
	ds := make([]queue.Delivery, 0, len(subs))
	var (
		in        *match.FilterInput
		decodeErr error
	)
	for _, s := range subs {
		if s.Suspended || !s.Usable {
			continue
		}
		if s.Filter != nil {
			if in == nil && decodeErr == nil {
				in, decodeErr = filterInput(&ev)
			}
			err := decodeErr
			ok := false
			if err == nil {
				ok, err = s.Filter.EvalContext(ctx, *in)
			}
			if err != nil {
				e.m.filterErrors.WithLabelValues(ev.Namespace, s.Name).Inc()
				e.log.V(1).Info("Filter failed on an event; not delivering it to this subscription",
					"namespace", ev.Namespace, "subscription", s.Name, "event", ev.ID, "error", err.Error())
				continue
			}
			if !ok {
				continue
			}
		}
		if err := e.ensureLane(ctx, s); err != nil {
			return nil, err
		}
		ds = append(ds, queue.Delivery{
			Subscription:    s.Name,
			SubscriptionUID: string(s.UID),
			Endpoint:        s.Endpoint,
			Ordered:         s.Ordered,
		})
	}
	return ds, nil
}

func filterInput(ev *queue.Event) (*match.FilterInput, error) {
	in := &match.FilterInput{Type: ev.Type, ID: ev.ID, Time: ev.Time}
	if len(ev.Data) > 0 {
		if err := json.Unmarshal(ev.Data, &in.Data); err != nil {
			return nil, fmt.Errorf("decoding event data for the filter: %w", err)
		}
	}
	return in, nil
}

// ensureLane creates a subscription's ordered lane the first time this
// process fans an ordered delivery out to it. Deliveries stored before the
// lane exists wait for it, so this only has to happen before they can be
// delivered; doing it here ties the lane's life to the subscription's use.
// The lane is ensured again for a new object of the same name and after the
// subscription was unordered for a while, since the dispatcher removes lanes
// (queue.RemoveOrdered) of deleted subscriptions and of drained ones that
// stopped being ordered.
func (e *Engine) ensureLane(ctx context.Context, s *registry.Subscription) error {
	k := objKey{s.Namespace, s.Name}
	v, ok := e.lanes.Load(k)
	switch {
	case !s.Ordered:
		if ok {
			e.lanes.Delete(k)
		}
		return nil
	case ok && v.(types.UID) == s.UID:
		return nil
	}
	if err := e.q.EnsureOrdered(ctx, s.Namespace, s.Name); err != nil {
		return err
	}
	e.lanes.Store(k, s.UID)
	return nil
}
