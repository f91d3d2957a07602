package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
)

// Run with a fixed count, e.g.
//
//	go test -run '^$' -bench . -benchtime 20000x ./internal/engine/

var benchData = json.RawMessage(`{"pad":"` + strings.Repeat("x", 1024-10) + `"}`)

// countingReceiver answers 204 and counts; it keeps nothing, so a long run
// measures delivery rather than the receiver's memory.
func countingReceiver(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
		n.Add(1)
	}))
	b.Cleanup(srv.Close)
	return srv, &n
}

// BenchmarkEndToEnd measures events published by 64 concurrent producers
// until the receiver has them all, against the same HTTP client (the
// endpoint's Target, signing included) posting directly to the same
// receiver from 64 goroutines.
func BenchmarkEndToEnd(b *testing.B) {
	for _, inFlight := range []int32{32, 256} {
		b.Run(fmt.Sprintf("maxInFlight=%d", inFlight), func(b *testing.B) { benchmarkEndToEnd(b, inFlight, 1) })
	}
	// The same events in batches of 100 from 4 producers (make bench's batch phase),
	// to compare a single event's cost with a batched one's in one run and profile.
	b.Run("batch=100,maxInFlight=32", func(b *testing.B) { benchmarkEndToEnd(b, 32, 100) })
}

func benchmarkEndToEnd(b *testing.B, maxInFlight int32, batch int) {
	publishers := 64
	if batch > 1 {
		publishers = 4
	}
	f := newFixture(b)
	srv, got := countingReceiver(b)
	rc := &receiver{Server: srv}
	f.endpoint("bench", rc, func(ep *hooklinev1.WebhookEndpoint) {
		ep.Spec.Limits = &hooklinev1.EndpointLimits{MaxInFlight: &maxInFlight}
	})
	f.subscription("bench", "bench")
	f.start(Options{})

	// Baseline: the same target, the same message shape, no queue.
	target := f.reg.Endpoint(ns, "bench").Target
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range publishers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				id := fmt.Sprintf("direct-%d", i)
				msg := delivery.Message{ID: id, WebhookID: id, Type: "bench.event", Time: time.Now(),
					Data: benchData, Namespace: ns, Subscription: "bench"}
				if res := delivery.Send(context.Background(), target, msg, time.Now()); res.Verdict != delivery.Delivered {
					b.Errorf("direct send: %v %d", res.Err, res.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	direct := float64(b.N) / time.Since(start).Seconds()
	got.Store(0)

	next.Store(0)
	b.SetBytes(int64(len(benchData)))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for range publishers {
		wg.Go(func() {
			if batch > 1 {
				evs := make([]queue.Event, 0, batch)
				for i := next.Add(int64(batch)) - int64(batch) + 1; i <= int64(b.N); i = next.Add(int64(batch)) - int64(batch) + 1 {
					evs = evs[:0]
					for k := i; k < i+int64(batch) && k <= int64(b.N); k++ {
						evs = append(evs, queue.Event{Namespace: ns, ID: fmt.Sprintf("e2e-%d-%d", b.N, k), Type: "bench.event", Time: time.Now(), Data: benchData})
					}
					if _, err := f.q.PublishEvents(context.Background(), evs); err != nil {
						b.Error(err)
						return
					}
				}
				return
			}
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				ev := queue.Event{Namespace: ns, ID: fmt.Sprintf("e2e-%d-%d", b.N, i), Type: "bench.event", Time: time.Now(), Data: benchData}
				if _, err := f.q.PublishEvent(context.Background(), ev); err != nil {
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
	e2e := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(e2e, "delivered/s")
	b.ReportMetric(direct, "direct-posts/s")
	b.ReportMetric(e2e/direct, "ratio")
	// The whole process: publishers, embedded server, engine and receiver.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/delivery")
	for _, r := range []string{holdBusy, holdCircuitOpen} {
		if h := metricValue(f.eng.m.holds.WithLabelValues(ns, "bench", r)); h > 0 {
			b.Logf("%v deliveries held: %s", h, r)
		}
	}
}

// BenchmarkMatch measures the fan-out's matching: a namespace of 50
// subscriptions of which 3 match the event, one of them with a filter.
func BenchmarkMatch(b *testing.B) {
	f := newFixture(b)
	srv, _ := countingReceiver(b)
	f.endpoint("erp", &receiver{Server: srv})
	for i := range 47 {
		f.subscription(fmt.Sprintf("other-%02d", i), "erp", func(s *hooklinev1.Subscription) {
			s.Spec.EventTypes = []string{fmt.Sprintf("order.%d.*", i)}
		})
	}
	f.subscription("all-invoices", "erp", func(s *hooklinev1.Subscription) { s.Spec.EventTypes = []string{"invoice.*"} })
	f.subscription("paid", "erp", func(s *hooklinev1.Subscription) { s.Spec.EventTypes = []string{"invoice.paid"} })
	f.subscription("big", "erp", func(s *hooklinev1.Subscription) {
		s.Spec.EventTypes = []string{"*"}
		s.Spec.Filter = "data.amount > 10"
	})
	eng := f.start(Options{})
	ev := event("x")
	ds, err := eng.Match(context.Background(), ev)
	if err != nil || len(ds) != 3 {
		b.Fatalf("Match = %d deliveries, %v", len(ds), err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := eng.Match(context.Background(), ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
