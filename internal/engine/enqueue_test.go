package engine

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// Workers waiting for room in an endpoint's full queue take it in the order
// they began to wait, and a worker that comes later waits behind them. Woken
// all at once and left to race for the lock, some lost every time until
// BusyWait ran out and their deliveries were held for 2 s (make bench's
// batches: 2-7 a run, the last deliveries of the phase).
func TestEnqueueWaitersTakeRoomInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.build()
	opts := testOptions()
	opts.Queue, opts.Routes, opts.Metrics = f.q, f.reg, f.metrics
	opts.BusyWait = time.Minute
	// The engine's clock stands still, so the endpoint never looks
	// stalled however slowly the test runs.
	opts.Clock = clocktesting.NewFakePassiveClock(time.Now())
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.stop = t.Context()

	// Every send slot taken, so nothing is sent; a fast endpoint, so its
	// overflow is waited for rather than held; its queue full.
	st := e.endpoint(ns, "fast")
	st.mu.Lock()
	st.inflight = st.limits.MaxInFlight
	st.latency, st.windowLatency = time.Millisecond, time.Millisecond
	st.progress = e.clock.Now()
	for range st.queueCapLocked(e.clock.Now()) {
		st.queue = append(st.queue, &task{})
		st.pending++
	}
	st.mu.Unlock()
	waiting := func() int {
		st.mu.Lock()
		defer st.mu.Unlock()
		return len(st.waiting)
	}

	const workers = 16
	tasks := make([]*task, workers)
	done := make(chan bool, workers)
	for i := range tasks {
		tasks[i] = &task{}
		go func() { done <- e.enqueue(st, tasks[i]) }()
		eventually(t, "the worker waiting", func() bool { return waiting() == i+1 })
	}
	// A worker that comes while others wait waits behind them, though
	// there is room.
	late := &task{}
	for i := range workers + 1 {
		st.mu.Lock()
		// One delivery leaves the queue for a slot, as dispatchLocked
		// takes it, and the send it replaces finished.
		st.queue = st.queue[1:]
		st.pending--
		st.roomLocked()
		st.mu.Unlock()
		if i == 0 {
			go func() { done <- e.enqueue(st, late) }()
			eventually(t, "the late worker waiting", func() bool { return waiting() == workers })
		}
		if !<-done {
			t.Fatalf("delivery %d was held, want it queued", i)
		}
		st.mu.Lock()
		got := st.queue[len(st.queue)-1]
		st.mu.Unlock()
		want := late
		if i < workers {
			want = tasks[i]
		}
		if got != want {
			t.Fatalf("room %d went to the wrong worker (the late one: %t)", i, got == late)
		}
	}
}
