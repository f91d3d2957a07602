package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// latencyResult is how long single events take from the producer to the receiver
// at a fixed rate.
type latencyResult struct {
	Events, Published, Delivered int
	// From the moment the producer sends the POST (the time the event's data carries)
	// to the receiver's arrival: ingest, queue, fan-out, send.
	P50, P90, P99, Max time.Duration
	// The publish round trip, POST to 202.
	AckP50, AckP99 time.Duration
	// From the producer reading its 202 to the arrival; negative when the delivery
	// arrived first.
	AfterAckP50, AfterAckP99 time.Duration
	// How far behind its schedule the generator sent an event; large values mean
	// the producer side, not the dispatcher, set the pace.
	MaxLag     time.Duration
	Lost, Dups int
	PublishErr string
	// Isolation only: requests the second endpoint received during the phase.
	HangRequests int64
	// Timeline is the worst latency of the events sent in each -timeline interval.
	Timeline []time.Duration
}

// latency publishes single events at a fixed rate (open loop: the schedule does not
// wait for answers) for the configured duration, from a pool of producers.
func (b *bench) latency(ctx context.Context, r *run, group string) *latencyResult {
	rate, dur := b.cfg.rate, b.cfg.latencyDuration
	n := int(float64(rate) * dur.Seconds())
	interval := time.Second / time.Duration(rate)
	res := &latencyResult{Events: n}
	acks := make([]time.Duration, n)
	lags := make([]time.Duration, n)
	ok := make([]bool, n)
	jobs := make(chan int, n)
	start := time.Now().Add(10 * time.Millisecond)
	due := func(i int) time.Time { return start.Add(time.Duration(i) * interval) }

	go func() {
		defer close(jobs)
		for i := 0; i < n && ctx.Err() == nil; i++ {
			if d := time.Until(due(i)); d > 0 {
				time.Sleep(d)
			}
			jobs <- i
		}
	}()
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
	)
	for range b.cfg.latencyPublishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, b.cfg.payloadBytes+128)
			for i := range jobs {
				sent := time.Now()
				lags[i] = sent.Sub(due(i))
				buf = b.payload.event(buf[:0], "bench.latency", eventID(group, i), i, sent)
				err := r.pub.one(ctx, r.ns, buf)
				acks[i] = time.Since(sent)
				if err != nil {
					errOnce.Do(func() { res.PublishErr = err.Error() })
					continue
				}
				ok[i] = true
			}
		}()
	}
	wg.Wait()
	var okAcks []time.Duration
	for i := range n {
		if ok[i] {
			res.Published++
			okAcks = append(okAcks, acks[i])
		}
		res.MaxLag = max(res.MaxLag, lags[i])
	}
	res.AckP50, res.AckP99 = percentile(okAcks, 50), percentile(okAcks, 99)

	g := b.sink.await(ctx, r.healthy, group, res.Published, b.cfg.drainTimeout, b.cfg.stallTimeout)
	res.Delivered, res.Dups = g.Count, g.Dups
	res.Lost = res.Published - g.Count
	lats := make([]time.Duration, len(g.Lat))
	var afterAck []time.Duration
	for i, s := range g.Lat {
		lats[i] = s.lat
		if s.seq >= 0 && s.seq < n && ok[s.seq] {
			afterAck = append(afterAck, s.lat-acks[s.seq])
		}
		sec := int(s.sent.Sub(start) / b.cfg.timeline)
		if sec < 0 {
			sec = 0
		}
		for len(res.Timeline) <= sec {
			res.Timeline = append(res.Timeline, 0)
		}
		res.Timeline[sec] = max(res.Timeline[sec], s.lat)
	}
	res.P50, res.P90, res.P99 = percentile(lats, 50), percentile(lats, 90), percentile(lats, 99)
	res.Max = percentile(lats, 100)
	res.AfterAckP50, res.AfterAckP99 = percentile(afterAck, 50), percentile(afterAck, 99)
	return res
}

// percentile is the nearest-rank p-th percentile of ds (sorted in place); 0 when empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(p/100*float64(len(ds))+0.999999) - 1
	return ds[min(max(rank, 0), len(ds)-1)]
}

// The isolation phase adds an endpoint whose receiver never answers, subscribed to
// the same event type as the healthy one, and runs the latency phase again: the
// healthy endpoint's latency should barely move while the dispatcher waits out the
// other's timeouts. Its control, run just before it, does the same with a second
// endpoint that answers at once. Each event then costs two deliveries, as in the
// isolation phase, but nothing hangs: the healthy p99 it measures is what a second
// delivery per event costs on these shared cores, so the isolation phase's p99
// against it is what the hang itself costs.
//
// Both second endpoints are served by the hanger: requests to the answering
// one's path are answered at once.
const (
	hangingEndpoint   = "hanging"
	answeringEndpoint = "answering"
)

// secondEndpoint subscribes endpoint name, on the hanger's server, to the
// latency phase's events, waits until it receives one, runs the latency phase
// (events in group) and deletes the subscription again.
func (b *bench) secondEndpoint(ctx context.Context, r *run, name, group string) (*latencyResult, error) {
	path := "/" + r.ns + "/" + name
	if _, err := b.k.createEndpoint(ctx, r.ns, endpointSpec{name: name, url: b.hangSrv.url(path), timeout: b.cfg.hangTimeout, maxInFlight: int32(b.cfg.hangMaxInFlight)}); err != nil {
		return nil, err
	}
	if err := b.k.createSubscription(ctx, subscription(r.ns, name, name, []string{"bench.latency"}, "")); err != nil {
		return nil, err
	}
	// Wait until the dispatcher sends to the second endpoint, so the whole phase
	// runs with it in place.
	probe := group + "probe"
	deadline := time.Now().Add(b.cfg.setupTimeout)
	var buf []byte
	for k := 0; b.hang.seen(probe) == 0; k++ {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("the dispatcher did not start sending to the %s endpoint within %s", name, b.cfg.setupTimeout)
		}
		if err := r.d.crashed(); err != nil {
			return nil, err
		}
		buf = b.payload.event(buf[:0], "bench.latency", eventID(probe, k), k, time.Now())
		if err := r.pub.one(ctx, r.ns, buf); err != nil {
			return nil, err
		}
		for range 20 {
			if b.hang.seen(probe) > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	before := b.hang.arrivals.Load()
	res := b.latency(ctx, r, group)
	res.HangRequests = b.hang.arrivals.Load() - before
	// The phases that follow should not share the machine with this endpoint's
	// deliveries or retries: deliveries of a deleted subscription are dropped.
	if err := b.k.deleteSubscription(ctx, r.ns, name); err != nil {
		return res, err
	}
	return res, nil
}
