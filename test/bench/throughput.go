package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/signing"
	"github.com/hookline/hookline/internal/ssrf"
)

// baselineResult is what the receiver takes straight from an HTTP client, without
// the dispatcher.
type baselineResult struct {
	Requests, Workers, Failed int
	Elapsed                   time.Duration
	Rate                      float64
	FirstErr                  string
	// CPUPerRequest is this program's CPU time per request: client and receiver.
	CPUPerRequest time.Duration
}

// baseline posts the benchmark's events straight to the receiver with the
// dispatcher's own client code (directTarget), N workers, fixed count. It is
// the ceiling the dispatcher's throughput is compared with, measured just before it
// on the same machine, so both see about the same load from other processes: once
// at the start of a run, and again just before each throughput phase. group (no
// '-') names the events and the receiver's route, one per measurement.
func (b *bench) baseline(ctx context.Context, r *run, group string) (*baselineResult, error) {
	path := "/" + r.ns + "/" + group
	target, done, err := b.directTarget(path)
	if err != nil {
		return nil, err
	}
	defer done()

	res := &baselineResult{Requests: b.cfg.baselineRequests, Workers: b.cfg.baselineWorkers}
	var (
		next, failed atomic.Int64
		errOnce      sync.Once
		wg           sync.WaitGroup
	)
	start, cpu := time.Now(), selfCPU()
	for range res.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, b.cfg.payloadBytes+64)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= res.Requests {
					return
				}
				now := time.Now()
				buf = b.payload.data(buf[:0], i, now)
				msg := delivery.Message{ID: eventID(group, i), WebhookID: eventID(group, i), Type: "bench.baseline", Time: now, Data: buf, Namespace: "bench", Subscription: "baseline"}
				if r := delivery.Send(ctx, target, msg, now); r.Verdict != delivery.Delivered {
					failed.Add(1)
					errOnce.Do(func() { res.FirstErr = fmt.Sprintf("status %d, %v", r.StatusCode, r.Err) })
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Failed = int(failed.Load())
	g := b.sink.group(path, group)
	res.Rate = float64(g.Count) / res.Elapsed.Seconds()
	if g.Count > 0 {
		res.CPUPerRequest = (selfCPU() - cpu) / time.Duration(g.Count)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// directTarget is a target for posting straight to the receiver at path with the
// dispatcher's own client code: a delivery.Target from a delivery.Pool (same transport
// settings, same body layout, same signing). done releases it.
func (b *bench) directTarget(path string) (*delivery.Target, func(), error) {
	secret, err := signing.GenerateSecret()
	if err != nil {
		return nil, nil, err
	}
	signer, err := signing.NewSigner(signing.KeySet{Current: signing.Key{ID: signing.NewKeyID(), Secret: secret, CreatedAt: time.Now()}}, time.Now())
	if err != nil {
		return nil, nil, err
	}
	b.sink.addRoute(path, secret)
	policy, err := ssrf.ParsePolicy([]string{"127.0.0.0/8"}, nil)
	if err != nil {
		return nil, nil, err
	}
	pool := delivery.NewPool(delivery.PoolOptions{})
	target, err := pool.NewTarget(delivery.TargetConfig{URL: b.sinkSrv.url(path), SSRF: policy, Sign: signer.Sign})
	if err != nil {
		pool.CloseIdleConnections()
		return nil, nil, err
	}
	return target, func() { target.Close(); pool.CloseIdleConnections() }, nil
}

// throughputResult is the dispatcher's sustained delivery rate.
type throughputResult struct {
	Events     int
	Published  int
	PublishDur time.Duration // first publish → last 202
	Delivered  int
	Elapsed    time.Duration // first publish → last unique delivery
	Rate       float64       // Delivered / Elapsed
	Lost, Dups int
	PublishErr string
	// CPU time per delivery of the dispatcher, and of this program (publishers and
	// receiver), from the first publish to the last delivery.
	DispatcherCPU, BenchCPU time.Duration
	// SendMean is the mean time of the phase's attempts as the dispatcher
	// measured them (its latency histogram), from sending to the response;
	// Endpoints is how many endpoints the phase sends to. By Little's law
	// Rate × SendMean is how many sends were in flight on average, against
	// Endpoints × maxInFlight allowed.
	SendMean  time.Duration
	Endpoints int
	// Baseline is the baseline measured just before the phase, which its
	// ratios are taken against; nil: the run's first.
	Baseline *baselineResult
}

// sendWatch reads the dispatcher's send-time totals at the start of a phase;
// end sets res.SendMean from a second reading. A failed scrape leaves it 0.
func sendWatch(ctx context.Context, d *dispatcherProc, res *throughputResult) (end func()) {
	sum0, n0, err := d.sendTotals(ctx)
	if err != nil {
		return func() {}
	}
	return func() {
		sum, n, err := d.sendTotals(ctx)
		if err == nil && n > n0 {
			res.SendMean = time.Duration((sum - sum0) / (n - n0) * float64(time.Second))
		}
	}
}

// throughput publishes a fixed number of events in batches from several publishers
// at once and times them from the first publish to the last unique delivery, so it
// covers ingest, the queue, fan-out and sending end to end.
func (b *bench) throughput(ctx context.Context, r *run) *throughputResult {
	const group = "tp"
	n, size := b.cfg.events, b.cfg.batch
	if r.durability == "always" && b.cfg.alwaysEvents > 0 {
		n = b.cfg.alwaysEvents
	}
	batches := (n + size - 1) / size
	res := &throughputResult{Events: n, Endpoints: 1}
	var (
		next, published atomic.Int64
		errOnce         sync.Once
		wg              sync.WaitGroup
	)
	pid := r.d.cmd.Process.Pid
	sent := sendWatch(ctx, r.d, res)
	start, dcpu, bcpu := time.Now(), procCPU(pid), selfCPU()
	for range b.cfg.publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, size*(b.cfg.payloadBytes+96)+16)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= batches {
					return
				}
				lo, hi := i*size, min(n, (i+1)*size)
				sent := time.Now()
				buf = b.payload.batch(buf, lo, hi, group, func(int) string { return "bench.throughput" }, sent)
				if err := r.pub.batch(ctx, r.ns, buf); err != nil {
					errOnce.Do(func() { res.PublishErr = err.Error() })
					continue
				}
				published.Add(int64(hi - lo))
			}
		}()
	}
	wg.Wait()
	res.PublishDur = time.Since(start)
	res.Published = int(published.Load())

	g := b.sink.await(ctx, r.healthy, group, res.Published, b.cfg.drainTimeout, b.cfg.stallTimeout)
	if g.Count > 0 {
		res.DispatcherCPU = (procCPU(pid) - dcpu) / time.Duration(g.Count)
		res.BenchCPU = (selfCPU() - bcpu) / time.Duration(g.Count)
	}
	sent()
	res.Delivered, res.Dups = g.Count, g.Dups
	res.Lost = res.Published - g.Count
	if !g.Last.IsZero() {
		res.Elapsed = g.Last.Sub(start)
		res.Rate = float64(g.Count) / res.Elapsed.Seconds()
	}
	return res
}
