package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
)

// BenchmarkOrderingPerKey measures what ordering per key costs against
// unordered delivery, in one process and one run: the same events (1 KiB,
// 1000 distinct keys) published by 64 producers, once to an unordered
// subscription and once to one ordered by data.customerId, each to its own
// endpoint (maxInFlight 32) on a receiver answering after the given
// latency. It reports delivered/s of both and their ratio, and the
// process's CPU time per event of both and their ratio: on a shared machine
// CPU per event is the steadier figure.
//
//	go test -run '^$' -bench OrderingPerKey -benchtime 5000x ./internal/engine/
func BenchmarkOrderingPerKey(b *testing.B) {
	for _, latency := range []time.Duration{0, 5 * time.Millisecond} {
		for _, lanes := range []int32{16, 64} {
			b.Run(fmt.Sprintf("latency=%s,lanes=%d", latency, lanes), func(b *testing.B) { benchmarkOrderingPerKey(b, latency, lanes) })
		}
	}
}

func benchmarkOrderingPerKey(b *testing.B, latency time.Duration, lanes int32) {
	const publishers, keys = 64, 1000
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if latency > 0 {
			time.Sleep(latency)
		}
		w.WriteHeader(http.StatusNoContent)
		got.Add(1)
	}))
	b.Cleanup(srv.Close)
	f := newFixture(b)
	for _, name := range []string{"plain", "keyed"} {
		f.endpoint(name, &receiver{Server: srv})
	}
	f.subscription("plain", "plain", func(s *hooklinev1.Subscription) { s.Spec.EventTypes = []string{"plain.*"} })
	f.subscription("keyed", "keyed", func(s *hooklinev1.Subscription) {
		s.Spec.EventTypes = []string{"keyed.*"}
		s.Spec.Delivery = &hooklinev1.DeliveryPolicy{Ordering: hooklinev1.OrderingOrdered, OrderingKey: "data.customerId", OrderingLanes: &lanes}
	})
	f.start(Options{})

	data := func(i int64) []byte {
		return fmt.Appendf(nil, `{"customerId":"cus-%04d","pad":"%s"}`, i%keys, benchData[10:len(benchData)-2])
	}
	run := func(typ string) (perSec float64, cpu time.Duration) {
		got.Store(0)
		var next atomic.Int64
		var wg sync.WaitGroup
		cpu0, start := cpuTime(), time.Now()
		for range publishers {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
					ev := queue.Event{Namespace: ns, ID: fmt.Sprintf("%s-%d-%d", typ, b.N, i), Type: typ + ".event", Time: time.Now(), Data: data(i)}
					if _, err := f.q.PublishEvent(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		deadline := time.Now().Add(5 * time.Minute)
		for got.Load() < int64(b.N) {
			if time.Now().After(deadline) {
				b.Fatalf("%s: delivered %d of %d", typ, got.Load(), b.N)
			}
			time.Sleep(time.Millisecond)
		}
		return float64(b.N) / time.Since(start).Seconds(), cpuTime() - cpu0
	}
	plain, plainCPU := run("plain")
	b.SetBytes(int64(len(benchData)))
	b.ResetTimer()
	keyed, keyedCPU := run("keyed")
	b.StopTimer()
	perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(keyed, "delivered/s")
	b.ReportMetric(plain, "unordered/s")
	b.ReportMetric(keyed/plain, "ratio")
	b.ReportMetric(perEvent(keyedCPU), "cpu-µs/event")
	b.ReportMetric(perEvent(plainCPU), "unordered-cpu-µs/event")
	b.ReportMetric(perEvent(keyedCPU)/perEvent(plainCPU), "cpu-ratio")
}
