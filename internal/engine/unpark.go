package engine

import (
	"context"
	"time"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
)

// Parking. A delivery to an endpoint that cannot take it for an unknown
// time (its circuit is open, it is disabled, suspended, not ready or
// missing) is parked (queue.Job.Park): stored on the endpoint's parking
// subject for its subscription, where a backlog costs disk but no memory
// and, unlike a hold, does not come back by itself. A subscription pointed
// at another endpoint takes its parked backlog along (relocate); one that
// points at a deleted endpoint keeps it parked until it points at one that
// exists. Short waits (a full in-memory queue, the rate
// limit, shutdown) are still holds. Ordered deliveries are always held: their
// lane keeps them in order, one message at a time, so they cost nothing per
// delivery anyway.
//
// While an endpoint's circuit is open or it is disabled or suspended, the
// fan-out of its owner parks its new deliveries as it stores them
// (parkAtFanout), so they cost one write rather than a write, a take, a
// second write and an ack.
//
// Parked deliveries are moved back (queue.Unpark) when the endpoint can take
// them again: when a success closes its circuit, when Enable re-enables it,
// and when a delivery arrives for a usable endpoint with a parked backlog.
// Every UnparkCheck the engine also lists the parked backlogs and unparks
// those of usable endpoints it owns (their partition is this replica's),
// which covers what it cannot see happen: a restart, another replica's
// parking, an endpoint unsuspended or become ready while nothing arrives for
// it.
//
// Unparking runs at the endpoint's pace, scaled down as its in-memory queue
// fills, so a backlog comes back as fast as the endpoint takes it: any
// faster, the surplus would be held as busy, one message schedule each. It
// stops as soon as the endpoint is unusable again. A process unparks at most
// maxUnparks endpoints at a time, in rounds of unparkRound, so the queue's
// per-endpoint parking consumers stay few.
//
// The probe of an open circuit is taken from the parking subject: when the
// cool-down has ended and nothing came along to probe with, the engine moves
// the oldest parked delivery back, and it goes through as the probe. Keeping
// one delivery held per open endpoint instead would not cover a failed
// probe, whose own retry may be scheduled hours later, and would need the
// hold to end exactly with the cool-down.

const (
	maxUnparks  = 8
	unparkRound = 10 * time.Second
)

// park puts a delivery aside until its endpoint can take it. until is how
// long an ordered delivery, which is held instead, waits.
func (e *Engine) park(job *queue.Job, st *endpointState, until time.Time, reason string) {
	if err := e.parkJob(job, st, until, reason); err != nil {
		d := job.Delivery()
		e.log.Error(err, "Parking a delivery failed; it comes back when its lease runs out",
			"namespace", st.key.ns, "subscription", d.Subscription, "event", d.Event.ID)
	}
}

// parkAtFanout reports why a delivery the fan-out is about to store for the
// endpoint would only be parked once taken: its circuit is open, or it is
// disabled or suspended. The fan-out then stores it on the parking subject
// straight away (queue.Delivery.Park): one write, where storing it for
// delivery costs a write, a take, the parking write and an ack, work that
// a dead endpoint's traffic would take from the healthy ones. Only the
// endpoint's owner decides, with its own breaker (see watchParked); on
// another replica, or for an endpoint this process has not dealt with yet,
// it returns "" and the delivery is stored as usual, for the owner to park
// when it takes it.
func (e *Engine) parkAtFanout(ns, name string) string {
	v, ok := e.endpoints.Load(objKey{ns, name})
	if !ok {
		return ""
	}
	// The taker's own rule (handle), but for an endpoint not ready or not
	// known yet: maybe a watch that lags, and the taker decides.
	reason, _ := e.gate(v.(*endpointState), e.routes.Endpoint(ns, name), e.clock.Now())
	if reason == "" || reason == holdNotReady {
		return ""
	}
	if owner := e.deliveries.Load(); owner == nil || !owner.Owns(ns, name) {
		return ""
	}
	return reason
}

// parkedAtFanout marks the endpoints whose deliveries the fan-out parked as
// having a parked backlog, once the batch is stored (as parkJob does), and
// moves it back at once if the endpoint took deliveries again meanwhile.
func (e *Engine) parkedAtFanout(evs []queue.Event, ms []queue.Matched) {
	var last *endpointState
	for i := range ms {
		for j := range ms[i].Deliveries {
			d := &ms[i].Deliveries[j]
			if !d.Park || d.Ordered {
				continue
			}
			st := e.endpoint(evs[i].Namespace, d.Endpoint)
			if st == last {
				continue
			}
			last = st
			st.parked.Store(true)
			e.unpark(st, false)
		}
	}
}

