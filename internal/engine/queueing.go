package engine

import (
	"context"
	"slices"
	"time"

	"github.com/hookline/hookline/internal/queue"
)

// Endpoint isolation. The shared consumer's workers do not send: they put
// an unordered delivery on its endpoint's bounded in-memory queue and go on.
// Each endpoint runs at most maxInFlight sends, one goroutine each, paced by
// its rate limiter. When the queue is full the delivery is held (put back on
// disk without spending an attempt), spaced at the pace the endpoint takes
// deliveries, so a slow endpoint's backlog stays in JetStream instead of in
// memory or in the consumer's ack window. Only for an endpoint that is both
// healthy and about as fast as the consumer does a worker wait briefly for
// room instead (see enqueue).
//
// Ordered deliveries arrive one at a time per subscription on their lane's
// goroutine and are sent right there, after waiting for a free slot of the
// endpoint, so nothing can overtake them. Waiting ordered sends get the next
// free slot before queued unordered ones, so a busy endpoint cannot starve a
// lane.

// queueSeconds is how much work, at the endpoint's pace, may wait in memory:
// enough to keep an endpoint busy until held deliveries come back (they come
// back on whole seconds), little enough that a wait stays far from a lease.
// An endpoint that slows down is trimmed back to it (maintain).
const (
	queueSeconds = 5
	maxQueue     = 1024
	// initialLatency is assumed for the pace until an endpoint has
	// answered. It is optimistic, for busy holds; an endpoint that hangs
	// shows it soon by finishing nothing (see progress).
	initialLatency = 50 * time.Millisecond
)

// queueCapLocked is how many deliveries may wait in memory for the endpoint.
// Until it has answered once, two rounds of its concurrency: nothing is
// known of its pace yet.
func (st *endpointState) queueCapLocked(now time.Time) int {
	if st.latency == 0 {
		return 2 * st.limits.MaxInFlight
	}
	return min(max(int(st.paceLocked(now)*queueSeconds), 2), maxQueue)
}

// enqueue puts an unordered delivery on the endpoint's queue and starts a
// send if a slot is free. It returns false when the delivery should be held
// instead: the queue is full and the endpoint is not draining it quickly, or
// this process holds MaxPending deliveries and the endpoint already fills
// its send slots.
//
// When the queue is full, or the process holds MaxPending, but the endpoint
// is healthy and fast, the caller (a worker of the shared consumer) waits up
// to BusyWait for room instead: then the system as a whole is at capacity,
// and slowing the consumer down is the right back-pressure, where holding
// would only add work and send the delivery away for BusyHold
// (TestMaxPendingWaitsForFastEndpoints: 679-869 of 4,000 deliveries held
// when only a full queue was waited for, 0-32 now). A slow or stalled
// endpoint is never waited for, so it cannot slow the others.
//
// Waiting workers take room in the order they began to wait, and a worker
// that comes later waits behind them; room wakes the oldest alone. Woken
// all at once and left to race for the lock, some lost every time: make
// bench's batches held 2-11 deliveries a run after BusyWait, each back 2 s
// later, after the rest of the phase had been delivered (the phase 30-50 %
// longer).
func (e *Engine) enqueue(st *endpointState, t *task) bool {
	var deadline <-chan time.Time
	var w *roomWaiter
	defer func() {
		if w != nil {
			st.mu.Lock()
			st.leaveLocked(w)
			st.mu.Unlock()
		}
	}()
	for {
		room, wait := e.tryEnqueue(st, t, &w)
		if room {
			return true
		}
		if wait == nil {
			return false
		}
		if deadline == nil {
			timer := time.NewTimer(e.opts.BusyWait)
			defer timer.Stop()
			deadline = timer.C
		}
		select {
		case <-wait:
		case <-deadline:
			return false
		case <-e.stop.Done():
			return false
		}
	}
}

// Waiting for room is worth it only for an endpoint that takes deliveries
// about as fast as the shared consumer hands them out: at least minWaitPace
// a second, with a send finished within maxWaitStall. While workers wait for
// such an endpoint, the consumer runs at that endpoint's pace, which is no
// loss when its deliveries are most of the stream; waiting for anything
// slower would hold every other endpoint to that pace, so its overflow is
// held instead.
const (
	minWaitPace  = 1000
	maxWaitStall = 250 * time.Millisecond
)

// Past MaxPending, with room still in the endpoint's own queue, the bar is
// lower: the process as a whole is at capacity, and the endpoints share it.
// Ten endpoints fanned out to at 7,000 deliveries/s take 700/s each, all
// below minWaitPace, and holding their overflow only added work (make
// bench's fan-out 10: 55-284 deliveries held busy, the phase 2 s longer;
// TestMaxPendingWaitsForFairShare). An endpoint that takes at least half
// the mean pace of the healthy endpoints with deliveries pending is waited
// for; one much slower than the others still has its overflow held, so it
// cannot hold them to its pace. Nor is one whose own queue is full: it
// takes less than it is given. The bar is never below minFairPace, and
// until the mean is first measured (at once, by keepLeases) it is
// minWaitPace.
const minFairPace = 100

