package engine

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/tracing"
)

// handle takes every delivery, from the shared consumer
// and from ordered lanes alike. An unordered delivery is only decided on and
// queued for its endpoint's send goroutines, so the shared consumer never
// waits for a slow endpoint; an ordered one is sent on the lane's goroutine.
func (e *Engine) handle(ctx context.Context, job *queue.Job) {
	d := job.Delivery()
	ns := d.Event.Namespace
	sub := e.routes.Subscription(ns, d.Subscription)
	if sub == nil || string(sub.UID) != d.SubscriptionUID {
		known := ""
		if sub != nil {
			known = string(sub.UID)
		}
		if until, wait := e.unknownSubscriptionWait(&d); wait {
			e.hold(job, e.endpoint(ns, d.Endpoint), until, holdUnknownSubscription)
			return
		}
		// Logged one by one (at V(1): a deleted subscription's backlog drops
		// many), so that a drop can be told from a subscription this
		// process never saw.
		e.log.V(1).Info("Dropping a delivery: its subscription does not exist (deleted, or created again with another UID)",
			"namespace", ns, "subscription", d.Subscription, "uid", d.SubscriptionUID, "knownUID", known, "event", d.Event.ID)
		e.drop(job, &d)
		return
	}
	if d.Endpoint != sub.Endpoint {
		// The subscription points elsewhere now: whatever becomes of the
		// delivery (sent, retried, held, parked) is for its current endpoint.
		job.Retarget(sub.Endpoint)
		d.Endpoint = sub.Endpoint
	}
	st := e.endpoint(ns, sub.Endpoint)
	now := e.clock.Now()
	switch {
	case e.stop.Err() != nil:
		e.hold(job, st, now, holdShutdown)
		return
	case sub.Suspended || !sub.Usable:
		// Suspended (or broken) after the delivery was queued: keep it.
		e.hold(job, st, spread(now.Add(e.opts.SuspendedHold), e.opts.SuspendedHold), holdSuspended)
		return
	}
	ep := e.routes.Endpoint(ns, sub.Endpoint)
	if reason, until := e.gate(st, ep, now); reason != "" {
		e.park(job, st, until, reason)
		return
	}
	// The endpoint takes deliveries: if some were parked (it was unsuspended,
	// say), bring them back.
	e.unpark(st, false)
	t := &task{job: job, d: d, sub: sub, renewed: now}
	if d.Ordered {
		if err := e.acquire(ctx, st, job); err != nil {
			e.hold(job, st, e.clock.Now(), holdShutdown)
			return
		}
		defer e.release(st)
		e.attempt(st, t)
		return
	}
	// The endpoint's send goroutine resolves the job.
	job.Detach()
	if !e.enqueue(st, t) {
		e.hold(job, st, e.busyUntil(st, e.clock.Now()), holdBusy)
	}
}

// goneRoutes are routes that remember the subscriptions they saw deleted
// (*registry.Registry).
type goneRoutes interface {
	Gone(uid types.UID) bool
}

