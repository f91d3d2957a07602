package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/tracing"
)

// BenchmarkTracing measures what tracing costs per event on the whole path: ingest span,
// the traceparent stored with the event and its deliveries, the fan-out span, the attempt
// span and the traceparent header, and exporting the spans over OTLP/HTTP to a collector on
// loopback that discards them. It reports delivered/s and the process's CPU time per
// event, which is the figure to compare on a shared machine.
//
//	go test -run '^$' -bench Tracing -benchtime 20000x ./internal/engine/
func BenchmarkTracing(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("tracing=%v", on), func(b *testing.B) { benchmarkTracing(b, on) })
	}
}

func benchmarkTracing(b *testing.B, on bool) {
	const publishers = 64
	if on {
		var spans atomic.Int64
		col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			spans.Add(n)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		b.Cleanup(col.Close)
		b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
		stop, err := tracing.Setup(context.Background(), "hookline-bench")
		if err != nil || stop == nil {
			b.Fatalf("Setup: %v", err)
		}
		b.Cleanup(func() {
			_ = stop(context.Background())
			b.Logf("%d bytes of spans exported", spans.Load())
		})
	}
	f := newFixture(b)
	srv, got := countingReceiver(b)
	f.endpoint("bench", &receiver{Server: srv})
	f.subscription("bench", "bench")
	f.start(Options{})

	producer := trace.ContextWithRemoteSpanContext(b.Context(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled, Remote: true,
	}))
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(benchData)))
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	for range publishers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				ev := queue.Event{Namespace: ns, ID: fmt.Sprintf("tr-%d-%d", b.N, i), Type: "bench.event", Time: time.Now(), Data: benchData}
				var end func(error)
				ev.TraceParent, end = tracing.Ingest(producer, ev.Namespace, ev.ID, ev.Type)
				_, err := f.q.PublishEvent(producer, ev)
				end(err)
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for got.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d", got.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "delivered/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