// fairWaitPace is the pace from which an endpoint is waited for past
// MaxPending.
func (e *Engine) fairWaitPace() float64 {
	share := e.sharePace.Load()
	if share == 0 {
		// Not measured yet: ask for it now rather than at the next tick
		// (a burst right after start would be held until then).
		select {
		case e.measure <- struct{}{}:
		default:
		}
		return minWaitPace
	}
	return min(max(float64(share)/2, minFairPace), minWaitPace)
}

// measureShare sets sharePace as keepLeases' tick does, without the tick's
// other work and without clearing the endpoints' queued marks.
func (e *Engine) measureShare() {
	now := e.clock.Now()
	var mean meanPace
	e.endpoints.Range(func(_, v any) bool {
		st := v.(*endpointState)
		st.mu.Lock()
		mean.add(st.sharePaceLocked(now))
		st.mu.Unlock()
		return true
	})
	mean.store(e)
}

// sharePaceLocked is the endpoint's pace and whether it counts for
// sharePace: healthy, with deliveries pending or queued since keepLeases
// last looked.
func (st *endpointState) sharePaceLocked(now time.Time) (float64, bool) {
	return st.fairPaceLocked(now), (st.pending > 0 || st.queued) && st.health.state == CircuitClosed
}

// The window over which latencies are averaged for fairPaceLocked: the
// current one once it is minWindow long and has minWindowSamples, else the
// last tick's.
const (
	minWindow        = 250 * time.Millisecond
	minWindowSamples = 16
)

// fairPaceLocked is the pace by which, past MaxPending, an endpoint is
// compared with the mean of the busy ones (fairWaitPace): its concurrency
// over its mean latency in the last tick of keepLeases (or since, once that
// is long enough), or paceLocked while no latency was seen in either.
// paceLocked follows each answer, and the time since the last one: with 32
// sends in flight on two busy cores, one endpoint's moving average read
// 40 ms while another's read 20, and the first looked half as fast as the
// mean and had its overflow held (make bench's fan-out 10: 3-250
// deliveries held in most runs, each back 2-3 s later, after its endpoint
// had gone idle). The mean of a quarter second of answers does not swing
// like that; an endpoint that really is slow is as slow in it. A hang is
// still seen at once: tryEnqueue looks at the time since the last send
// finished on its own (maxWaitStall).
func (st *endpointState) fairPaceLocked(now time.Time) float64 {
	lat := st.windowLatency
	if st.latN >= minWindowSamples && now.Sub(st.windowAt) >= minWindow {
		lat = st.latSum / time.Duration(st.latN)
	}
	if lat <= 0 {
		return st.paceLocked(now)
	}
	return st.limitPace(float64(st.limits.MaxInFlight) / max(lat, minLatency).Seconds())
}

// closeWindowLocked keeps the mean latency of the tick that ends now and
// starts the next.
func (st *endpointState) closeWindowLocked(now time.Time) {
	st.windowLatency = 0
	if st.latN > 0 {
		st.windowLatency = st.latSum / time.Duration(st.latN)
	}
	st.latSum, st.latN, st.windowAt = 0, 0, now
}

// meanPace averages the paces of the endpoints that count for sharePace.
type meanPace struct {
	sum  float64
	busy int
}

func (m *meanPace) add(pace float64, counts bool) {
	if counts {
		m.sum += pace
		m.busy++
	}
}

// store sets sharePace to the mean; with no endpoint busy it keeps the last
// one (the process is idle).
func (m *meanPace) store(e *Engine) {
	if m.busy > 0 {
		e.sharePace.Store(max(int64(m.sum/float64(m.busy)), 1))
	}
}

