package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// singles publishes n single events (POST …/events, one event per request) from
// publishers closed-loop producers, each sending its next event as soon as it has the
// 202 of the last: what most producers do. Every event is expected at path perEvent
// times (one per matching subscription); the result counts deliveries, timed from the
// first publish to the last unique delivery, with the dispatcher's and this program's
// CPU per delivery.
func (b *bench) singles(ctx context.Context, r *run, group, eventType, path string, n, publishers, perEvent int) *throughputResult {
	res := &throughputResult{Events: n, Endpoints: perEvent}
	var (
		next, published atomic.Int64
		errOnce         sync.Once
		wg              sync.WaitGroup
	)
	pid := r.d.cmd.Process.Pid
	sent := sendWatch(ctx, r.d, res)
	start, dcpu, bcpu := time.Now(), procCPU(pid), selfCPU()
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, b.cfg.payloadBytes+128)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				buf = b.payload.event(buf[:0], eventType, eventID(group, i), i, time.Now())
				if err := r.pub.one(ctx, r.ns, buf); err != nil {
					errOnce.Do(func() { res.PublishErr = err.Error() })
					continue
				}
				published.Add(1)
			}
		}()
	}
	wg.Wait()
	res.PublishDur = time.Since(start)
	res.Published = int(published.Load())

	want := res.Published * perEvent
	g := b.sink.await(ctx, path, group, want, b.cfg.drainTimeout, b.cfg.stallTimeout)
	if g.Count > 0 {
		res.DispatcherCPU = (procCPU(pid) - dcpu) / time.Duration(g.Count)
		res.BenchCPU = (selfCPU() - bcpu) / time.Duration(g.Count)
	}
	sent()
	res.Delivered, res.Dups = g.Count, g.Dups
	res.Lost = want - g.Count
	if !g.Last.IsZero() {
		res.Elapsed = g.Last.Sub(start)
		res.Rate = float64(g.Count) / res.Elapsed.Seconds()
	}
	return res
}

// fan10Path is where the fan-out-10 phase's endpoints deliver: one route of the sink
// (so its arrivals are counted together), ten endpoints told apart by their query.
func fan10Path(ns string) string { return "/" + ns + "/fan10" }

// setupFan10 creates fan10Endpoints endpoints, each with its own signing secret and
// one Standard Webhooks subscription to eventType, and waits until a probe event
// reaches all of them.
func (b *bench) setupFan10(ctx context.Context, r *run, eventType string) error {
	path := fan10Path(r.ns)
	secrets := make([]string, fan10Endpoints)
	for i := range secrets {
		name := "fan10-" + strconv.Itoa(i)
		secret, err := b.k.createEndpoint(ctx, r.ns, endpointSpec{name: name, url: b.sinkSrv.url(path) + "?endpoint=" + strconv.Itoa(i), maxInFlight: int32(b.cfg.maxInFlight)})
		if err != nil {
			return err
		}
		secrets[i] = secret
	}
	b.sink.addRoute(path, secrets...)
	for i := range fan10Endpoints {
		name := "fan10-" + strconv.Itoa(i)
		if err := b.k.createSubscription(ctx, subscription(r.ns, name, name, []string{eventType}, "")); err != nil {
			return err
		}
	}
	created := time.Now()
	var buf []byte
	for k := 0; ; k++ {
		if time.Since(created) > b.cfg.setupTimeout || ctx.Err() != nil {
			return fmt.Errorf("the dispatcher did not deliver a probe to all %d fan-out endpoints within %s", fan10Endpoints, b.cfg.setupTimeout)
		}
		if err := r.d.crashed(); err != nil {
			return err
		}
		group := "tprobe" + strconv.Itoa(k)
		buf = b.payload.event(buf[:0], eventType, eventID(group, 0), k, time.Now())
		if err := r.pub.one(ctx, r.ns, buf); err != nil {
			return err
		}
		if g := b.sink.await(ctx, path, group, fan10Endpoints, time.Second, time.Second); g.Count >= fan10Endpoints {
			b.sink.quiet(ctx, path, 500*time.Millisecond, 30*time.Second)
			return nil
		}
	}
}

const fan10Endpoints = 10
