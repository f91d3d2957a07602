package engine

import (
	"context"
	"time"

	"github.com/hookline/hookline/internal/queue"
)

// sweep drops what the engine and the queue keep about endpoints and
// subscriptions that no longer exist, so memory, metric series and stored
// state follow the objects: at start (a deletion may have happened while no
// dispatcher ran) and every SweepEvery.
func (e *Engine) sweep(ctx context.Context) {
	t := time.NewTicker(e.opts.SweepEvery)
	defer t.Stop()
	var gone map[any]bool
	for {
		gone = e.forgetDeleted(ctx, gone)
		e.sweepMemory()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *Engine) sweepMemory() {
	// A UID still unknown an hour on starts a new grace if it comes again.
	e.unknownSince.Range(func(k, v any) bool {
		if time.Since(v.(time.Time)) > time.Hour {
			e.unknownSince.Delete(k)
		}
		return true
	})
	e.subs.Range(func(k, v any) bool {
		key := k.(objKey)
		if e.routes.Subscription(key.ns, key.name) == nil {
			e.subs.Delete(k)
			e.m.forgetSubscription(key.ns, key.name)
		}
		return true
	})
	e.lanes.Range(func(k, _ any) bool {
		if key := k.(objKey); e.routes.Subscription(key.ns, key.name) == nil {
			e.lanes.Delete(k)
		}
		return true
	})
	e.endpoints.Range(func(k, v any) bool {
		key, st := k.(objKey), v.(*endpointState)
		if e.routes.Endpoint(key.ns, key.name) == nil && st.idle() {
			e.endpoints.Delete(k)
			e.m.forgetEndpoint(key.ns, key.name)
		}
		return true
	})
}

// forgetDeleted removes the dead letters and attempt logs of subscription
// objects that are gone (deleted, or deleted and created again under the
// same name), and the ordered lanes, with the deliveries still on them, of
// subscription names that no longer exist. Deliveries of a deleted
// unordered subscription share their endpoint's subjects; handle drops
// them as they come up.
//
// Something is removed only when it was found gone by the sweep before too
// (wasGone): another replica's view of the objects may be a moment ahead of
// this one's. It returns what it found gone this time.
func (e *Engine) forgetDeleted(ctx context.Context, wasGone map[any]bool) map[any]bool {
	logs, lanes, err := e.q.Kept(ctx)
	var parked map[queue.ParkedKey]uint64
	if err == nil {
		parked, err = e.q.ParkedSubscriptions(ctx)
	}
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error(err, "Could not list what the queue keeps per subscription; trying again later")
		}
		return wasGone
	}
	gone := map[any]bool{}
	for _, id := range logs {
		if uid, ok := queue.EndpointLogOf(id); ok {
			// An endpoint's test sends: kept while the endpoint is.
			if ep := e.routes.Endpoint(id.Namespace, id.Name); ep != nil && string(ep.UID) == uid {
				continue
			}
		} else if s := e.routes.Subscription(id.Namespace, id.Name); s != nil && string(s.UID) == id.UID {
			continue
		}
		if gone[id] = true; !wasGone[id] {
			continue
		}
		if err := e.q.Forget(ctx, id); err != nil {
			e.log.Error(err, "Could not remove a deleted subscription's dead letters and attempt log", "namespace", id.Namespace, "subscription", id.Name)
			continue
		}
		e.log.V(1).Info("Removed a deleted subscription's dead letters and attempt log", "namespace", id.Namespace, "subscription", id.Name, "uid", id.UID)
	}
	for _, k := range lanes {
		if e.routes.Subscription(k.Namespace, k.Subscription) != nil {
			continue
		}
		if gone[k] = true; !wasGone[k] {
			continue
		}
		e.lanes.Delete(objKey{k.Namespace, k.Subscription})
		if err := e.q.RemoveOrdered(ctx, k.Namespace, k.Subscription); err != nil {
			e.log.Error(err, "Could not remove a deleted subscription's ordered lane", "namespace", k.Namespace, "subscription", k.Subscription)
			continue
		}
		e.log.V(1).Info("Removed a deleted subscription's ordered lane", "namespace", k.Namespace, "subscription", k.Subscription)
	}
	for k := range parked {
		if e.routes.Subscription(k.Namespace, k.Subscription) != nil {
			continue
		}
		if gone[k] = true; !wasGone[k] {
			continue
		}
		if err := e.q.PurgeParked(ctx, k); err != nil {
			e.log.Error(err, "Could not remove a deleted subscription's parked deliveries", "namespace", k.Namespace, "subscription", k.Subscription)
		}
	}
	return gone
}
