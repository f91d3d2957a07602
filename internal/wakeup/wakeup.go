// Package wakeup wakes a reconciler at a chosen moment of an injected clock. A reconciler
// that must act at an exact time (a key rotation, an overlap ending) asks for a wake-up
// instead of returning RequeueAfter, because the workqueue's delay runs on the real clock:
// with an injected clock, tests step time and the reconcile happens at once, and in
// production the behaviour is the same as RequeueAfter.
package wakeup

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Scheduler keeps at most one pending wake-up per object.
type Scheduler struct {
	clock  clock.WithDelayedExecution
	events chan event.TypedGenericEvent[reconcile.Request]

	mu     sync.Mutex
	timers map[types.NamespacedName]pending
}

type pending struct {
	at    time.Time
	timer clock.Timer
}

// New returns a scheduler driven by clk.
func New(clk clock.WithDelayedExecution) *Scheduler {
	return &Scheduler{
		clock:  clk,
		events: make(chan event.TypedGenericEvent[reconcile.Request], 128),
		timers: map[types.NamespacedName]pending{},
	}
}

// At wakes the reconciler for key at t, replacing an earlier request for the same key. A
// zero t cancels the pending wake-up.
func (s *Scheduler) At(key types.NamespacedName, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.timers[key]; ok {
		if p.at.Equal(t) {
			return
		}
		p.timer.Stop()
		delete(s.timers, key)
	}
	if t.IsZero() {
		return
	}
	d := t.Sub(s.clock.Now())
	if d < 0 {
		d = 0
	}
	s.timers[key] = pending{at: t, timer: s.clock.AfterFunc(d, func() {
		s.mu.Lock()
		if p, ok := s.timers[key]; ok && p.at.Equal(t) {
			delete(s.timers, key)
		}
		s.mu.Unlock()
		s.events <- event.TypedGenericEvent[reconcile.Request]{Object: reconcile.Request{NamespacedName: key}}
	})}
}

// Forget cancels the pending wake-up of a deleted object.
func (s *Scheduler) Forget(key types.NamespacedName) { s.At(key, time.Time{}) }

// Pending reports when key will be woken, for tests and status.
func (s *Scheduler) Pending(key types.NamespacedName) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.timers[key]
	return p.at, ok
}

// Source is the controller source that delivers the wake-ups.
func (s *Scheduler) Source() source.TypedSource[reconcile.Request] {
	return source.TypedChannel(s.events, handler.TypedFuncs[reconcile.Request, reconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[reconcile.Request], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.Add(e.Object)
		},
	})
}
