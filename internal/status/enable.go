package status

import (
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
)

// Engine is what the reporter needs from the delivery engine; *engine.Engine
// satisfies it.
type Engine interface {
	Snapshot() engine.Snapshot
	Enable(ns, name string) bool
	Disable(ns, name, reason string) bool
}

// syncer keeps this process's engine in step with the endpoints' status and
// hookline.io/enable annotation:
//
//   - an annotation value other than the one this process applied last
//     re-enables the endpoint;
//   - Disabled=True in a status computed for the value this process applied
//     (status.lastHandledEnable) disables it, when another replica decided it.
//
// It remembers per endpoint the value it applied; its reports carry them, so
// the status writer knows which processes' disables are current.
type syncer struct {
	engine Engine
	events *events
	log    logr.Logger

	mu      sync.Mutex
	applied map[nsName]appliedValue
}

type appliedValue struct {
	uid   string
	value string
}

func newSyncer(ev *events, log logr.Logger) *syncer {
	return &syncer{events: ev, log: log, applied: map[nsName]appliedValue{}}
}

// initialState is what a process that starts now holds for ep: the enable
// value in force, and whether the endpoint is disabled.
func initialState(ep *hooklinev1.WebhookEndpoint) (value string, disabled *metav1.Condition) {
	value, fresh := enableRequest(ep)
	c := meta.FindStatusCondition(ep.Status.Conditions, hooklinev1.ConditionDisabled)
	if fresh || c == nil || c.Status != metav1.ConditionTrue {
		return value, nil
	}
	return value, c
}

// start records the state of the endpoints known at start and returns those
// that are disabled, for engine.Options.Disabled.
func (s *syncer) start(eps []hooklinev1.WebhookEndpoint) []engine.DisabledEndpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []engine.DisabledEndpoint
	for i := range eps {
		ep := &eps[i]
		value, c := initialState(ep)
		s.applied[nsName{ep.Namespace, ep.Name}] = appliedValue{uid: string(ep.UID), value: value}
		if c != nil {
			out = append(out, engine.DisabledEndpoint{
				Namespace: ep.Namespace, Name: ep.Name, UID: ep.UID,
				Since: c.LastTransitionTime.Time, Reason: disableSentence(c.Message),
			})
		}
	}
	return out
}

// observe follows one endpoint; it runs on every change the cache sees. The
// engine must be set.
func (s *syncer) observe(ep *hooklinev1.WebhookEndpoint) {
	k := nsName{ep.Namespace, ep.Name}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, seen := s.applied[k]
	if !seen || a.uid != string(ep.UID) {
		value, c := initialState(ep)
		s.applied[k] = appliedValue{uid: string(ep.UID), value: value}
		if c != nil {
			s.disable(ep, c)
		}
		return
	}
	if ann := ep.Annotations[hooklinev1.AnnotationEnable]; ann != "" && ann != a.value {
		s.applied[k] = appliedValue{uid: a.uid, value: ann}
		s.log.Info("Re-enabling endpoint as its annotation asks", "namespace", ep.Namespace, "endpoint", ep.Name,
			"annotation", hooklinev1.AnnotationEnable, "value", ann)
		s.events.silence(ep.Namespace, ep.Name, func() { s.engine.Enable(ep.Namespace, ep.Name) })
		return
	}
	c := meta.FindStatusCondition(ep.Status.Conditions, hooklinev1.ConditionDisabled)
	if c != nil && c.Status == metav1.ConditionTrue && ep.Status.LastHandledEnable == a.value {
		s.disable(ep, c)
	}
}

func (s *syncer) disable(ep *hooklinev1.WebhookEndpoint, c *metav1.Condition) {
	s.events.silence(ep.Namespace, ep.Name, func() {
		if s.engine.Disable(ep.Namespace, ep.Name, disableSentence(c.Message)) {
			s.log.Info("Endpoint disabled as its status says", "namespace", ep.Namespace, "endpoint", ep.Name, "reason", c.Reason)
		}
	})
}

func (s *syncer) forget(ns, name string) {
	s.mu.Lock()
	delete(s.applied, nsName{ns, name})
	s.mu.Unlock()
}

// appliedValues are the non-empty enable values applied, by "namespace/name",
// for this process's report. Read them before taking the snapshot they go
// with: an Enable done before the snapshot is then reflected in it.
func (s *syncer) appliedValues() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, a := range s.applied {
		if a.value != "" {
			out[k.ns+"/"+k.name] = a.value
		}
	}
	return out
}
