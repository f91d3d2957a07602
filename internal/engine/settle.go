package engine

import (
	"fmt"
	"net/http"
	"time"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
)

// resolution is what becomes of a delivery after an attempt.
type resolution uint8

const (
	// resolveDone acknowledges it: delivered.
	resolveDone resolution = iota
	// resolveRetry schedules the next attempt at outcome.retryAt.
	resolveRetry
	// resolvePark parks the same attempt until the endpoint is re-enabled:
	// the receiver asked to disable it, so the attempt is not spent.
	resolvePark
	// resolveDead moves it to the dead letters with outcome.dead.
	resolveDead
)

// healthMove is what an attempt tells the endpoint's circuit breaker.
type healthMove uint8

const (
	// healthNeutral: the attempt says nothing about the endpoint's health
	// (an invalid request, an abort, a disable request).
	healthNeutral healthMove = iota
	healthSuccess
	healthFailure
)

// outcome is the decision taken on one attempt's result, before anything is
// stored or counted: decide is pure, settle applies it.
type outcome struct {
	resolution resolution
	retryAt    time.Time
	dead       *queue.DeadInfo
	// delivered: the receiver has the message (counted as delivered, else as
	// failed).
	delivered bool
	// attemptError is the attempt log's error text, empty for a plain
	// success.
	attemptError string
	// disable is the reason to disable the endpoint, empty to leave it.
	disable string
	health  healthMove
	// what says what went wrong, for status (describe); failure is the
	// attempt as counted when it was not delivered.
	what    string
	failure Failure
}

// decide turns the result of attempt d.Attempt into an outcome under the
// subscription's retry policy. rnd is the policy's jitter source (nil for
// math/rand); tests pass a fixed one.
func decide(res *delivery.Result, d *queue.Delivery, policy delivery.Policy, now time.Time, rnd func() float64) outcome {
	o := outcome{what: describe(res)}
	o.failure = Failure{Time: now, StatusCode: res.StatusCode, Reason: o.what}
	var next string
	switch res.Verdict {
	case delivery.Delivered:
		o.resolution, o.delivered = resolveDone, true
	case delivery.DisableEndpoint:
		o.disable = "The receiver asked to disable the endpoint (webhook-delivery: disable); deliveries are held until it is re-enabled."
		if res.StatusCode == http.StatusGone {
			o.disable = "The receiver answered 410 Gone; deliveries are held until the endpoint is re-enabled."
		}
		if res.StatusCode >= 200 && res.StatusCode < 300 {
			o.resolution, o.delivered = resolveDone, true
		} else {
			o.resolution = resolvePark
			next = "held until the endpoint is re-enabled"
		}
	case delivery.Retry:
		at, ok, why := policy.Next(d.Attempt, d.FirstAttempt, now, *res, rnd)
		if ok {
			o.resolution, o.retryAt, next = resolveRetry, at, why
		} else {
			o.resolution = resolveDead
			o.dead = &queue.DeadInfo{StatusCode: res.StatusCode, Reason: o.what + "; " + why, Time: now}
			next = "dead: " + why
		}
	default: // Abort, Failed
		_, _, why := policy.Next(d.Attempt, d.FirstAttempt, now, *res, rnd)
		o.resolution = resolveDead
		o.dead = &queue.DeadInfo{StatusCode: res.StatusCode, Reason: o.what + "; " + why, Time: now}
		next = "dead: " + why
	}
	switch {
	case !o.delivered:
		o.attemptError = o.what + "; " + next
	case o.disable != "":
		o.attemptError = o.disable
	}
	switch {
	case o.delivered:
		o.health = healthSuccess
	case res.Verdict == delivery.Retry:
		o.health = healthFailure
	}
	return o
}

// count adds the outcome to a subscription's or an endpoint's figures.
func (o *outcome) count(c *Counts, now time.Time) {
	if o.delivered {
		c.delivered(now)
	} else {
		c.failed(o.failure)
	}
	if o.dead != nil {
		c.Dead++
	}
}

// circuitReason says why the breaker moved from prev to cur after an
// attempt, for the Event; unpark is true when the move lets the endpoint's
// parked backlog come back.
func circuitReason(prev, cur CircuitState, consecutive int, cooldown time.Duration, what string) (reason string, unpark bool) {
	switch {
	case cur == CircuitOpen && prev == CircuitHalfOpen:
		return fmt.Sprintf("The probe delivery failed (%s); deliveries are held for %s.", what, cooldown), false
	case cur == CircuitOpen:
		return fmt.Sprintf("%d deliveries in a row failed (last: %s); deliveries are held for %s.", consecutive, what, cooldown), false
	}
	return "A delivery succeeded; deliveries resume.", prev != CircuitClosed && cur == CircuitClosed
}

