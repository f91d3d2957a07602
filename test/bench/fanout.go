package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// fanoutLabel marks the fan-out phase's subscriptions, which it deletes at its
// end.
const fanoutLabel = "bench.hookline.dev/phase"

// fanoutResult is how long one event takes to reach many subscriptions.
type fanoutResult struct {
	Subs int
	// Create is how long creating the Subscriptions through the API took; Visible how
	// long after the last one the dispatcher delivered a probe to all of them.
	Create, Visible time.Duration
	// Rounds: for each event, from its POST to the last of its Subs deliveries.
	Rounds []time.Duration
	// Queued: for each event, from its POST to the last of its Subs deliveries
	// published to the queue by the fan-out (deliveryTap): the fan-out itself.
	Queued []time.Duration
	// QueuedCPU: the dispatcher's CPU time over each Queued.
	QueuedCPU  []time.Duration
	Lost, Dups int
}

// fanout subscribes one endpoint Subs times to one event type and times single
// events through all of them. The subscriptions use the CloudEvents binary format:
// its ce-source names the subscription, so the receiver can tell the deliveries of
// one event apart (Standard Webhooks sends them all with the same webhook-id).
func (b *bench) fanout(ctx context.Context, r *run) (*fanoutResult, error) {
	const (
		name      = "fanout"
		eventType = "fanout.event"
	)
	n := b.cfg.fanoutSubs
	res := &fanoutResult{Subs: n}
	path := "/" + r.ns + "/" + name
	secret, err := b.k.createEndpoint(ctx, r.ns, endpointSpec{name: name, url: b.sinkSrv.url(path), maxInFlight: int32(b.cfg.maxInFlight)})
	if err != nil {
		return nil, err
	}
	b.sink.addRoute(path, secret)

	subs := make([]*hooklinev1.Subscription, n)
	for i := range subs {
		subs[i] = subscription(r.ns, fmt.Sprintf("fan-%04d", i), name, []string{eventType}, hooklinev1.PayloadCloudEventsBinary)
		subs[i].Labels = map[string]string{fanoutLabel: name}
	}
	// The control plane outlives the phase: the parked pass's dispatcher,
	// started later, would otherwise cache these subscriptions (about 40 MiB
	// for 10,000) and count them in the parked backlog's memory.
	defer func() {
		if err := b.k.deleteSubscriptions(context.WithoutCancel(ctx), r.ns, fanoutLabel, name); err != nil {
			b.logf("fan-out: deleting its subscriptions: %v", err)
		}
	}()
	t := time.Now()
	if err := b.k.createSubscriptions(ctx, subs, 8); err != nil {
		return nil, err
	}
	res.Create = time.Since(t)

	// Probe until one event reaches every subscription: then the dispatcher's view
	// holds all of them. Each probe is followed to its end (no arrival for a few
	// seconds) before the next is sent: with thousands of subscriptions one probe
	// takes seconds to deliver, and probes sent on a short timer would pile up.
	created := time.Now()
	var buf []byte
	for k := 0; ; k++ {
		if time.Since(created) > b.cfg.setupTimeout || ctx.Err() != nil {
			return nil, fmt.Errorf("the dispatcher did not deliver a probe to all %d subscriptions within %s", n, b.cfg.setupTimeout)
		}
		if err := r.d.crashed(); err != nil {
			return nil, err
		}
		group := "fprobe" + strconv.Itoa(k)
		buf = b.payload.event(buf[:0], eventType, eventID(group, 0), k, time.Now())
		if err := r.pub.one(ctx, r.ns, buf); err != nil {
			return nil, err
		}
		if g := b.sink.await(ctx, path, group, n, b.cfg.setupTimeout, 5*time.Second); g.Count >= n {
			res.Visible = g.Last.Sub(created)
			break
		}
	}
	b.sink.quiet(ctx, path, time.Second, 30*time.Second)

	tap, err := openTap(r.d.nats)
	if err != nil {
		return res, err
	}
	defer tap.close()
	for round := range b.cfg.fanoutRounds {
		group := "fo" + strconv.Itoa(round)
		pid := r.d.cmd.Process.Pid
		queued := tap.expect(r.ns, eventID(group, 0), n, pid)
		cpu0, sent := procCPU(pid), time.Now()
		buf = b.payload.event(buf[:0], eventType, eventID(group, 0), round, sent)
		if err := r.pub.one(ctx, r.ns, buf); err != nil {
			return res, err
		}
		g := b.sink.await(ctx, path, group, n, b.cfg.drainTimeout, b.cfg.stallTimeout)
		select {
		case q := <-queued:
			res.Queued = append(res.Queued, q.at.Sub(sent))
			res.QueuedCPU = append(res.QueuedCPU, q.cpu-cpu0)
		default:
			// Fewer than n were seen: reported as lost below if they did not arrive.
		}
		res.Lost += n - g.Count
		res.Dups += g.Dups
		if g.Count > 0 {
			res.Rounds = append(res.Rounds, g.Last.Sub(sent))
		}
		b.sink.quiet(ctx, path, 500*time.Millisecond, 30*time.Second)
	}
	return res, nil
}
