package engine

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/queue/queuetest"
)

// TestDeadEndpointBacklogStaysOnDisk queues 100k deliveries for an endpoint
// whose circuit is open and checks that the process does not grow with
// them: they are parked in JetStream, costing disk, not memory.
//
// The embedded nats-server shares the process, so the heap measured
// (HeapInuse after a collection) is the engine's, the client's and the
// server's together. A held delivery used to cost the server about 1 KiB
// for as long as it waited (its message id for the de-duplication window, a
// pending schedule, a unique subject); a parked one costs it nothing. What
// the server does keep for a while after a burst is bounded by time, not by
// the backlog: the ingest's de-duplication ids (event ids for DedupeWindow,
// fan-out ids for the deliveries' window, about 200 B per event together)
// and the caches of the file-store blocks just written (dropped 10 s after
// their last use). The test runs with short windows and measures once both
// have passed, as a long outage sees it.
func TestDeadEndpointBacklogStaysOnDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 100k events")
	}
	if raceDetector {
		// The detector's shadow memory is most of the heap then; make test-allocs
		// runs this without it.
		t.Skip("measures the heap: run without -race")
	}
	f := &fixture{t: t, secrets: map[string]string{}, metrics: prometheus.NewRegistry()}
	f.q = queuetest.Open(t, func(c *queue.Config) {
		c.DedupeWindow = dedupeWindow
	})
	dead := newReceiver(t, false, nil)
	f.endpoint("down", dead)
	dead.Close() // connection refused from now on
	f.subscription("to-down", "down")
	opts := testOptions()
	// Long cool-downs: no probe while the heap is measured.
	opts.Breaker = BreakerConfig{Threshold: 5, MinCooldown: 5 * time.Minute, MaxCooldown: 10 * time.Minute}
	eng := f.start(opts)
	ctx := context.Background()
	key := queue.EndpointKey{Namespace: ns, Endpoint: "down"}

	publish := func(from, n int) {
		const batch = 1000
		for i := from; i < from+n; i += batch {
			evs := make([]queue.Event, 0, batch)
			for j := i; j < min(i+batch, from+n); j++ {
				evs = append(evs, event(fmt.Sprintf("m%06d", j)))
			}
			if _, err := f.q.PublishEvents(ctx, evs); err != nil {
				t.Fatal(err)
			}
		}
	}
	parked := func() float64 { return metricValue(eng.m.parks.WithLabelValues(ns, "down", holdCircuitOpen)) }
	// Everything fanned out is parked (or was one of the first failures).
	settled := func(want int) func() bool {
		return func() bool {
			b, err := f.q.Backlog(ctx)
			return err == nil && parked() >= float64(want) && b.Endpoints[key] == b.Parked[key] && b.Parked[key] >= uint64(want)
		}
	}
	waitFor := func(what string, d time.Duration, cond func() bool) {
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %s waiting for %s", d, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Warm up: open the circuit and let every pool and buffer reach its
	// working size.
	const warm, total = 5000, 100_000
	first := opts.Breaker.Threshold + registryDefaultInFlight
	publish(0, warm)
	eventually(t, "the circuit to open", func() bool { return f.endpointStats("down").Circuit == CircuitOpen })
	waitFor("the warm-up backlog to be parked", time.Minute, settled(warm-first))
	// The warm-up's de-duplication entries expire.
	time.Sleep(dedupeWindow + dedupeSlack)
	before := heapInUse()

	start := time.Now()
	publish(warm, total-warm)
	waitFor("the backlog to be parked", 3*time.Minute, settled(total-first))
	took := time.Since(start)
	withIDs := heapInUse()
	time.Sleep(dedupeWindow + dedupeSlack)
	after := heapInUse()
	split := heapShares()
	n := float64(total - warm)
	t.Logf("%d deliveries parked in %s. HeapInuse %.1f MiB before, %.1f MiB right after (%+.0f B per delivery, "+
		"ingest de-duplication ids and block caches included), %.1f MiB once those expired (%+.0f B per delivery). "+
		"Now: embedded nats-server %.1f MiB, engine and client %.1f MiB",
		total-warm, took.Round(time.Millisecond), mib(before), mib(withIDs), float64(withIDs-before)/n,
		mib(after), float64(after-before)/n, mib(split.server), mib(split.rest))

	st := f.endpointStats("down")
	// Only the sends admitted before the circuit opened are attempts.
	if st.Queued != 0 || st.InFlight != 0 || st.Failed > uint64(first) {
		t.Errorf("endpoint %+v: nothing should wait in memory, and only the first failures are attempts", st)
	}
	if b, err := f.q.Backlog(ctx); err != nil || b.Parked[key] < total-uint64(first) {
		t.Errorf("parked backlog %d (%v), want about %d", b.Parked[key], err, total)
	}
	const margin = 24 << 20
	if after > before+margin {
		t.Errorf("the process heap grew by %.1f MiB for %d parked deliveries, more than the %d MiB margin",
			mib(after-before), total-warm, margin>>20)
	}
}

// The de-duplication windows of the memory test. The server drops ids on a
// timer as they expire; the slack also covers the file store's block caches,
// which it drops 10 s after their last use.
const (
	dedupeWindow = 10 * time.Second
	dedupeSlack  = 2500 * time.Millisecond
)

// heapInUse is the live heap of the whole process, the embedded server's
// included.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// registryDefaultInFlight is an endpoint's default maxInFlight.
const registryDefaultInFlight = 32

type shares struct{ server, rest int64 }

// heapShares splits the live heap, as the runtime's heap profile samples
// it, between the embedded nats-server and everything else.
func heapShares() shares {
	runtime.GC()
	runtime.GC() // the profile lags a cycle behind
	n, _ := runtime.MemProfile(nil, false)
	var recs []runtime.MemProfileRecord
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, false); ok {
			recs = recs[:n]
			break
		}
	}
	var s shares
	for _, r := range recs {
		b := scaled(r.InUseObjects(), r.InUseBytes())
		if fromServer(r.Stack()) {
			s.server += b
		} else {
			s.rest += b
		}
	}
	return s
}

// scaled undoes the heap profile's sampling, as pprof does.
func scaled(count, size int64) int64 {
	rate := runtime.MemProfileRate
	if count == 0 || size == 0 || rate <= 1 {
		return size
	}
	avg := float64(size) / float64(count)
	return int64(float64(size) / (1 - math.Exp(-avg/float64(rate))))
}

func fromServer(stack []uintptr) bool {
	frames := runtime.CallersFrames(stack)
	for {
		fr, more := frames.Next()
		if strings.HasPrefix(fr.Function, "github.com/nats-io/nats-server/") {
			return true
		}
		if !more {
			return false
		}
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