// countPark counts a park, which is a hold too: put back without spending
// an attempt.
func (e *Engine) countPark(ns, endpoint, reason string) {
	e.m.holds.WithLabelValues(ns, endpoint, reason).Inc()
	e.m.parks.WithLabelValues(ns, endpoint, reason).Inc()
}

// parkJob is park returning the error, for a caller that logs it itself.
func (e *Engine) parkJob(job *queue.Job, st *endpointState, until time.Time, reason string) error {
	if job.Delivery().Ordered {
		e.m.holds.WithLabelValues(st.key.ns, st.key.name, reason).Inc()
		return job.Hold(until)
	}
	e.countPark(st.key.ns, st.key.name, reason)
	err := job.Park()
	// After the store: an unpark that ends before it stored would not look
	// for it. One that ends in between leaves it to the next check.
	st.parked.Store(true)
	return err
}

// usableLocked reports whether the endpoint takes deliveries now: it exists,
// is ready, is neither suspended nor disabled, and its circuit is closed.
func (st *endpointState) usableLocked(ep *registry.Endpoint) bool {
	return ep != nil && ep.Ready && !ep.Suspended && !st.disabledLocked(ep) && st.health.state == CircuitClosed
}

// unpark starts moving the endpoint's parked deliveries back if it is usable
// and this process is not moving them already. Without force, only if some
// are known to be parked; with it, the queue is asked.
func (e *Engine) unpark(st *endpointState, force bool) {
	if !force && !st.parked.Load() {
		return
	}
	ep := e.routes.Endpoint(st.key.ns, st.key.name)
	st.mu.Lock()
	ok := !st.unparking && st.usableLocked(ep)
	if ok {
		st.unparking = true
	}
	st.mu.Unlock()
	if !ok {
		return
	}
	if force {
		st.parked.Store(true)
	}
	if !e.goParking(func(ctx context.Context) { e.unparkLoop(ctx, st) }) {
		e.unparked(st)
	}
}

// unparked clears unparking, for a goroutine that stops.
func (e *Engine) unparked(st *endpointState) {
	st.mu.Lock()
	st.unparking = false
	st.mu.Unlock()
}

// goParking runs f while Run runs; Run waits for it before returning. It
// reports false if Run is not running.
//
//nolint:contextcheck // unparking outlives the delivery or check that started it: it runs under Run's context.
func (e *Engine) goParking(f func(ctx context.Context)) bool {
	e.life.mu.Lock()
	defer e.life.mu.Unlock()
	ctx := e.life.ctx
	if ctx == nil || ctx.Err() != nil {
		return false
	}
	e.life.wg.Go(func() { f(ctx) })
	return true
}

// unparkLoop moves the endpoint's parked deliveries back, a round at a
// time, for as long as some are parked and the endpoint is usable.
func (e *Engine) unparkLoop(ctx context.Context, st *endpointState) {
	ns, name := st.key.ns, st.key.name
	for {
		ep := e.routes.Endpoint(ns, name)
		st.mu.Lock()
		more := ctx.Err() == nil && st.parked.Load() && st.usableLocked(ep)
		if !more {
			st.unparking = false
		}
		st.mu.Unlock()
		if !more {
			return
		}
		// Cleared before the round: a delivery parked meanwhile sets it
		// again, and the loop goes round once more for it.
		st.parked.Store(false)
		select {
		case e.unparkSlots <- struct{}{}:
		case <-ctx.Done():
			st.parked.Store(true)
			continue
		}
		end := time.Now().Add(unparkRound)
		stopped := false
		n, err := e.q.Unpark(ctx, ns, name, queue.UnparkRate(func() float64 {
			r := -1.0
			if time.Now().Before(end) {
				r = e.unparkPace(st)
			}
			stopped = r < 0
			return r
		}))
		<-e.unparkSlots
		if n > 0 {
			e.m.unparks.WithLabelValues(ns, name).Add(float64(n))
			e.log.V(1).Info("Unparked deliveries", "namespace", ns, "endpoint", name, "count", n)
		}
		if stopped || err != nil {
			// Some may be left.
			st.parked.Store(true)
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error(err, "Unparking deliveries failed; trying again later", "namespace", ns, "endpoint", name)
			}
			e.unparked(st)
			return
		}
	}
}

// unparkPace is how many deliveries a second to move back now: the
// endpoint's pace, scaled by the room left in its in-memory queue; negative
// once the endpoint is unusable.
func (e *Engine) unparkPace(st *endpointState) float64 {
	ep := e.routes.Endpoint(st.key.ns, st.key.name)
	now := e.clock.Now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.usableLocked(ep) {
		return -1
	}
	if e.pending.Load() >= int64(e.opts.MaxPending) {
		return 0
	}
	capacity := st.queueCapLocked(now)
	free := capacity - (len(st.queue) - st.head)
	if free <= 0 {
		return 0
	}
	return st.paceLocked(now) * float64(free) / float64(capacity)
}

