package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Run with a fixed count so SyncAlways runs stay short, e.g.
//
//	go test -run '^$' -bench . -benchtime 20000x ./internal/queue/

var benchSeq atomic.Int64

func benchEvents(n int) []Event {
	data := json.RawMessage(`{"pad":"` + strings.Repeat("x", 1024-10) + `"}`)
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{Namespace: "bench", ID: fmt.Sprintf("e%d", benchSeq.Add(1)), Type: "bench.event", Time: time.Now(), Data: data}
	}
	return evs
}

func benchQueue(b *testing.B, mode SyncMode) *Queue {
	cfg := testConfig(b.TempDir())
	cfg.MaxRequestTimeout, cfg.AckWait = 15*time.Second, 30*time.Second
	cfg.Sync = mode
	return openTest(b, cfg)
}

func BenchmarkPublish(b *testing.B) {
	for _, mode := range []SyncMode{SyncDefault, SyncAlways} {
		b.Run("sync="+mode.String(), func(b *testing.B) {
			b.Run("request-per-event", func(b *testing.B) {
				q := benchQueue(b, mode)
				evs := benchEvents(b.N)
				b.SetBytes(1024)
				b.ResetTimer()
				for i := range evs {
					if _, err := q.publishEventSync(context.Background(), evs[i]); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("PublishEvent-1-caller", func(b *testing.B) {
				q := benchQueue(b, mode)
				evs := benchEvents(b.N)
				b.SetBytes(1024)
				b.ResetTimer()
				for i := range evs {
					if _, err := q.PublishEvent(context.Background(), evs[i]); err != nil {
						b.Fatal(err)
					}
				}
			})
			// Concurrent API requests, each waiting for its own event.
			for _, callers := range []int{64} {
				for _, variant := range []string{"request-per-event", "PublishEvent"} {
					b.Run(fmt.Sprintf("%s-%d-callers", variant, callers), func(b *testing.B) {
						q := benchQueue(b, mode)
						evs := benchEvents(b.N)
						pub := q.PublishEvent
						if variant == "request-per-event" {
							pub = q.publishEventSync
						}
						var next atomic.Int64
						var wg sync.WaitGroup
						b.SetBytes(1024)
						b.ResetTimer()
						for range callers {
							wg.Go(func() {
								for i := next.Add(1) - 1; i < int64(len(evs)); i = next.Add(1) - 1 {
									if _, err := pub(context.Background(), evs[i]); err != nil {
										b.Error(err)
										return
									}
								}
							})
						}
						wg.Wait()
					})
				}
			}
			b.Run("PublishEvents-batch-256", func(b *testing.B) {
				q := benchQueue(b, mode)
				evs := benchEvents(b.N)
				b.SetBytes(1024)
				b.ResetTimer()
				for i := 0; i < len(evs); i += 256 {
					if _, err := q.PublishEvents(context.Background(), evs[i:min(i+256, len(evs))]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkFanoutDeliver measures events already stored flowing through the
// fan-out (one delivery per event) to a no-op handler.
func BenchmarkFanoutDeliver(b *testing.B) {
	for _, mode := range []SyncMode{SyncDefault, SyncAlways} {
		b.Run("sync="+mode.String(), func(b *testing.B) { benchFanoutDeliver(b, mode, 0) })
	}
}

// BenchmarkFanoutRetention is BenchmarkFanoutDeliver with event retention
// on (the default) and off: what retaining every event costs the fan-out.
func BenchmarkFanoutRetention(b *testing.B) {
	for _, r := range []struct {
		name      string
		retention time.Duration
	}{{"on", DefaultRetention}, {"off", -1}} {
		b.Run("retention="+r.name, func(b *testing.B) { benchFanoutDeliver(b, SyncDefault, r.retention) })
	}
}

func benchFanoutDeliver(b *testing.B, mode SyncMode, retention time.Duration) {
	cfg := testConfig(b.TempDir())
	cfg.MaxRequestTimeout, cfg.AckWait = 15*time.Second, 30*time.Second
	cfg.Sync, cfg.Retention = mode, retention
	q := openTest(b, cfg)
	// The client drops messages a subscription cannot take ("slow
	// consumer"); a dropped delivery comes back only after its ack wait.
	var drops atomic.Int64
	q.nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			drops.Add(1)
		}
	})
	evs := benchEvents(b.N)
	for i := 0; i < len(evs); i += 1000 {
		if _, err := q.PublishEvents(context.Background(), evs[i:min(i+1000, len(evs))]); err != nil {
			b.Fatal(err)
		}
	}
	var handled atomic.Int64
	// maxGap is the longest wait between two deliveries handed to the
	// handlers while the backlog drains: a pull that stalls until its
	// expiry (pullExpiry) shows as a gap of about that length.
	var gapMu sync.Mutex
	var last time.Time
	var maxGap time.Duration
	all := make(chan struct{})
	b.SetBytes(1024)
	b.ResetTimer()
	start := time.Now()
	run(b, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("sub", "ep")) })
	run(b, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 64, func(ctx context.Context, j *Job) {
			now := time.Now()
			gapMu.Lock()
			if !last.IsZero() {
				maxGap = max(maxGap, now.Sub(last))
			}
			last = now
			gapMu.Unlock()
			if err := j.Done(); err != nil {
				b.Error(err)
			}
			if handled.Add(1) == int64(b.N) {
				close(all)
			}
		})
	})
	var fannedOut time.Duration
	for fannedOut == 0 {
		select {
		case <-all:
		case <-time.After(10 * time.Millisecond):
		}
		if streamMsgs(b, q, streamEvents) == 0 {
			fannedOut = time.Since(start)
		}
	}
	<-all
	total := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/fannedOut.Seconds(), "fanout-events/s")
	b.ReportMetric(float64(b.N)/total.Seconds(), "deliveries/s")
	b.ReportMetric(float64(maxGap)/float64(time.Millisecond), "max-gap-ms")
	b.ReportMetric(float64(drops.Load()), "slow-consumer-reports")
}
