package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
)

// BenchmarkOrderingPerKeyFailing measures what a failing key costs the
// other keys of a subscription ordered per key: the same events (1 KiB, 1000
// keys over 16 lanes, 64 producers) to one subscription whose receiver
// takes everything and to one whose receiver answers 500 to one key
// (retried after an hour, so it stays blocked). It reports delivered/s and
// CPU per delivered event of the other keys in both runs, and their ratios.
// Before parking per key the failing key held its lane, so about 1/16 of the
// events never arrived and this benchmark could not finish.
//
//	go test -run '^$' -bench OrderingPerKeyFailing -benchtime 2000x ./internal/engine/
func BenchmarkOrderingPerKeyFailing(b *testing.B) {
	const publishers, keys, bad = 64, 1000, `"customerId":"cus-0000"`
	var got atomic.Int64
	handler := func(failing bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if failing && bytes.Contains(body, []byte(bad)) {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			got.Add(1)
		})
	}
	f := newFixture(b)
	for _, name := range []string{"healthy", "failing"} {
		srv := httptest.NewServer(handler(name == "failing"))
		b.Cleanup(srv.Close)
		f.endpoint(name, &receiver{Server: srv})
		lanes := int32(16)
		f.subscription(name, name, func(s *hooklinev1.Subscription) {
			s.Spec.EventTypes = []string{name + ".*"}
			s.Spec.Delivery = &hooklinev1.DeliveryPolicy{Ordering: hooklinev1.OrderingOrdered, OrderingKey: "data.customerId", OrderingLanes: &lanes,
				Schedule: []hooklinev1.Duration{{Duration: metav1.Duration{Duration: time.Hour}}}}
		})
	}
	f.start(Options{})

	data := func(i int64) []byte {
		return fmt.Appendf(nil, `{"customerId":"cus-%04d","pad":"%s"}`, i%keys, benchData[10:len(benchData)-2])
	}
	others := int64(b.N) - (int64(b.N)+keys-1)/keys // events i with i%keys == 0 are the failing key's
	run := func(typ string) (perSec float64, cpu time.Duration) {
		got.Store(0)
		var next atomic.Int64
		var wg sync.WaitGroup
		cpu0, start := cpuTime(), time.Now()
		for range publishers {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
					ev := queue.Event{Namespace: ns, ID: fmt.Sprintf("%s-%d-%d", typ, b.N, i), Type: typ + ".event", Time: time.Now(), Data: data(i)}
					if _, err := f.q.PublishEvent(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		want := others
		if typ == "healthy" {
			want = int64(b.N)
		}
		deadline := time.Now().Add(5 * time.Minute)
		for got.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%s: delivered %d of %d", typ, got.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
		return float64(want) / time.Since(start).Seconds(), cpuTime() - cpu0
	}
	healthy, healthyCPU := run("healthy")
	b.SetBytes(int64(len(benchData)))
	b.ResetTimer()
	failing, failingCPU := run("failing")
	b.StopTimer()
	perEvent := func(d time.Duration, n int64) float64 { return float64(d.Microseconds()) / float64(n) }
	b.ReportMetric(failing, "delivered/s")
	b.ReportMetric(healthy, "healthy/s")
	b.ReportMetric(failing/healthy, "ratio")
	b.ReportMetric(perEvent(failingCPU, others), "cpu-µs/event")
	b.ReportMetric(perEvent(healthyCPU, int64(b.N)), "healthy-cpu-µs/event")
	b.ReportMetric(perEvent(failingCPU, others)/perEvent(healthyCPU, int64(b.N)), "cpu-ratio")
}
