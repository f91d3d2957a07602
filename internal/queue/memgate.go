package queue

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// Backpressure on memory. Each delivery the fan-out stores costs memory for
// the deliveries stream's de-duplication window (the server keeps its id; see
// deliveryDedupeWindow) and for the server's block buffers while it writes, so
// a burst that fans out faster than the window lets ids expire (100,000 events
// to 10 subscriptions of a dead endpoint in seconds) can grow the heap past the
// pod's memory limit. Close to the limit (GOMEMLIMIT) the fan-out waits before
// matching the next batch: accepted events stay stored in the events stream
// meanwhile, deliveries already stored go on being sent or parked, and ids
// expire. Nothing is lost or reordered: the waiting batch is neither stored
// nor acknowledged, its lease is kept, and batches still store in the order
// they were handed out (EventBatch.Store waits for the one before).
const (
	// memoryRefuseFraction of the memory limit, as live heap, makes the queue
	// refuse new events (ErrMemoryHigh) until the heap is below
	// memoryAcceptFraction. Ingest is shed first, before the fan-out waits:
	// what fills the heap under a heavy load is mostly ids, and the events'
	// stay for their 10-minute window whatever the fan-out does (ingest runs
	// far ahead of delivery: 17,000 events/s against 5,000 in make bench's
	// batches). With the fan-out paused first (at 70 %, this gate's first
	// version), 600,000 events published at once under the default pod's
	// GOMEMLIMIT paused it 35 times and delivered 2,840/s instead of 4,836;
	// under a 100 MiB limit, where the events' ids alone pass the mark, each
	// batch waited its whole maxPause and delivery crawled, while ingest went
	// on. Refusing with 503 and Retry-After leaves producers to retry while
	// the ids expire and delivery goes on at full speed.
	memoryRefuseFraction = 0.7
	// memoryAcceptFraction is where a refusing queue accepts events again:
	// a little below, so that it does not flip at every collection.
	memoryAcceptFraction = 0.65
	// memoryHighFraction of the memory limit, as live heap, pauses the
	// fan-out: what the fan-out itself adds (deliveries' ids, the server's
	// block buffers) once ingest is refused. Below the limit by a margin,
	// because the live heap goes on growing after the pause begins (the
	// block buffers for the parking and acknowledgements that go on, the
	// publishes in flight): in make bench's burst of 1,000,000 parked
	// deliveries under the default pod's GOMEMLIMIT (461 MiB), while each
	// park still kept an id, it peaked at 398 MiB, 76 MiB past a mark of
	// 70 %. Without those ids the same burst peaks at 106-112 MiB.
	memoryHighFraction = 0.8
	// memoryRecheck is how often ingest reads the heap: the live heap only
	// changes at a collection, and reading it takes a runtime lock that
	// concurrent requests would queue on.
	memoryRecheck = 50 * time.Millisecond
	// memoryMaxPause bounds one batch's wait, so a heap that stays high for
	// another reason slows the fan-out instead of stopping it.
	memoryMaxPause = 2 * time.Minute
)

// memoryGate reads the heap and the limit; tests replace its functions.
type memoryGate struct {
	// live is the heap marked live by the last collection, limit the memory
	// limit (math.MaxInt64 when none is set), collections the number of
	// collections so far.
	live, collections func() uint64
	limit             func() int64
	// collect forces a collection (collectIfStale).
	collect func()
	// poll is how often a paused batch looks again; maxPause bounds a wait;
	// collectAfter is how long a paused fan-out or a refusing ingest goes
	// without a collection before it starts one.
	poll, maxPause, collectAfter time.Duration
	// waiting counts the batches waiting, so a pause is logged once however
	// many workers wait.
	waiting atomic.Int32

	// checked is when ingest last read the heap (admit); refusal is what it
	// answers while it refuses, nil while it accepts.
	checked atomic.Int64
	refusal atomic.Pointer[MemoryHighError]
	// lastGC is when a collection was last seen or started, lastCollections
	// the count then, and collecting whether one started by
	// collectIfStale is running.
	lastGC          atomic.Int64
	lastCollections atomic.Uint64
	collecting      atomic.Bool
}

// ErrMemoryHigh is returned by PublishEvent and PublishEvents, wrapped in a
// *MemoryHighError, while the live heap is close to the memory limit:
// nothing was stored.
var ErrMemoryHigh = errors.New("the dispatcher is close to its memory limit")

// MemoryHighError is why events were refused: the live heap and the limit.
type MemoryHighError struct {
	Live  uint64
	Limit int64
}

func (e *MemoryHighError) Error() string {
	return fmt.Sprintf("the dispatcher is close to its memory limit (live heap %d MiB of GOMEMLIMIT %d MiB): no event is accepted until queued work drains; "+
		"if this happens under the normal load, give the dispatcher more memory (dispatcher.resources.limits.memory in the Helm chart)", e.Live>>20, e.Limit>>20)
}