// tryEnqueue queues t if there is room; otherwise it returns a channel that
// is closed when room may have come, or nil if waiting is not worthwhile.
//
// *w is the worker's place among those waiting for room (nil: none yet);
// tryEnqueue gives it one when the worker is to wait, and takes it back
// when the delivery is queued.
func (e *Engine) tryEnqueue(st *endpointState, t *task, w **roomWaiter) (bool, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := e.clock.Now()
	// Past MaxPending an endpoint may still fill its send slots, not queue.
	overPending := e.pending.Load() >= int64(e.opts.MaxPending) && st.pending >= max(2, st.limits.MaxInFlight)
	full := len(st.queue)-st.head >= st.queueCapLocked(now)
	// Another worker has waited longer: it goes first.
	behind := len(st.waiting) > 0 && st.waiting[0] != *w
	if overPending || full {
		// Full, or the process is: a healthy, fast endpoint is waited for
		// (the system is at capacity), anything slower is held. Either way
		// its pace is judged over a quarter second of answers or more
		// (fairPaceLocked): a group's members (queue/group.go) arrive by
		// the dozen and fill the queue at once, and the moving average of
		// a loopback receiver answering in 7 ms on average read 33-49 ms
		// there, under the 1,000/s bar, so make bench's batches held 13-45
		// deliveries for 2 s each.
		pace, waitPace := st.fairPaceLocked(now), float64(minWaitPace)
		if !full {
			waitPace = e.fairWaitPace()
		}
		// A worker already waiting was judged when it began to; it is
		// held now only if the endpoint fails or stalls. Judged again at
		// every wake, one that waits in line behind others would be held
		// whenever the pace dipped while it waited.
		if st.health.state != CircuitClosed || (*w == nil && pace < waitPace) ||
			(st.inflight > 0 && now.Sub(st.progress) > maxWaitStall) {
			return false, nil
		}
	}
	if overPending || full || behind {
		// Waited for: in line behind those already waiting.
		if *w == nil {
			*w = &roomWaiter{}
			st.waiting = append(st.waiting, *w)
		}
		(*w).room = make(chan struct{})
		return false, (*w).room
	}
	if *w != nil {
		// The oldest waiting: the next one may find room too.
		st.leaveLocked(*w)
		*w = nil
	}
	st.queue = append(st.queue, t)
	st.pending++
	st.queued = true
	e.pending.Add(1)
	e.dispatchLocked(st)
	return true, nil
}

// roomWaiter is a worker waiting for room in an endpoint's queue.
type roomWaiter struct {
	// room is closed when the worker is the oldest waiting and there may
	// be room; nil once closed.
	room chan struct{}
}

// leaveLocked takes a worker out of those waiting for room, and wakes the
// next oldest.
func (st *endpointState) leaveLocked(w *roomWaiter) {
	for i, o := range st.waiting {
		if o == w {
			st.waiting = slices.Delete(st.waiting, i, i+1)
			break
		}
	}
	st.roomLocked()
}

// roomLocked wakes the oldest worker waiting for room, if any: a delivery
// left the queue, a send finished, or the oldest left.
func (st *endpointState) roomLocked() {
	if len(st.waiting) == 0 {
		return
	}
	if w := st.waiting[0]; w.room != nil {
		close(w.room)
		w.room = nil
	}
}

// dispatchLocked hands free slots out: to a waiting ordered send first,
// then to queued deliveries, each on a goroutine of its own.
func (e *Engine) dispatchLocked(st *endpointState) {
	if st.inflight == 0 {
		st.progress = e.clock.Now()
	}
	for st.inflight < st.limits.MaxInFlight {
		if len(st.waiters) > 0 {
			ch := st.waiters[0]
			st.waiters = st.waiters[1:]
			st.inflight++
			close(ch)
			continue
		}
		if st.head == len(st.queue) {
			return
		}
		t := st.queue[st.head]
		st.queue[st.head] = nil
		st.head++
		switch {
		case st.head == len(st.queue):
			st.queue, st.head = st.queue[:0], 0
		case st.head >= 256 && 2*st.head >= len(st.queue):
			// A queue that never empties would otherwise grow its array
			// forever.
			n := copy(st.queue, st.queue[st.head:])
			clear(st.queue[n:])
			st.queue, st.head = st.queue[:n], 0
		}
		st.roomLocked()
		st.inflight++
		e.sends.Add(1)
		e.senders.start(sendWork{st, t})
	}
}

// send sends one queued delivery and frees its slot; its sender then marks
// e.sends done.
func (e *Engine) send(st *endpointState, t *task) {
	e.attempt(st, t)
	st.mu.Lock()
	st.progress = e.clock.Now()
	st.inflight--
	st.pending--
	e.pending.Add(-1)
	// Room under MaxPending too, for a worker waiting in enqueue.
	st.roomLocked()
	e.dispatchLocked(st)
	st.mu.Unlock()
}

