package queue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkPhases(b *testing.B) {
	q := benchQueue(b, SyncDefault)
	evs := benchEvents(b.N)
	for i := 0; i < len(evs); i += 1000 {
		if _, err := q.PublishEvents(context.Background(), evs[i:min(i+1000, len(evs))]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	stop := run(b, func(ctx context.Context) error { return q.RunFanout(ctx, toEndpoint("sub", "ep")) })
	for streamMsgs(b, q, streamEvents) != 0 {
		time.Sleep(5 * time.Millisecond)
	}
	fo := time.Since(start)
	stop()
	var handled atomic.Int64
	all := make(chan struct{})
	start = time.Now()
	run(b, func(ctx context.Context) error {
		return q.RunDeliveries(ctx, 64, func(ctx context.Context, j *Job) {
			_ = j.Done()
			if handled.Add(1) == int64(b.N) {
				close(all)
			}
		})
	})
	<-all
	dl := time.Since(start)
	b.ReportMetric(float64(b.N)/fo.Seconds(), "fanout/s"); b.ReportMetric(float64(dbgMsgs.Load())/float64(dbgBatches.Load()), "msgs/batch"); b.ReportMetric(float64(dbgPrev.Load())/1e9, "prev-s"); b.ReportMetric(float64(dbgPub.Load())/1e9, "pub-s"); b.ReportMetric(float64(dbgAck.Load())/1e9, "await-s")
	b.ReportMetric(float64(b.N)/dl.Seconds(), "deliver/s")
}
