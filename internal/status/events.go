package status

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
)

// ReportingController names the dispatcher in the Events it records.
const ReportingController = "hookline.io/dispatcher"

// Event reasons.
const (
	EventDeliveryDead     = "DeliveryDead"
	EventEndpointDisabled = "EndpointDisabled"
	EventEndpointEnabled  = "EndpointEnabled"
	EventCircuitOpened    = "CircuitOpened"
	EventCircuitClosed    = "CircuitClosed"
)

// EventSink stores Events.
type EventSink interface {
	CreateEvent(ctx context.Context, ev *eventsv1.Event) error
}

// ClientSink stores Events with the events.k8s.io API.
type ClientSink struct{ Client kubernetes.Interface }

func (s ClientSink) CreateEvent(ctx context.Context, ev *eventsv1.Event) error {
	_, err := s.Client.EventsV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	return err
}

// events turns the engine's signals into Kubernetes Events, at most one per
// object and reason per window: the first at once, the ones after it summed
// up in one Event when the window ends. So a storm of dead deliveries makes
// one Event a minute per subscription, saying how many and the latest.
//
// client-go's events broadcaster is not used: it folds Events that differ
// only in their note into a series of the first one, so the counts and the
// latest event id written here would never be seen.
type events struct {
	sink     EventSink
	clock    clock.PassiveClock
	window   time.Duration
	instance string
	uid      func(kind objKind, ns, name string) string
	log      logr.Logger

	mu    sync.Mutex
	agg   map[aggKey]*aggState
	quiet map[nsName]int
	out   chan pendingEvent
}

type aggKey struct {
	kind     objKind
	ns, name string
	reason   string
}

type aggState struct {
	last   time.Time // when an Event was last recorded
	more   int       // signals since, not recorded yet
	latest pendingEvent
}

type pendingEvent struct {
	key     aggKey
	warning bool
	action  string
	note    string
	// related is the endpoint of a subscription's Event.
	related string
	time    time.Time
}

// eventQueue bounds the Events waiting to be written; past it they are
// dropped (the counts in status stay exact).
const eventQueue = 256

func newEvents(sink EventSink, clk clock.PassiveClock, window time.Duration, instance string, log logr.Logger) *events {
	return &events{
		sink: sink, clock: clk, window: window, instance: truncate(instance, 128), log: log,
		uid:   func(objKind, string, string) string { return "" },
		agg:   map[aggKey]*aggState{},
		quiet: map[nsName]int{},
		out:   make(chan pendingEvent, eventQueue),
	}
}

// Observe implements engine.Observer. It never blocks.
func (e *events) Observe(s engine.Signal) {
	ev, ok := e.fromSignal(s)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.Kind != engine.SignalDeliveryDead && e.quiet[nsName{s.Namespace, s.Endpoint}] > 0 {
		return
	}
	e.recordLocked(ev)
}

func (e *events) fromSignal(s engine.Signal) (pendingEvent, bool) {
	ev := pendingEvent{key: aggKey{kind: kindEndpoint, ns: s.Namespace, name: s.Endpoint}, note: s.Reason, time: s.Time}
	if ev.time.IsZero() {
		ev.time = e.clock.Now()
	}
	switch s.Kind {
	case engine.SignalDeliveryDead:
		ev.key.kind, ev.key.name, ev.related = kindSubscription, s.Subscription, s.Endpoint
		ev.key.reason, ev.warning, ev.action = EventDeliveryDead, true, "Deliver"
		if ev.note == "" {
			ev.note = fmt.Sprintf("Delivery of event %s failed for good.", s.EventID)
		}
	case engine.SignalEndpointDisabled:
		ev.key.reason, ev.warning, ev.action = EventEndpointDisabled, true, "Disable"
		ev.note += fmt.Sprintf("%skubectl annotate webhookendpoint %s -n %s %s=<new value> --overwrite",
			reEnableHint, s.Endpoint, s.Namespace, hooklinev1.AnnotationEnable)
	case engine.SignalEndpointEnabled:
		ev.key.reason, ev.action = EventEndpointEnabled, "Enable"
	case engine.SignalCircuitChanged:
		switch {
		case s.Circuit == engine.CircuitOpen && s.PreviousCircuit == engine.CircuitClosed:
			ev.key.reason, ev.warning, ev.action = EventCircuitOpened, true, "OpenCircuit"
		case s.Circuit == engine.CircuitClosed && s.PreviousCircuit != engine.CircuitClosed:
			ev.key.reason, ev.action = EventCircuitClosed, "CloseCircuit"
		default:
			// Half-open and a failed probe reopening it: the circuit is still
			// open as far as a person is concerned.
			return ev, false
		}
	default:
		return ev, false
	}
	return ev, true
}