// acquire waits for a send slot for an ordered delivery, extending its lease
// while it waits.
func (e *Engine) acquire(ctx context.Context, st *endpointState, job *queue.Job) error {
	st.mu.Lock()
	if st.inflight < st.limits.MaxInFlight && len(st.waiters) == 0 {
		st.inflight++
		st.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	st.waiters = append(st.waiters, ch)
	st.mu.Unlock()

	renew := time.NewTicker(e.opts.LeaseRenewal)
	defer renew.Stop()
	for {
		select {
		case <-ch:
			return nil
		case <-renew.C:
			_ = job.InProgress()
		case <-ctx.Done():
			st.mu.Lock()
			defer st.mu.Unlock()
			for i, w := range st.waiters {
				if w == ch {
					st.waiters = append(st.waiters[:i], st.waiters[i+1:]...)
					return ctx.Err()
				}
			}
			// Granted meanwhile: give the slot back.
			st.inflight--
			e.dispatchLocked(st)
			return ctx.Err()
		}
	}
}

func (e *Engine) release(st *endpointState) {
	st.mu.Lock()
	st.progress = e.clock.Now()
	st.inflight--
	e.dispatchLocked(st)
	st.mu.Unlock()
}

// waitRate waits for the endpoint's rate limiter, extending the lease while
// it waits. It returns false if the engine is stopping.
func (e *Engine) waitRate(st *endpointState, job *queue.Job) bool {
	st.mu.Lock()
	lim := st.limiter
	st.mu.Unlock()
	if lim == nil {
		return true
	}
	r := lim.Reserve()
	d := r.Delay()
	if d == 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	renew := time.NewTicker(e.opts.LeaseRenewal)
	defer renew.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-renew.C:
			_ = job.InProgress()
		case <-e.stop.Done():
			r.Cancel()
			return false
		}
	}
}

// busyUntil is when to bring back a delivery that found the queue full: the
// next free slot at the endpoint's pace, starting a little before what is
// queued now will have been sent and at least BusyHold ahead, and no more
// than MaxBusyHold ahead.
func (e *Engine) busyUntil(st *endpointState, now time.Time) time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	pace := st.paceLocked(now)
	drain := time.Duration(float64(len(st.queue)-st.head) / pace * float64(time.Second))
	first, last := now.Add(max(e.opts.BusyHold, drain*3/4)), now.Add(e.opts.MaxBusyHold)
	if st.cursor.Before(first) {
		st.cursor = first
	}
	if st.cursor.After(last) {
		return spread(first, max(last.Sub(first), 0))
	}
	at := st.cursor
	st.cursor = st.cursor.Add(time.Duration(float64(time.Second) / pace))
	return at
}

// paceLocked estimates the deliveries per second the endpoint takes: its
// concurrency over its recent latency, or its rate limit if lower.
func (st *endpointState) paceLocked(now time.Time) float64 {
	lat := st.latency
	if lat <= 0 {
		lat = initialLatency
	}
	if st.inflight > 0 {
		lat = max(lat, now.Sub(st.progress))
	}
	return st.limitPace(float64(st.limits.MaxInFlight) / max(lat, minLatency).Seconds())
}

// minLatency bounds from below the latency a pace is worked out from:
// answers in microseconds (a receiver on loopback) would make the pace, and
// the queue sized by it, all but unbounded.
const minLatency = 5 * time.Millisecond

// limitPace is pace, or the endpoint's rate limit if that is lower.
func (st *endpointState) limitPace(pace float64) float64 {
	if st.limits.Rate > 0 {
		return min(pace, float64(st.limits.Rate))
	}
	return pace
}

func (st *endpointState) observeLatencyLocked(d time.Duration) {
	st.latSum += d
	st.latN++
	if st.latency == 0 {
		st.latency = d
		return
	}
	st.latency += (d - st.latency) / 8
}

// maintain extends the leases of deliveries that have waited in the
// endpoint's queue for LeaseRenewal, so none is handed to another worker
// while it waits, and holds the deliveries beyond the queue's capacity: an
// endpoint that slowed down keeps no more in memory than it can send soon.
// It adds the endpoint to mean (sharePaceLocked) and clears its queued
// mark.
func (e *Engine) maintain(st *endpointState, now time.Time, mean *meanPace) {
	var renew, trim []*task
	st.mu.Lock()
	mean.add(st.sharePaceLocked(now))
	st.closeWindowLocked(now)
	st.queued = false
	if n := len(st.queue) - st.head - st.queueCapLocked(now); n > 0 {
		trim = append(trim, st.queue[len(st.queue)-n:]...)
		clear(st.queue[len(st.queue)-n:])
		st.queue = st.queue[:len(st.queue)-n]
		st.pending -= n
		e.pending.Add(-int64(n))
	}
	for _, t := range st.queue[st.head:] {
		if now.Sub(t.renewed) >= e.opts.LeaseRenewal {
			t.renewed = now
			renew = append(renew, t)
		}
	}
	st.mu.Unlock()
	for _, t := range renew {
		// ErrResolved: sent and resolved since; nothing to keep.
		_ = t.job.InProgress()
	}
	for _, t := range trim {
		e.hold(t.job, st, e.busyUntil(st, now), holdBusy)
	}
}
