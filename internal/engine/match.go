package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/hookline/hookline/internal/match"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
)

// Match gives the deliveries of one event in the fan-out: one per subscription
// of the event's namespace whose patterns match its type and whose filter,
// if any, accepts it (see matchEvent).
func (e *Engine) Match(ctx context.Context, ev queue.Event) ([]queue.Delivery, error) {
	m := e.matchEvent(ctx, ev)
	return m.Deliveries, m.Err
}

// matchEvent matches one event. The registry memoises the pattern matching
// per event type and leaves out suspended and unusable subscriptions, so the
// common event costs two map reads and one small allocation; the event's
// data is decoded only when a matching subscription has a filter, and then
// once.
//
// A filter that fails to evaluate on an event (a missing field, the cost
// limit, data that is not JSON) cannot say whether the subscription wants
// it, and retrying cannot change that: the delivery becomes a dead letter
// with reason FilterError, counted as dead, and the failure is kept for the
// Subscription's FilterFailing condition.
func (e *Engine) matchEvent(ctx context.Context, ev queue.Event) queue.Matched {
	var out queue.Matched
	subs := e.routes.Matching(ev.Namespace, ev.Type)
	if len(subs) == 0 {
		return out
	}
	out.Deliveries = make([]queue.Delivery, 0, len(subs))
	var (
		in        *match.FilterInput
		decodeErr error
	)
	for _, s := range subs {
		if s.Suspended || !s.Usable {
			continue
		}
		d := queue.Delivery{
			Subscription:    s.Name,
			SubscriptionUID: string(s.UID),
			Endpoint:        s.Endpoint,
			Ordered:         s.Ordered,
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
				out.Rejected = append(out.Rejected, e.filterFailed(ev, s, d, err))
				continue
			}
			if !ok {
				continue
			}
		}
		if s.OrderKey != nil {
			if in == nil && decodeErr == nil {
				in, decodeErr = filterInput(&ev)
			}
			d.Lane, d.KeyHash = e.keyLane(ctx, s, &ev, in, decodeErr)
		}
		if err := e.ensureLane(ctx, s); err != nil {
			// Stored without its lane, the delivery waits for it; NAKed,
			// the event would come back behind later events and its lane
			// would deliver out of order.
			e.ensureLaneLater(ctx, s, err)
		}
		if !d.Ordered {
			if reason := e.parkAtFanout(ev.Namespace, d.Endpoint); reason != "" {
				d.Park = true
				e.countPark(ev.Namespace, d.Endpoint, reason)
			}
		}
		out.Deliveries = append(out.Deliveries, d)
	}
	return out
}

// filterFailed counts a filter's failure on an event and returns the dead
// letter it makes.
func (e *Engine) filterFailed(ev queue.Event, s *registry.Subscription, d queue.Delivery, err error) queue.Rejected {
	now := e.clock.Now()
	reason := "FilterError: the filter failed on this event: " + err.Error()
	e.m.filterErrors.WithLabelValues(ev.Namespace, s.Name).Inc()
	e.m.deliveries.WithLabelValues(ev.Namespace, s.Name, outcomeDead).Inc()
	e.m.dead.WithLabelValues(ev.Namespace, s.Name).Inc()
	e.subscriptionState(ev.Namespace, s.Name, string(s.UID)).update(string(s.UID), func(c *Counts) {
		c.Dead++
		c.LastFilterError = &FilterFailure{Time: now, Generation: s.Generation, EventID: ev.ID, Reason: err.Error()}
	})
	e.log.V(1).Info("Filter failed on an event; it is a dead letter for this subscription",
		"namespace", ev.Namespace, "subscription", s.Name, "event", ev.ID, "error", err.Error())
	return queue.Rejected{Delivery: d, Info: queue.DeadInfo{Reason: reason, Time: now}}
}

func filterInput(ev *queue.Event) (*match.FilterInput, error) {
	in := &match.FilterInput{Type: ev.Type, ID: ev.ID, Time: ev.Time, DataSize: len(ev.Data)}
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
	want := laneSet{uid: s.UID, lanes: s.Lanes, endpoint: s.Endpoint}
	v, ok := e.lanes.Load(k)
	switch {
	case !s.Ordered:
		if ok {
			e.lanes.Delete(k)
		}
		return nil
	case ok && v.(laneSet) == want:
		return nil
	}
	var err error
	if s.OrderKey != nil {
		err = e.q.EnsureKeyed(ctx, s.Namespace, s.Name, s.Endpoint, s.Lanes)
	} else {
		err = e.q.EnsureOrdered(ctx, s.Namespace, s.Name, s.Endpoint)
	}
	if err != nil {
		return err
	}
	e.lanes.Store(k, want)
	return nil
}

// ensureLaneLater keeps trying to create a subscription's lanes that the
// fan-out could not (NATS away or electing a leader), from a goroutine of
// its own, one per subscription, until it succeeds, the subscription is
// gone or changed (the next event ensures the new one's), or ctx ends. The
// deliveries stored meanwhile wait on the stream for the lane.
func (e *Engine) ensureLaneLater(ctx context.Context, s *registry.Subscription, err error) {
	k := objKey{s.Namespace, s.Name}
	if _, busy := e.ensuring.LoadOrStore(k, struct{}{}); busy {
		return
	}
	e.log.Error(err, "Could not create an ordered subscription's lane; its deliveries are stored and wait for it, retrying",
		"namespace", s.Namespace, "subscription", s.Name)
	go func() {
		defer e.ensuring.Delete(k)
		pause := laneEnsureRetry[0]
		for try := 2; ; try++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			cur := e.routes.Subscription(s.Namespace, s.Name)
			if cur == nil || cur.UID != s.UID || !cur.Ordered {
				return
			}
			err := e.ensureLane(ctx, cur)
			if err == nil {
				e.log.Info("Created an ordered subscription's lane after failed tries", "namespace", s.Namespace, "subscription", s.Name, "tries", try)
				return
			}
			if try%20 == 0 {
				e.log.Error(err, "Still cannot create an ordered subscription's lane; retrying", "namespace", s.Namespace, "subscription", s.Name, "tries", try)
			}
			pause = min(2*pause, laneEnsureRetry[1])
		}
	}()
}

// laneEnsureRetry bounds the pause between two tries of ensureLaneLater.
var laneEnsureRetry = [2]time.Duration{100 * time.Millisecond, 5 * time.Second}

// laneSet is what ensureLane ensured for a subscription: its object, its
// lane count (0 for its single ordered lane), and its endpoint, whose owner
// pulls the lanes (a re-pointed subscription's lanes move to the new one's).
type laneSet struct {
	uid      types.UID
	lanes    int
	endpoint string
}
