package engine

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/tracing"
)

// task is one delivery waiting in an endpoint's queue or being sent.
type task struct {
	job *queue.Job
	d   queue.Delivery
	sub *registry.Subscription
	// renewed is when the lease was last extended, or the delivery
	// received; guarded by the endpoint's mutex while queued.
	renewed time.Time
	// span is the attempt's trace span; the zero value when tracing is off.
	span tracing.Attempt
}

type disabledInfo struct {
	since  time.Time
	reason string
	uid    types.UID
}

// endpointState is what the engine keeps about one endpoint. mu guards
// everything but the metric handles.
type endpointState struct {
	key objKey

	mu       sync.Mutex
	uid      types.UID
	health   health
	disabled *disabledInfo
	c        Counts

	// Configuration from the registry entry last seen.
	limits  registry.Limits
	limiter *rate.Limiter // nil: no rate limit

	queue    []*task
	head     int
	waiters  []chan struct{}
	inflight int
	// pending counts unordered deliveries queued or in flight.
	pending int
	// queued: a delivery was queued since keepLeases last looked, which
	// then counts this endpoint as busy (fairWaitPace) even if it had
	// nothing pending at that instant.
	queued bool
	// waiting are the consumer workers waiting for room in the queue,
	// oldest first; room goes to the oldest (enqueue).
	waiting []*roomWaiter
	// cursor is the next free slot for a busy hold.
	cursor time.Time
	// latency is a moving average of attempt latency, for the pace.
	latency time.Duration
	// progress is when a send last finished, or sends began after a pause:
	// while sends run, the time since is a lower bound of the latency, so
	// an endpoint that starts hanging is noticed before anything times out.
	progress time.Time
	// latSum and latN add up the latencies observed since keepLeases last
	// looked, at windowAt; windowLatency is their mean over the tick
	// before, zero when there were none (fairPaceLocked).
	latSum        time.Duration
	latN          int
	windowAt      time.Time
	windowLatency time.Duration
	// unparking: a goroutine of this process is moving the endpoint's
	// parked deliveries back, or taking a probe from them; probeAsked is
	// when a probe was last taken.
	unparking  bool
	probeAsked time.Time

	// parked says deliveries of the endpoint may be parked: this process
	// parked some since it last unparked, or the queue listed some. It is
	// read on every delivery, so it is not under mu.
	parked atomic.Bool

	latencyObs    prometheus.Observer
	circuitGauge  prometheus.Gauge
	disabledGauge prometheus.Gauge
}

func (e *Engine) endpoint(ns, name string) *endpointState {
	k := objKey{ns, name}
	if v, ok := e.endpoints.Load(k); ok {
		return v.(*endpointState)
	}
	st := &endpointState{
		key:    k,
		health: health{cfg: e.opts.Breaker},
		limits: registry.Limits{MaxInFlight: registry.DefaultMaxInFlight, DisableAfter: registry.DefaultDisableAfter},
	}
	st.latencyObs = e.m.latency.WithLabelValues(ns, name)
	st.circuitGauge = e.m.circuitOpen.WithLabelValues(ns, name)
	st.disabledGauge = e.m.disabled.WithLabelValues(ns, name)
	v, _ := e.endpoints.LoadOrStore(k, st)
	return v.(*endpointState)
}

// configureLocked follows a change of the endpoint's limits.
func (st *endpointState) configureLocked(ep *registry.Endpoint) {
	st.uid = ep.UID
	l := ep.Limits
	if l.MaxInFlight <= 0 {
		l.MaxInFlight = registry.DefaultMaxInFlight
	}
	if l.DisableAfter <= 0 {
		l.DisableAfter = registry.DefaultDisableAfter
	}
	if l == st.limits {
		return
	}
	st.limits = l
	switch {
	case l.Rate <= 0:
		st.limiter = nil
	case st.limiter == nil:
		st.limiter = rate.NewLimiter(rate.Limit(l.Rate), max(l.Burst, 1))
	default:
		st.limiter.SetLimit(rate.Limit(l.Rate))
		st.limiter.SetBurst(max(l.Burst, 1))
	}
}

// disabledLocked reports whether the endpoint is disabled, forgetting a
// disable that was meant for an older object of the same name.
func (st *endpointState) disabledLocked(ep *registry.Endpoint) bool {
	d := st.disabled
	if d == nil {
		return false
	}
	if ep != nil && d.uid != "" && ep.UID != d.uid {
		st.disabled = nil
		st.disabledGauge.Set(0)
		return false
	}
	return true
}

// gate decides, as a delivery arrives, whether to hold it rather than queue
// or send it. ep is the endpoint's registry entry, nil if it has none.
func (e *Engine) gate(st *endpointState, ep *registry.Endpoint, now time.Time) (reason string, until time.Time) {
	switch {
	case ep == nil || !ep.Ready:
		return holdNotReady, spread(now.Add(e.opts.SuspendedHold), e.opts.SuspendedHold)
	case ep.Suspended:
		return holdSuspended, spread(now.Add(e.opts.SuspendedHold), e.opts.SuspendedHold)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.configureLocked(ep)
	if st.disabledLocked(ep) {
		return holdDisabled, spread(now.Add(e.opts.DisabledHold), e.opts.DisabledHold)
	}
	if hold, at := st.health.peek(now); hold {
		// Spread over the next cool-down: the first to come back after it
		// is the probe, and a long backlog does not return in one burst.
		return holdCircuitOpen, spread(at, max(st.health.cooldown, e.opts.Breaker.MinCooldown))
	}
	return "", time.Time{}
}

// admit is gate at send time: it also claims the probe of a half-open
// circuit and reports circuit changes.
func (e *Engine) admit(st *endpointState, ep *registry.Endpoint, now time.Time) (adm admission, reason string, until time.Time) {
	if reason, until = e.gate(st, ep, now); reason != "" {
		return admitHold, reason, until
	}
	st.mu.Lock()
	prev := st.health.state
	adm, until = st.health.admit(now)
	cur := st.health.state
	cooldown := max(st.health.cooldown, e.opts.Breaker.MinCooldown)
	st.mu.Unlock()
	e.circuitChanged(st, prev, cur, now, 0, "The cool-down ended; one probe delivery is going through.")
	if adm == admitHold {
		return adm, holdCircuitOpen, spread(until, cooldown)
	}
	return adm, "", time.Time{}
}

// spread returns a time between at and at+d, at random, so holds that begin
// together do not end together.
func spread(at time.Time, d time.Duration) time.Time {
	return at.Add(time.Duration(rand.Int64N(int64(d) + 1))) //nolint:gosec // G404: jitter for hold ends, not a secret
}

// idle reports whether nothing is queued, running or waiting.
func (st *endpointState) idle() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.inflight == 0 && st.pending == 0 && len(st.waiters) == 0
}