// endpointEnabled records the re-enable the status writer acted on.
func (e *events) endpointEnabled(ns, name, value string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recordLocked(pendingEvent{
		key:    aggKey{kind: kindEndpoint, ns: ns, name: name, reason: EventEndpointEnabled},
		action: "Enable",
		note: fmt.Sprintf("Re-enabled by %s=%s; held deliveries are sent again as they come back from the queue.",
			hooklinev1.AnnotationEnable, value),
		time: e.clock.Now(),
	})
}

// silence keeps signals about an endpoint out of Events while f runs: for
// enables and disables that follow status, which the process that decided
// them, or the status writer, already recorded.
func (e *events) silence(ns, name string, f func()) {
	k := nsName{ns, name}
	e.mu.Lock()
	e.quiet[k]++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		if e.quiet[k]--; e.quiet[k] <= 0 {
			delete(e.quiet, k)
		}
		e.mu.Unlock()
	}()
	f()
}

func (e *events) recordLocked(ev pendingEvent) {
	now := e.clock.Now()
	st := e.agg[ev.key]
	if st == nil || now.Sub(st.last) >= e.window {
		e.agg[ev.key] = &aggState{last: now}
		e.sendLocked(ev)
		return
	}
	st.more++
	st.latest = ev
}

// flush records the summaries of windows that ended, and forgets quiet keys.
func (e *events) flush() {
	now := e.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, st := range e.agg {
		if now.Sub(st.last) < e.window {
			continue
		}
		if st.more == 0 {
			delete(e.agg, k)
			continue
		}
		ev := st.latest
		ev.note = fmt.Sprintf("%d more %s in the last %s; the latest: %s", st.more, k.reason, e.window, ev.note)
		st.last, st.more, st.latest = now, 0, pendingEvent{}
		e.sendLocked(ev)
	}
}

func (e *events) sendLocked(ev pendingEvent) {
	select {
	case e.out <- ev:
	default:
		e.log.V(1).Info("Dropping an Event: too many waiting", "reason", ev.key.reason, "namespace", ev.key.ns, "name", ev.key.name)
	}
}

// run writes Events and flushes summaries until ctx ends.
func (e *events) run(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			e.flush()
		case ev := <-e.out:
			if err := e.sink.CreateEvent(ctx, e.event(ev)); err != nil && ctx.Err() == nil {
				e.log.Error(err, "Could not record an Event", "reason", ev.key.reason, "namespace", ev.key.ns, "name", ev.key.name)
			}
		}
	}
}

func (e *events) ref(kind objKind, ns, name string) corev1.ObjectReference {
	k := "WebhookEndpoint"
	if kind == kindSubscription {
		k = "Subscription"
	}
	return corev1.ObjectReference{
		APIVersion: hooklinev1.GroupVersion.String(), Kind: k, Namespace: ns, Name: name,
		UID: types.UID(e.uid(kind, ns, name)),
	}
}

func (e *events) event(ev pendingEvent) *eventsv1.Event {
	typ := corev1.EventTypeNormal
	if ev.warning {
		typ = corev1.EventTypeWarning
	}
	out := &eventsv1.Event{
		// Named like client-go names Events, with a random suffix rather
		// than the time, so two Events in the same instant never collide.
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%016x", truncate(ev.key.name, 200), rand.Uint64()), //nolint:gosec // G404: a name suffix against collisions, not a secret
			Namespace: ev.key.ns,
		},
		EventTime:           metav1.NewMicroTime(ev.time),
		ReportingController: ReportingController,
		ReportingInstance:   e.instance,
		Action:              ev.action,
		Reason:              ev.key.reason,
		Regarding:           e.ref(ev.key.kind, ev.key.ns, ev.key.name),
		Note:                truncate(ev.note, 1024),
		Type:                typ,
	}
	if ev.related != "" {
		r := e.ref(kindEndpoint, ev.key.ns, ev.related)
		out.Related = &r
	}
	return out
}
