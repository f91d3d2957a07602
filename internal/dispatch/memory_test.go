package dispatch

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/queue"
)

// TestDeadEndpointBacklogStaysOnDisk queues 100k deliveries for an endpoint
// whose circuit is open and checks that the heap does not grow with them:
// they are held in JetStream, not in the engine.
//
// The embedded nats-server shares the process, and it does keep state per
// held delivery (the message id for the de-duplication window, the pending
// schedule and its subject). The test therefore splits the heap by who
// allocated it, from the runtime's heap profile: the engine and the NATS
// client must stay within a fixed margin; the server's share is logged.
func TestDeadEndpointBacklogStaysOnDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 100k events")
	}
	f := newFixture(t)
	dead := newReceiver(t, false, nil)
	f.endpoint("down", dead)
	dead.Close() // connection refused from now on
	f.subscription("to-down", "down")
	opts := testOptions()
	// Long cool-downs: nothing comes back while the heap is measured.
	opts.Breaker = BreakerConfig{Threshold: 5, MinCooldown: 5 * time.Minute, MaxCooldown: 10 * time.Minute}
	eng := f.start(opts)
	ctx := context.Background()

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
	held := func() float64 { return metricValue(eng.m.holds.WithLabelValues(ns, "down", holdCircuitOpen)) }
	settled := func(want float64) func() bool {
		return func() bool {
			b, err := f.q.Backlog(ctx)
			return err == nil && held() >= want && b.Endpoints[queue.EndpointKey{Namespace: ns, Endpoint: "down"}] == 0
		}
	}

	// Warm up: open the circuit and let every pool and buffer reach its
	// working size.
	const warm, total = 5000, 100_000
	publish(0, warm)
	eventually(t, "the circuit to open", func() bool { return f.endpointStats("down").Circuit == CircuitOpen })
	eventually(t, "the warm-up backlog to be held", settled(warm-64))
	before := heapShares()

	start := time.Now()
	publish(warm, total-warm)
	eventually(t, "the backlog to be held", settled(total-64))
	after := heapShares()
	n := float64(total - warm)
	t.Logf("%d deliveries held in %s. Heap: engine and client %.1f → %.1f MiB (%+.0f B per delivery); "+
		"embedded nats-server %.1f → %.1f MiB (%+.0f B per delivery)",
		total-warm, time.Since(start).Round(time.Millisecond),
		mib(before.rest), mib(after.rest), float64(after.rest-before.rest)/n,
		mib(before.server), mib(after.server), float64(after.server-before.server)/n)

	st := f.endpointStats("down")
	// Only the sends admitted before the circuit opened are attempts.
	if st.Queued != 0 || st.InFlight != 0 || st.Failed > uint64(opts.Breaker.Threshold+registryDefaultInFlight) {
		t.Errorf("endpoint %+v: nothing should wait in memory, and only the first failures are attempts", st)
	}
	const margin = 16 << 20
	if after.rest > before.rest+margin {
		t.Errorf("the engine's heap grew by %.1f MiB for %d held deliveries, more than the %d MiB margin",
			mib(after.rest-before.rest), total-warm, margin>>20)
	}
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