func (st *endpointState) stats() EndpointStats {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := EndpointStats{
		Namespace: st.key.ns,
		Name:      st.key.name,
		UID:       string(st.uid),
		Counts:    st.c,
		Circuit:   st.health.state,
		InFlight:  st.inflight,
		Queued:    len(st.queue) - st.head,
	}
	if st.health.state == CircuitOpen {
		s.NextProbe = st.health.openUntil
	}
	if d := st.disabled; d != nil {
		s.Disabled, s.DisabledSince, s.DisabledReason = true, d.since, d.reason
		if s.UID == "" {
			s.UID = string(d.uid)
		}
	}
	return s
}

// circuitChanged reports a move of the breaker.
func (e *Engine) circuitChanged(st *endpointState, prev, cur CircuitState, now time.Time, code int, reason string) {
	if prev == cur {
		return
	}
	if cur == CircuitClosed {
		st.circuitGauge.Set(0)
	} else {
		st.circuitGauge.Set(1)
	}
	e.log.V(1).Info("Circuit breaker changed", "namespace", st.key.ns, "endpoint", st.key.name,
		"from", prev.String(), "to", cur.String())
	e.signal(Signal{Kind: SignalCircuitChanged, Time: now, Namespace: st.key.ns, Endpoint: st.key.name,
		Circuit: cur, PreviousCircuit: prev, StatusCode: code, Reason: reason})
}

// Enable re-enables a disabled endpoint and forgets its failure history. Its
// parked backlog starts coming back at once, at the endpoint's pace; held
// ordered deliveries within about 2×DisabledHold. It reports whether the
// endpoint was disabled.
func (e *Engine) Enable(ns, name string) bool {
	v, ok := e.endpoints.Load(objKey{ns, name})
	if !ok {
		return false
	}
	st := v.(*endpointState)
	st.mu.Lock()
	was := st.disabled != nil
	prev := st.health.state
	st.disabled = nil
	st.health.reset()
	st.mu.Unlock()
	st.disabledGauge.Set(0)
	now := e.clock.Now()
	if prev != CircuitClosed {
		st.circuitGauge.Set(0)
		e.signal(Signal{Kind: SignalCircuitChanged, Time: now, Namespace: ns, Endpoint: name,
			Circuit: CircuitClosed, PreviousCircuit: prev, Reason: "The endpoint was re-enabled."})
	}
	if was {
		e.log.Info("Endpoint re-enabled", "namespace", ns, "endpoint", name)
		e.signal(Signal{Kind: SignalEndpointEnabled, Time: now, Namespace: ns, Endpoint: name,
			Reason: "The endpoint was re-enabled; held deliveries resume."})
	}
	e.unpark(st, true)
	return was
}

// Disable disables an endpoint as if it had asked to be: for a disable
// another replica decided, read back from status. Its deliveries are parked
// from now on. It reports whether the endpoint was enabled.
func (e *Engine) Disable(ns, name, reason string) bool {
	st := e.endpoint(ns, name)
	var uid types.UID
	if ep := e.routes.Endpoint(ns, name); ep != nil {
		uid = ep.UID
	}
	return e.disable(st, uid, e.clock.Now(), reason)
}

// Disabled lists the endpoints disabled now, for the operator to persist.
func (e *Engine) Disabled() []DisabledEndpoint {
	var out []DisabledEndpoint
	e.endpoints.Range(func(k, v any) bool {
		st := v.(*endpointState)
		st.mu.Lock()
		if d := st.disabled; d != nil {
			out = append(out, DisabledEndpoint{Namespace: st.key.ns, Name: st.key.name, UID: d.uid, Since: d.since, Reason: d.reason})
		}
		st.mu.Unlock()
		return true
	})
	return out
}

func (e *Engine) disable(st *endpointState, uid types.UID, now time.Time, reason string) bool {
	st.mu.Lock()
	if st.disabled != nil {
		st.mu.Unlock()
		return false
	}
	st.disabled = &disabledInfo{since: now, reason: reason, uid: uid}
	prev := st.health.state
	st.health.reset()
	st.mu.Unlock()
	st.disabledGauge.Set(1)
	if prev != CircuitClosed {
		st.circuitGauge.Set(0)
	}
	e.log.Info("Endpoint disabled; its deliveries are kept until it is re-enabled",
		"namespace", st.key.ns, "endpoint", st.key.name, "reason", reason)
	e.signal(Signal{Kind: SignalEndpointDisabled, Time: now, Namespace: st.key.ns, Endpoint: st.key.name, Reason: reason})
	return true
}