// settle applies the outcome of an attempt: the attempt log, the job's
// resolution, the figures, the breaker, auto-disable and metrics.
func (e *Engine) settle(st *endpointState, t *task, res *delivery.Result, start time.Time, probe bool) {
	d, sub := &t.d, t.sub
	ns := d.Event.Namespace
	now := e.clock.Now()
	o := decide(res, d, sub.Policy, now, nil)

	t.span.End(res.StatusCode, o.resolution.String(), res.Err)
	a := queue.Attempt{Time: start, Attempt: d.Attempt, StatusCode: res.StatusCode, Latency: res.Latency,
		Response: string(res.Body), Error: o.attemptError, EventID: d.Event.ID, Headers: res.Headers}
	if err := e.q.RecordAttempt(e.sendCtx, subscriptionID(d), a); err != nil {
		e.log.V(1).Info("Could not record a delivery attempt", "namespace", ns, "subscription", d.Subscription, "error", err.Error())
	}
	if err := e.resolve(st, t.job, &o, now); err != nil {
		e.log.Error(err, "Resolving a delivery failed; it comes back when its lease runs out",
			"namespace", ns, "subscription", d.Subscription, "event", d.Event.ID, "attempt", d.Attempt)
	}

	e.subscriptionState(ns, sub.Name, string(sub.UID)).update(string(sub.UID), func(c *Counts) { o.count(c, now) })
	st.mu.Lock()
	o.count(&st.c, now)
	if res.Verdict != delivery.Failed {
		st.observeLatencyLocked(res.Latency)
	}
	prev := st.health.state
	autoDisable := false
	switch o.health {
	case healthSuccess:
		st.health.success()
	case healthFailure:
		st.health.failure(now, probe)
		autoDisable = st.health.failedFor(now, st.limits.DisableAfter)
	default:
		st.health.neutral(probe)
	}
	cur, consecutive, cooldown, uid := st.health.state, st.health.consecutive, st.health.cooldown, st.uid
	disableAfter, failingSince := st.limits.DisableAfter, st.health.failingSince
	st.mu.Unlock()

	reason, unpark := circuitReason(prev, cur, consecutive, cooldown, o.what)
	e.circuitChanged(st, prev, cur, now, res.StatusCode, reason)
	if unpark {
		e.unpark(st, true)
	}
	if o.disable != "" {
		e.disable(st, uid, now, o.disable)
	}
	if autoDisable {
		e.disable(st, uid, now, fmt.Sprintf("Every delivery has failed for more than %s (since %s); last: %s.",
			disableAfter, failingSince.UTC().Format(time.RFC3339), o.what))
	}
	e.countAttempt(st, sub.Name, d, res, &o, now)
}

// subscriptionID names the subscription object a delivery belongs to.
func subscriptionID(d *queue.Delivery) queue.SubscriptionID {
	return queue.SubscriptionID{Namespace: d.Event.Namespace, Name: d.Subscription, UID: d.SubscriptionUID}
}

// resolve resolves the job as the outcome says.
func (e *Engine) resolve(st *endpointState, job *queue.Job, o *outcome, now time.Time) error {
	switch o.resolution {
	case resolveRetry:
		return job.RetryAt(o.retryAt)
	case resolvePark:
		return e.parkJob(job, st, spread(now.Add(e.opts.DisabledHold), e.opts.DisabledHold), holdDisabled)
	case resolveDead:
		return job.Dead(*o.dead)
	}
	return job.Done()
}

// countAttempt sets the metrics of an attempt and signals a dead delivery.
func (e *Engine) countAttempt(st *endpointState, sub string, d *queue.Delivery, res *delivery.Result, o *outcome, now time.Time) {
	ns := d.Event.Namespace
	class := attemptClass(res)
	e.m.attempts.WithLabelValues(ns, sub, class).Inc()
	if class != attemptInvalid {
		st.latencyObs.Observe(res.Latency.Seconds())
	}
	switch {
	case o.delivered:
		e.m.deliveries.WithLabelValues(ns, sub, outcomeDelivered).Inc()
	case o.dead != nil:
		e.m.deliveries.WithLabelValues(ns, sub, outcomeDead).Inc()
		e.m.dead.WithLabelValues(ns, sub).Inc()
		e.signal(Signal{Kind: SignalDeliveryDead, Time: now, Namespace: ns, Endpoint: st.key.name,
			Subscription: sub, EventID: d.Event.ID, StatusCode: res.StatusCode,
			Reason: fmt.Sprintf("Delivery of event %s failed for good after %d attempts: %s.", d.Event.ID, d.Attempt, o.dead.Reason)})
	}
}
