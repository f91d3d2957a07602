package queue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeMemory is a heap the test sets: live bytes against a limit of 1,000.
type fakeMemory struct {
	live      atomic.Uint64
	reads     atomic.Int64
	collected atomic.Int64
	// highSeen is closed the first time the gate reads a high heap.
	highSeen chan struct{}
	once     atomic.Bool
}

func (m *fakeMemory) gate(maxPause time.Duration) *memoryGate {
	return &memoryGate{
		live: func() uint64 {
			m.reads.Add(1)
			v := m.live.Load()
			if v > 700 && m.once.CompareAndSwap(false, true) {
				close(m.highSeen)
			}
			return v
		},
		collections:  func() uint64 { return 0 }, // never advances: the gate forces collections
		limit:        func() int64 { return 1000 },
		collect:      func() { m.collected.Add(1) },
		poll:         5 * time.Millisecond,
		maxPause:     maxPause,
		collectAfter: 20 * time.Millisecond,
	}
}

// newHighMemory is a heap of 900 of 1,000: past ingest's mark and the
// fan-out's; tests lower it with live.Store.
func newHighMemory() *fakeMemory {
	m := &fakeMemory{highSeen: make(chan struct{})}
	m.live.Store(900)
	return m
}

func TestMemoryGateHigh(t *testing.T) {
	for _, c := range []struct {
		live  uint64
		limit int64
		want  bool
	}{
		{live: 800, limit: math.MaxInt64, want: false}, // no GOMEMLIMIT: never paused
		{live: 800, limit: 0, want: false},
		{live: 790, limit: 1000, want: false},
		{live: 810, limit: 1000, want: true},
	} {
		g := &memoryGate{live: func() uint64 { return c.live }, limit: func() int64 { return c.limit }}
		if got, _, _ := g.high(); got != c.want {
			t.Errorf("live %d, limit %d: high = %v, want %v", c.live, c.limit, got, c.want)
		}
	}
	// The real figures can be read.
	runtime.GC()
	if g := newMemoryGate(); g.live() == 0 || g.collections() == 0 {
		t.Errorf("live heap %d, collections %d: the runtime's metrics were not read", g.live(), g.collections())
	}
}

// Close to the memory limit the fan-out stores nothing: the accepted events
// stay in the events stream, unacknowledged. Once the heap is low again every
// event gets its deliveries, once.
func TestFanoutWaitsForMemory(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	const events = 300
	for i := range events {
		publish(t, q, testEvent("team-a", fmt.Sprintf("e%d", i)))
	}
	// Installed after publishing: so high a heap also refuses new events.
	mem := newHighMemory()
	q.memory = mem.gate(time.Hour)
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, twoSubscriptions) })
	<-mem.highSeen
	// Paused for a while, with collections forced because none ran.
	eventually(t, "a forced collection while paused", func() bool { return mem.collected.Load() >= 2 })
	if n := streamMsgs(t, q, streamDeliveries); n != 0 {
		t.Fatalf("%d deliveries stored while the heap was high, want 0", n)
	}
	if n := streamMsgs(t, q, streamEvents); n != events {
		t.Fatalf("%d events left while the fan-out was paused, want all %d", n, events)
	}
	mem.live.Store(100)
	eventually(t, "the fan-out of every event", func() bool { return streamMsgs(t, q, streamEvents) == 0 })
	if n := streamMsgs(t, q, streamDeliveries); n != 2*events {
		t.Errorf("%d deliveries stored, want %d", n, 2*events)
	}
}

// A heap that stays high slows the fan-out (each batch waits at most
// maxPause) but does not stop it.
func TestFanoutMemoryPauseIsBounded(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	const events = 40
	for i := range events {
		publish(t, q, testEvent("team-a", fmt.Sprintf("e%d", i)))
	}
	mem := newHighMemory()
	q.memory = mem.gate(50 * time.Millisecond)
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, twoSubscriptions) })
	eventually(t, "the fan-out of every event", func() bool { return streamMsgs(t, q, streamEvents) == 0 })
	if n := streamMsgs(t, q, streamDeliveries); n != 2*events {
		t.Errorf("%d deliveries stored, want %d", n, 2*events)
	}
	<-mem.highSeen
}

// Close to the memory limit the queue refuses new events, single or in a
// batch, and stores none of them; it says why, and starts collections while
// it refuses, so that the heap is measured again. Once the heap is below a
// lower mark it accepts them again. Ingest is refused before the fan-out
// waits (memoryRefuseFraction < memoryHighFraction).
func TestPublishRefusedCloseToMemoryLimit(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	mem := newHighMemory() // above memoryRefuseFraction and memoryHighFraction
	q.memory = mem.gate(time.Hour)

	_, err := q.PublishEvent(context.Background(), testEvent("team-a", "e1"))
	var high *MemoryHighError
	if !errors.Is(err, ErrMemoryHigh) || !errors.As(err, &high) || high.Live != 900 || high.Limit != 1000 || high.RetryAfter() <= 0 {
		t.Fatalf("PublishEvent close to the limit: %v, want a *MemoryHighError of 900 and 1000", err)
	}
	if !strings.Contains(err.Error(), "memory limit") || !strings.Contains(err.Error(), "dispatcher.resources.limits.memory") {
		t.Errorf("the error does not say why and what to change: %q", err)
	}
	if _, err := q.PublishEvents(context.Background(), []Event{testEvent("team-a", "b1"), testEvent("team-a", "b2")}); !errors.Is(err, ErrMemoryHigh) {
		t.Fatalf("PublishEvents close to the limit: %v, want ErrMemoryHigh", err)
	}
	if n := streamMsgs(t, q, streamEvents); n != 0 {
		t.Fatalf("%d events stored while refusing, want 0", n)
	}
	// No collection ran meanwhile (the fake's count never moves): the gate
	// starts one, or the stale figure would refuse for ever.
	eventually(t, "a collection started while refusing", func() bool {
		_, _ = q.PublishEvent(context.Background(), testEvent("team-a", "e1"))
		return mem.collected.Load() >= 1
	})

	mem.live.Store(680) // below the refusing mark, not below the accepting one
	time.Sleep(2 * memoryRecheck)
	if _, err := q.PublishEvent(context.Background(), testEvent("team-a", "e1")); !errors.Is(err, ErrMemoryHigh) {
		t.Fatalf("PublishEvent at 680 of 1000 after refusing: %v, want still refused", err)
	}
	for _, live := range []uint64{600, 100} { // below the accepting mark, then low
		mem.live.Store(live)
		eventually(t, fmt.Sprintf("events accepted at a live heap of %d", live), func() bool {
			_, err := q.PublishEvent(context.Background(), testEvent("team-a", fmt.Sprintf("at-%d", live)))
			return err == nil
		})
	}
	if _, err := q.PublishEvents(context.Background(), []Event{testEvent("team-a", "b1"), testEvent("team-a", "b2")}); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, streamEvents); n != 4 {
		t.Errorf("%d events stored, want 4", n)
	}
}
