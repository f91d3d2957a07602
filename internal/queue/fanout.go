package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MatchFunc returns the deliveries of one event: one per matching
// subscription. The queue fills in Event and, when zero, Attempt; the caller
// sets Subscription, SubscriptionUID, Endpoint and Ordered.
type MatchFunc func(ctx context.Context, ev Event) ([]Delivery, error)

// Fan-out tuning, measured with BenchmarkFanoutDeliver. Workers overlap one
// batch's matching and wait for acknowledgements with another's; a batch is
// whatever is already buffered, so a quiet system does not wait to fill one.
var (
	fanoutWorkers       = max(4, 2*runtime.GOMAXPROCS(0))
	fanoutBatch         = 128
	fanoutAckWait       = 30 * time.Second
	fanoutMaxAckPending = 8192
	// fanoutPinnedTTL is how long the fan-out stays with a replica that
	// stopped pulling (crashed) before another takes over.
	fanoutPinnedTTL = 10 * time.Second
)

const fanoutGroup = "fanout"

// RunFanout consumes events until ctx ends. For each event it publishes the
// deliveries match returns and acknowledges the event only once all of them
// are stored, so a crash repeats a fan-out (the deliveries' ids make the
// repeat a no-op) and never loses one. An error from match NAKs the event,
// which comes back after a short, growing delay.
//
// Deliveries are stored in the order of their events, which is what ordered
// lanes deliver in. Two things keep that order: batches publish one after
// another even though they are matched in parallel, and the consumer is
// pinned to one replica at a time (a JetStream priority group), so replicas
// do not fan out concurrently; another replica takes over when the pinned one
// stops. An event whose fan-out fails is retried later and can land behind
// events that came after it.
func (q *Queue) RunFanout(ctx context.Context, match MatchFunc) error {
	consumer := func(ctx context.Context) (jetstream.Consumer, error) {
		c, err := q.events.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:        consumerFanout,
			Description:    "hookline: matches events to subscriptions",
			FilterSubject:  subjEvents + ".>",
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        fanoutAckWait,
			MaxAckPending:  fanoutMaxAckPending,
			MaxDeliver:     -1,
			PriorityPolicy: jetstream.PriorityPolicyPinned,
			PriorityGroups: []string{fanoutGroup},
			PinnedTTL:      fanoutPinnedTTL,
		})
		if err != nil {
			return nil, fmt.Errorf("creating the fan-out consumer: %w", err)
		}
		return c, nil
	}
	// Fail fast on a broken setup rather than logging retries forever.
	if _, err := consumer(ctx); err != nil {
		return err
	}
	msgs := make(chan jetstream.Msg, fanoutBatch)
	go q.pump(ctx, consumer, fanoutBatch*2, true, msgs, jetstream.PullPriorityGroup(fanoutGroup))

	batches := make(chan *eventBatch, fanoutWorkers)
	var pinned atomic.Bool
	go func() {
		defer close(batches)
		prev := make(chan struct{})
		close(prev)
		for m := range msgs {
			pinned.Store(true)
			b := &eventBatch{msgs: []jetstream.Msg{m}, prev: prev, sent: make(chan struct{})}
		fill:
			for len(b.msgs) < fanoutBatch {
				select {
				case m, ok := <-msgs:
					if !ok {
						break fill
					}
					b.msgs = append(b.msgs, m)
				default:
					break fill
				}
			}
			prev = b.sent
			batches <- b
		}
	}()

	var wg sync.WaitGroup
	for range fanoutWorkers {
		wg.Go(func() {
			for b := range batches {
				q.fanout(ctx, match, b)
			}
		})
	}
	wg.Wait()
	if pinned.Load() {
		// Everything this replica took is resolved: hand the fan-out over
		// now instead of after the pin expires, so a rolling update does not
		// pause it.
		uctx, cancel := resolveContext(ctx)
		defer cancel()
		if err := q.events.UnpinConsumer(uctx, consumerFanout, fanoutGroup); err != nil {
			q.log.V(1).Info("Could not hand the fan-out over", "error", err.Error())
		}
	}
	return nil
}

type eventBatch struct {
	msgs []jetstream.Msg
	// prev is closed once the batch before has sent its publishes; sent
	// once this one has.
	prev <-chan struct{}
	sent chan struct{}
}

type fanned struct {
	msg      jetstream.Msg
	from, to int // its futures
	err      error
}

func (q *Queue) fanout(ctx context.Context, match MatchFunc, b *eventBatch) {
	if ctx.Err() != nil {
		close(b.sent)
		for _, m := range b.msgs {
			_ = m.Nak()
		}
		return
	}
	type matched struct {
		ev  Event
		ds  []Delivery
		err error
	}
	ms := make([]matched, 0, len(b.msgs))
	msgs := b.msgs[:0:0]
	for _, m := range b.msgs {
		ev, err := decodeEvent(m.Data())
		if err != nil {
			// Nothing will ever decode it; kept, it would sit in the stream
			// forever.
			q.log.Error(err, "Dropping an undecodable event", "subject", m.Subject())
			_ = m.Term()
			continue
		}
		ds, err := match(ctx, ev)
		ms = append(ms, matched{ev, ds, err})
		msgs = append(msgs, m)
	}

	<-b.prev
	var futures []jetstream.PubAckFuture
	items := make([]fanned, len(ms))
	for i, mt := range ms {
		it := fanned{msg: msgs[i], from: len(futures), err: mt.err}
		if it.err == nil {
			futures, it.err = q.publishDeliveries(mt.ev, mt.ds, futures)
		}
		it.to = len(futures)
		items[i] = it
	}
	close(b.sent)

	for _, it := range items {
		err := it.err
		if err == nil {
			err = await(ctx, futures[it.from:it.to])
		}
		if err != nil {
			if ctx.Err() == nil {
				q.log.Error(err, "Fanning out an event failed; it will be retried", "subject", it.msg.Subject())
			}
			_ = it.msg.NakWithDelay(nakBackoff(it.msg))
			continue
		}
		_ = it.msg.Ack()
	}
}

func (q *Queue) publishDeliveries(ev Event, ds []Delivery, futures []jetstream.PubAckFuture) ([]jetstream.PubAckFuture, error) {
	for i := range ds {
		d := &ds[i]
		d.Event = ev
		if d.Attempt == 0 {
			d.Attempt = 1
		}
		if err := d.validate(); err != nil {
			return futures, fmt.Errorf("delivery %d of event %s/%s: %w", i, ev.Namespace, ev.ID, err)
		}
		m := &nats.Msg{
			Subject: laneSubject(d),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{deliveryMsgID(d)}},
			Data:    encodeDelivery(d),
		}
		f, err := q.js.PublishMsgAsync(m, jetstream.WithStallWait(publishStall))
		if err != nil {
			return futures, fmt.Errorf("publishing a delivery of event %s/%s: %w", ev.Namespace, ev.ID, err)
		}
		futures = append(futures, f)
	}
	return futures, nil
}

func (d *Delivery) validate() error {
	switch {
	case d.Subscription == "" || d.SubscriptionUID == "":
		return errors.New("a delivery needs a subscription name and uid")
	case !d.Ordered && d.Endpoint == "":
		return errors.New("a delivery needs an endpoint")
	case d.Attempt < 1:
		return fmt.Errorf("attempt %d is not positive", d.Attempt)
	}
	return nil
}