// Is makes errors.Is(err, ErrMemoryHigh) true.
func (e *MemoryHighError) Is(target error) bool { return target == ErrMemoryHigh }

// RetryAfter is how long a refused producer should wait: about as long as
// the queued work takes to drain enough, which is seconds.
func (e *MemoryHighError) RetryAfter() time.Duration { return 5 * time.Second }

// admit returns a *MemoryHighError once the live heap is above
// memoryRefuseFraction of the limit and until it is below
// memoryAcceptFraction, reading it at most every memoryRecheck. While it
// refuses it keeps collections coming (collectIfStale), or it would refuse
// on a stale figure after the ids had expired.
func (g *memoryGate) admit(log logr.Logger) error {
	now := time.Now().UnixNano()
	last := g.checked.Load()
	if now-last >= int64(memoryRecheck) && g.checked.CompareAndSwap(last, now) {
		g.recheck(now, log)
	}
	if r := g.refusal.Load(); r != nil {
		return r
	}
	return nil
}

func (g *memoryGate) recheck(now int64, log logr.Logger) {
	limit := g.limit()
	if limit <= 0 || limit == math.MaxInt64 {
		g.refusal.Store(nil)
		return
	}
	live := g.live()
	mark := memoryRefuseFraction
	if g.refusal.Load() != nil {
		mark = memoryAcceptFraction
	}
	var refusal *MemoryHighError
	if float64(live) > mark*float64(limit) {
		refusal = &MemoryHighError{Live: live, Limit: limit}
	}
	if was := g.refusal.Swap(refusal); (was != nil) != (refusal != nil) {
		if refusal != nil {
			log.Info("Refusing new events: the heap is close to the memory limit; producers get 503 with Retry-After until queued work drains",
				"liveHeapBytes", live, "memoryLimitBytes", limit)
		} else {
			log.Info("Accepting events again", "liveHeapBytes", live, "memoryLimitBytes", limit)
		}
	}
	if refusal != nil {
		g.collectIfStale(now)
	}
}

// collectIfStale starts a collection in the background when none ran for
// collectAfter: the live heap is only measured by one, and a paused fan-out
// or a refusing ingest may leave too little allocation to start one.
func (g *memoryGate) collectIfStale(now int64) {
	if n := g.collections(); n != g.lastCollections.Load() {
		g.lastCollections.Store(n)
		g.lastGC.Store(now)
		return
	}
	if now-g.lastGC.Load() >= int64(g.collectAfter) && g.collecting.CompareAndSwap(false, true) {
		g.lastGC.Store(now)
		go func() {
			defer g.collecting.Store(false)
			g.collect()
		}()
	}
}

func newMemoryGate() *memoryGate {
	return &memoryGate{
		live:         func() uint64 { return readRuntimeMetric("/gc/heap/live:bytes") },
		collections:  func() uint64 { return readRuntimeMetric("/gc/cycles/total:gc-cycles") },
		limit:        func() int64 { return debug.SetMemoryLimit(-1) },
		collect:      runtime.GC,
		poll:         250 * time.Millisecond,
		maxPause:     memoryMaxPause,
		collectAfter: 5 * time.Second,
	}
}

func readRuntimeMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// high reports whether the live heap is above memoryHighFraction of the
// limit, and both figures. Without a limit it never is.
func (g *memoryGate) high() (bool, uint64, int64) {
	limit := g.limit()
	if limit <= 0 || limit == math.MaxInt64 {
		return false, 0, limit
	}
	live := g.live()
	return float64(live) > memoryHighFraction*float64(limit), live, limit
}

// AwaitMemory waits, before the batch is matched, while the heap is close to
// the memory limit (see above), for at most memoryMaxPause or until the
// fan-out's context ends, and returns how long it waited. The batch's events
// stay leased meanwhile.
func (b *EventBatch) AwaitMemory() time.Duration {
	g := b.f.q.memory
	if g == nil {
		return 0
	}
	high, live, limit := g.high()
	if !high {
		return 0
	}
	log := b.f.q.log
	if g.waiting.Add(1) == 1 {
		log.Info("Pausing the fan-out: the heap is close to the memory limit; accepted events wait in the queue",
			"liveHeapBytes", live, "memoryLimitBytes", limit)
	}
	start := time.Now()
	poll := time.NewTicker(g.poll)
	defer poll.Stop()
	lastLease := start
	defer func() {
		if g.waiting.Add(-1) == 0 {
			log.Info("Resuming the fan-out", "paused", time.Since(start).Round(time.Millisecond).String(), "liveHeapBytes", live, "stillHigh", high)
		}
	}()
	for high && time.Since(start) < g.maxPause {
		select {
		case <-b.f.ctx.Done():
			return time.Since(start)
		case <-poll.C:
		}
		now := time.Now()
		if now.Sub(lastLease) >= fanoutAckWait/3 {
			for _, m := range b.msgs {
				_ = m.InProgress()
			}
			lastLease = now
		}
		g.collectIfStale(now.UnixNano())
		high, live, _ = g.high()
	}
	return time.Since(start)
}