// probeParked takes the probe of an open circuit from the parking subject
// once the cool-down has ended, if nothing else has come to probe with. The
// moved delivery goes through the shared consumer like any other; whichever
// delivery reaches the endpoint first is the probe, and the rest are parked
// again.
func (e *Engine) probeParked(st *endpointState, now time.Time) {
	if !st.parked.Load() {
		return
	}
	ns, name := st.key.ns, st.key.name
	ep := e.routes.Endpoint(ns, name)
	if ep == nil || !ep.Ready || ep.Suspended {
		return
	}
	st.mu.Lock()
	h := &st.health
	due := !st.unparking && !st.disabledLocked(ep) && now.Sub(st.probeAsked) >= h.cfg.MinCooldown &&
		(h.state == CircuitOpen && !now.Before(h.openUntil) || h.state == CircuitHalfOpen && !h.probing)
	if due {
		st.unparking, st.probeAsked = true, now
	}
	st.mu.Unlock()
	if !due {
		return
	}
	ok := e.goParking(func(ctx context.Context) {
		defer e.unparked(st)
		n, err := e.q.Unpark(ctx, ns, name, queue.UnparkMax(1))
		switch {
		case err != nil:
			if ctx.Err() == nil {
				e.log.Error(err, "Taking a probe delivery from the parked ones failed", "namespace", ns, "endpoint", name)
			}
		case n == 0:
			// Nothing parked, or all in another replica's hands; the next
			// check says.
			st.parked.Store(false)
		default:
			e.m.unparks.WithLabelValues(ns, name).Add(float64(n))
		}
	})
	if !ok {
		e.unparked(st)
	}
}

// watchParked unparks, every UnparkCheck, the parked backlogs of endpoints
// that are usable, and relocates those of subscriptions that point at
// another endpoint now, starting at once.
//
// Only the endpoints this replica owns (queue.Deliveries.Owns) are unparked
// here: whether an endpoint takes deliveries again is its owner's call, made
// with the owner's breaker. Another replica's breaker for it is closed (it
// never sends there), so it would move an open-circuit endpoint's backlog
// back every UnparkCheck, only for the owner to park it again: in
// TestCluster thousands of deliveries of a closed receiver went round like
// that, each round trip able to leave a duplicate behind.
func (e *Engine) watchParked(ctx context.Context, owner *queue.Deliveries) {
	t := time.NewTicker(e.opts.UnparkCheck)
	defer t.Stop()
	for {
		parked, err := e.q.ParkedSubscriptions(ctx)
		if err != nil && ctx.Err() == nil {
			e.log.V(1).Info("Could not list parked deliveries", "error", err.Error())
		}
		for k, n := range parked {
			sub := e.routes.Subscription(k.Namespace, k.Subscription)
			switch {
			case n == 0 || sub == nil:
				// A deleted subscription's backlog goes with it (sweep).
			case sub.Endpoint != k.Endpoint:
				e.relocate(k)
			case e.routes.Endpoint(k.Namespace, k.Endpoint) != nil && owner.Owns(k.Namespace, k.Endpoint):
				st := e.endpoint(k.Namespace, k.Endpoint)
				st.parked.Store(true)
				e.unpark(st, false)
			}
			// Otherwise the subscription's endpoint does not exist: its
			// backlog stays parked until the subscription points at one.
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// relocate moves the parked backlog of a subscription that points at
// another endpoint now back for delivery, where handle sends or parks it for
// the current endpoint, unless this process is moving it already.
func (e *Engine) relocate(k queue.ParkedKey) {
	if _, busy := e.relocating.LoadOrStore(k, true); busy {
		return
	}
	if !e.goParking(func(ctx context.Context) {
		defer e.relocating.Delete(k)
		n, err := e.q.Relocate(ctx, k, 0)
		if err != nil && ctx.Err() == nil {
			e.log.Error(err, "Moving a re-pointed subscription's parked deliveries failed; trying again at the next check",
				"namespace", k.Namespace, "subscription", k.Subscription, "from", k.Endpoint)
		}
		if n > 0 {
			e.log.V(1).Info("Moved a re-pointed subscription's parked deliveries", "namespace", k.Namespace,
				"subscription", k.Subscription, "from", k.Endpoint, "deliveries", n)
		}
	}) {
		e.relocating.Delete(k)
	}
}