// unknownSubscriptionWait decides on a delivery whose subscription this
// process does not know (or knows under another UID): dropped at once if the
// routes saw it deleted; otherwise kept until UnknownSubscriptionGrace after
// it, or any delivery of the same subscription UID, was first handed out
// here, held for growing intervals (1 s, 2 s, 4 s, ...) so that it goes as
// soon as the subscription shows up. The replica that fanned the event out
// knew the subscription; a watch that lags behind must not lose the
// delivery. One grace per UID, not per delivery: a backlog on an ordered
// lane of a subscription deleted while no dispatcher ran waits the grace
// once, not once per delivery. The grace runs on wall time, as holds do.
func (e *Engine) unknownSubscriptionWait(d *queue.Delivery) (time.Time, bool) {
	if g, ok := e.routes.(goneRoutes); ok && g.Gone(types.UID(d.SubscriptionUID)) {
		return time.Time{}, false
	}
	now := time.Now()
	first := d.FirstAttempt
	if v, _ := e.unknownSince.LoadOrStore(d.SubscriptionUID, now); first.IsZero() || v.(time.Time).Before(first) {
		first = v.(time.Time)
	}
	deadline := first.Add(e.opts.UnknownSubscriptionGrace)
	if !now.Before(deadline) {
		return time.Time{}, false
	}
	wait := max(time.Second, now.Sub(first))
	return minTime(now.Add(wait), deadline), true
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// attempt makes one HTTP attempt of a delivery that holds a send slot, and
// resolves its job.
func (e *Engine) attempt(st *endpointState, t *task) {
	if e.stop.Err() != nil {
		e.hold(t.job, st, e.clock.Now(), holdShutdown)
		return
	}
	ep := e.routes.Endpoint(t.d.Event.Namespace, st.key.name)
	adm, reason, until := e.admit(st, ep, e.clock.Now())
	if adm == admitHold {
		e.park(t.job, st, until, reason)
		return
	}
	probe := adm == admitProbe
	if !e.waitRate(st, t.job) {
		e.abandon(st, probe)
		e.hold(t.job, st, e.clock.Now(), holdShutdown)
		return
	}
	if e.clock.Since(t.renewed) >= e.opts.LeaseRenewal {
		_ = t.job.InProgress()
	}
	msg := delivery.Message{
		ID:           t.d.Event.ID,
		WebhookID:    delivery.WebhookIDOf(t.d.Event.Namespace, t.d.Event.ID, t.d.SubscriptionUID),
		Type:         t.d.Event.Type,
		Time:         t.d.Event.Time,
		Data:         t.d.Event.Data,
		Namespace:    t.d.Event.Namespace,
		Subscription: t.d.Subscription,
		Format:       t.sub.Format,
	}
	t.span, msg.TraceParent = tracing.StartAttempt(t.d.Event.TraceParent, t.d.Event.Namespace, st.key.name, t.d.Subscription, t.d.Event.ID, t.d.Attempt)
	start := e.clock.Now()
	res := delivery.SendTimeout(e.sendCtx, ep.Target, msg, start, t.sub.Timeout)
	if e.sendCtx.Err() != nil {
		// Cut off by shutdown: not the endpoint's failure, not an attempt.
		t.span.End(res.StatusCode, "shutdown", nil)
		e.abandon(st, probe)
		e.hold(t.job, st, e.clock.Now(), holdShutdown)
		return
	}
	e.settle(st, t, &res, start, probe)
}

func (e *Engine) abandon(st *endpointState, probe bool) {
	st.mu.Lock()
	st.health.neutral(probe)
	st.mu.Unlock()
}

// describe says what went wrong with an attempt, in words fit for status:
// the transport error (delivery names the endpoint by scheme and host only)
// or the HTTP status, never the response body.
func describe(res *delivery.Result) string {
	switch {
	case res.Err != nil:
		return res.Err.Error()
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return ""
	}
	if text := http.StatusText(res.StatusCode); text != "" {
		return fmt.Sprintf("HTTP %d %s", res.StatusCode, text)
	}
	return fmt.Sprintf("HTTP %d", res.StatusCode)
}

// hold puts a delivery back until the given time without spending an
// attempt.
func (e *Engine) hold(job *queue.Job, st *endpointState, until time.Time, reason string) {
	if err := job.Hold(until); err != nil {
		d := job.Delivery()
		e.log.Error(err, "Holding a delivery failed; it comes back when its lease runs out",
			"namespace", st.key.ns, "subscription", d.Subscription, "event", d.Event.ID)
	}
	e.m.holds.WithLabelValues(st.key.ns, st.key.name, reason).Inc()
}

// drop acknowledges a delivery whose subscription is gone, or was deleted
// and created again since the delivery was queued.
func (e *Engine) drop(job *queue.Job, d *queue.Delivery) {
	if err := job.Done(); err != nil {
		e.log.Error(err, "Dropping a delivery of a deleted subscription failed",
			"namespace", d.Event.Namespace, "subscription", d.Subscription)
	}
	e.m.deliveries.WithLabelValues(d.Event.Namespace, d.Subscription, outcomeDropped).Inc()
}
