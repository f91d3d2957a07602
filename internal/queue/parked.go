package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Parking. A delivery to an endpoint that cannot take it for a while (its
// circuit is open, it is disabled, suspended or missing) is parked: stored on
// a plain subject per endpoint and subscription, until Unpark moves the
// endpoint's backlog back, or Relocate a subscription's that points at
// another endpoint now. A hold would cost the server memory per delivery for
// as long as it waits (the de-duplication entry of its message id, the
// pending schedule, its unique subject) and would bring the whole backlog
// back at every cool-down; a parked delivery costs disk only and comes back
// once, when the endpoint can take it.
//
// The fan-out stores a delivery straight on its parking subject when the
// engine knows its endpoint cannot take it (Delivery.Park). A parked
// delivery is stored without a message id, so the server keeps no
// de-duplication entry for it; only a fan-out repeating an event sets the
// ids of its parks (publishDeliveries), so that repeats add at most one copy.
// The price is at-least-once parking: a process that dies after storing the
// parked copy and before acknowledging the source (the event, or the
// delivery the engine parks) gets the source again after its lease, and
// parks it a second time.
// The copies carry the same delivery id, so receivers de-duplicate them like
// any other redelivery. Moving back is at least once in the same way.

// ErrOrderedPark is returned by Park for an ordered delivery: moving it off
// its lane would let the deliveries behind it overtake it. Hold it instead.
var ErrOrderedPark = errors.New("an ordered delivery cannot be parked; hold it on its lane")

// Park moves the delivery to its endpoint's parking subject, where it waits
// without spending its attempt until Unpark moves it back. It acknowledges
// this message only once the parked copy is stored; a crash in between parks
// it twice (see above).
func (j *Job) Park() error {
	return j.resolve(func(ctx context.Context) error {
		if j.lane != nil || j.d.Ordered {
			return ErrOrderedPark
		}
		if err := j.q.park(ctx, &j.d); err != nil {
			return fmt.Errorf("parking attempt %d: %w", j.d.Attempt, err)
		}
		return j.msg.Ack()
	})
}

// park goes through the async publisher and waits for its own
// acknowledgement, so the parks of many handlers share one pipeline of
// publishes in flight instead of each paying a round trip.
func (q *Queue) park(ctx context.Context, d *Delivery) error {
	f, err := q.js.PublishMsgAsync(&nats.Msg{
		Subject: parkSubject(d.Event.Namespace, d.Endpoint, d.Subscription),
		Data:    encodeDelivery(d),
	}, stallWait)
	if err != nil {
		return err
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ParkedKey names the parked deliveries of one subscription at one endpoint.
type ParkedKey struct{ Namespace, Endpoint, Subscription string }

// Parked counts the parked deliveries of every endpoint that has any.
func (q *Queue) Parked(ctx context.Context) (map[EndpointKey]uint64, error) {
	bySub, err := q.ParkedSubscriptions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[EndpointKey]uint64, len(bySub))
	for k, n := range bySub {
		out[EndpointKey{k.Namespace, k.Endpoint}] += n
	}
	return out, nil
}

// ParkedSubscriptions counts the parked deliveries per endpoint and
// subscription.
func (q *Queue) ParkedSubscriptions(ctx context.Context) (map[ParkedKey]uint64, error) {
	counts, err := q.subjectCounts(ctx, subjParked+".>")
	if err != nil {
		return nil, err
	}
	out := make(map[ParkedKey]uint64, len(counts))
	for subj, n := range counts {
		t, err := splitTokens(subj, subjParked, 3)
		if err != nil {
			q.log.Error(err, "Ignoring an unexpected parking subject")
			continue
		}
		out[ParkedKey{Namespace: t[0], Endpoint: t[1], Subscription: t[2]}] = n
	}
	return out, nil
}

// Relocate moves the parked deliveries of a subscription that now points
// at another endpoint back to the delivery subject of the endpoint they were
// parked for, where the engine sends or parks them for the subscription's
// current endpoint. It moves at most max (all if max <= 0) and returns how
// many it moved. It reads by subject, not through a consumer, because the
// endpoint's parking consumer (Unpark) already covers the subject; a
// delivery both move comes back twice, which at-least-once allows.
func (q *Queue) Relocate(ctx context.Context, k ParkedKey, max int) (int, error) {
	from := parkSubject(k.Namespace, k.Endpoint, k.Subscription)
	to := deliverySubject(k.Namespace, k.Endpoint)
	moved := 0
	for max <= 0 || moved < max {
		m, err := q.deliveries.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(from))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return moved, nil
		}
		if err != nil {
			return moved, fmt.Errorf("reading parked deliveries of %s/%s: %w", k.Namespace, k.Subscription, err)
		}
		if _, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: to, Data: m.Data}); err != nil {
			return moved, fmt.Errorf("moving a parked delivery of %s/%s: %w", k.Namespace, k.Subscription, err)
		}
		if err := q.deliveries.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return moved, fmt.Errorf("removing a moved parked delivery of %s/%s: %w", k.Namespace, k.Subscription, err)
		}
		moved++
	}
	return moved, nil
}

// PurgeParked removes the parked deliveries of a deleted subscription.
func (q *Queue) PurgeParked(ctx context.Context, k ParkedKey) error {
	if err := q.deliveries.Purge(ctx, jetstream.WithPurgeSubject(parkSubject(k.Namespace, k.Endpoint, k.Subscription))); err != nil {
		return fmt.Errorf("purging parked deliveries of %s/%s at %s: %w", k.Namespace, k.Subscription, k.Endpoint, err)
	}
	return nil
}

// DefaultUnparkRate is how many deliveries a second Unpark moves unless
// UnparkRate says otherwise.
const DefaultUnparkRate = 500

// Unpark tuning. A batch is what one pull request fetches; the pace spreads
// batches over time. The consumer's lease covers moving one batch, and the
// server removes a consumer that a crashed process left behind once it has
// been idle for unparkIdle, which hands its unacknowledged deliveries to the
// next Unpark.
var (
	unparkBatch   = 256
	unparkTick    = 200 * time.Millisecond
	unparkAckWait = 30 * time.Second
	unparkIdle    = time.Minute
)

// UnparkOption tunes Unpark.
type UnparkOption func(*unparkOptions)

type unparkOptions struct {
	rate func() float64
	max  int
}

// UnparkRate paces Unpark. rate is asked before each batch how many
// deliveries a second may be moved now: a negative answer stops Unpark, zero
// pauses it for a moment before asking again.
func UnparkRate(rate func() float64) UnparkOption {
	return func(o *unparkOptions) { o.rate = rate }
}

// UnparkMax stops Unpark once it has moved n deliveries.
func UnparkMax(n int) UnparkOption {
	return func(o *unparkOptions) { o.max = n }
}

// Unpark moves the parked deliveries of an endpoint back to its delivery
// subject, as they were (same attempt), at the pace UnparkRate sets
// (DefaultUnparkRate without it), until none is left, the pace says stop or
// ctx ends. It returns how many it moved.
//
// It is safe to call repeatedly and from several replicas at once: it reads
// through one consumer per endpoint shared by all callers, so each parked
// delivery is handed to one of them, and a parked delivery is removed only
// once its moved copy is stored. A process that dies while moving leaves its
// fetched deliveries to the next Unpark, which may move some of them a
// second time (at least once, like parking). The consumer exists only while
// deliveries are being moved: the last caller to finish deletes it, and the
// server removes one a crashed process left behind.
func (q *Queue) Unpark(ctx context.Context, ns, endpoint string, opts ...UnparkOption) (int, error) {
	o := unparkOptions{rate: func() float64 { return DefaultUnparkRate }}
	for _, opt := range opts {
		opt(&o)
	}
	u := &unparker{
		q:    q,
		name: parkConsumerName(ns, endpoint),
		from: endpointParkSubjects(ns, endpoint),
		to:   deliverySubject(ns, endpoint),
		opts: o,
		key:  ns + "/" + endpoint,
	}
	n, err := u.run(ctx)
	if err != nil {
		return n, fmt.Errorf("unparking deliveries of %s: %w", u.key, err)
	}
	return n, nil
}

type unparker struct {
	q        *Queue
	name     string
	from, to string
	opts     unparkOptions
	key      string // ns/endpoint, for messages

	cons jetstream.Consumer
}

func (u *unparker) run(ctx context.Context) (int, error) {
	// Most calls find nothing parked: answer them without creating a
	// consumer.
	counts, err := u.q.subjectCounts(ctx, u.from)
	if err != nil || len(counts) == 0 {
		return 0, err
	}
	defer u.release(ctx)
	moved, failures := 0, 0
	for u.opts.max <= 0 || moved < u.opts.max {
		rate := u.opts.rate()
		if rate < 0 {
			return moved, nil
		}
		if rate == 0 {
			if err := sleep(ctx, unparkTick); err != nil {
				return moved, err
			}
			continue
		}
		n := int(min(max(rate*unparkTick.Seconds(), 1), float64(unparkBatch)))
		if u.opts.max > 0 {
			n = min(n, u.opts.max-moved)
		}
		start := time.Now()
		msgs, err := u.fetch(ctx, n)
		if err != nil {
			// The consumer may have been deleted by a caller that finished
			// just before: make it again, a few times.
			u.cons = nil
			if failures++; failures > 3 {
				return moved, err
			}
			if err := sleep(ctx, unparkTick); err != nil {
				return moved, err
			}
			continue
		}
		failures = 0
		if len(msgs) == 0 {
			done, err := u.drained(ctx)
			if err != nil || done {
				return moved, err
			}
			// What is left is in another caller's hands, which moves it or
			// lets its lease run out.
			if err := sleep(ctx, unparkTick); err != nil {
				return moved, err
			}
			continue
		}
		n, err = u.move(ctx, msgs)
		moved += n
		if err != nil {
			return moved, err
		}
		if err := sleep(ctx, time.Duration(float64(len(msgs))/rate*float64(time.Second))-time.Since(start)); err != nil {
			return moved, err
		}
	}
	return moved, nil
}

func (u *unparker) consumer(ctx context.Context) (jetstream.Consumer, error) {
	if u.cons != nil {
		return u.cons, nil
	}
	c, err := u.q.deliveries.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:           u.name,
		Description:       "hookline: moves the parked deliveries of " + u.key + " back",
		FilterSubject:     u.from,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           unparkAckWait,
		MaxAckPending:     4 * unparkBatch,
		MaxDeliver:        -1,
		InactiveThreshold: unparkIdle,
		// Its state is worth nothing after a restart: whatever it had not
		// seen acknowledged is still in the stream.
		MemoryStorage: true,
		// Replicas unset: the stream's. A work-queue stream refuses a
		// consumer with fewer replicas than itself, so 1 here left every
		// parked delivery of a cluster with --nats-replicas=3 parked for
		// good (TestCluster).
	})
	if err != nil {
		return nil, fmt.Errorf("creating the parking consumer: %w", err)
	}
	u.cons = c
	return c, nil
}

// fetch takes up to n parked deliveries that are there now.
func (u *unparker) fetch(ctx context.Context, n int) ([]jetstream.Msg, error) {
	c, err := u.consumer(ctx)
	if err != nil {
		return nil, err
	}
	batch, err := c.FetchNoWait(n)
	if err != nil {
		return nil, fmt.Errorf("reading parked deliveries: %w", err)
	}
	msgs := make([]jetstream.Msg, 0, n)
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		// Keep what came: it is acknowledged or left to its lease below.
		if len(msgs) == 0 {
			return nil, fmt.Errorf("reading parked deliveries: %w", err)
		}
	}
	return msgs, nil
}

// drained reports whether nothing parked is left for anyone to fetch.
func (u *unparker) drained(ctx context.Context) (bool, error) {
	info, err := u.cons.Info(ctx)
	if err != nil {
		u.cons = nil
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			// Deleted by a caller that found nothing left; anything parked
			// since is found by a new consumer.
			return false, nil
		}
		return false, fmt.Errorf("reading the parking consumer: %w", err)
	}
	return info.NumPending == 0, nil
}

// move republishes msgs to the delivery subject and acknowledges (removes)
// each parked one whose copy was stored. The batch is finished even if ctx
// ends meanwhile, so a stop never leaves a stored copy unacknowledged for
// longer than the wait for its acknowledgement. Copies carry no message id;
// see Park.
func (u *unparker) move(ctx context.Context, msgs []jetstream.Msg) (int, error) {
	stored := make([]bool, len(msgs))
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	var first error
	for _, m := range msgs {
		f, err := u.q.js.PublishMsgAsync(&nats.Msg{Subject: u.to, Data: m.Data()}, stallWait)
		if err != nil {
			first = err
			break
		}
		futures = append(futures, f)
	}
	wctx, cancel := resolveContext(ctx)
	defer cancel()
	for i, f := range futures {
		select {
		case <-f.Ok():
			stored[i] = true
		case err := <-f.Err():
			first = firstErr(first, err)
		case <-wctx.Done():
			// Stored or not, unknown: the parked one comes back after its
			// lease and is moved again if need be.
			first = firstErr(first, wctx.Err())
		}
	}
	if testHookUnparkStored != nil {
		testHookUnparkStored()
	}
	moved := 0
	for i, m := range msgs {
		if stored[i] {
			_ = m.Ack()
			moved++
		} else {
			_ = m.Nak()
		}
	}
	if first != nil {
		return moved, fmt.Errorf("moving parked deliveries back: %w", first)
	}
	return moved, nil
}

// testHookUnparkStored runs between storing a batch's copies and
// acknowledging the parked ones, for tests of a crash at that point.
var testHookUnparkStored func()

func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// release deletes the consumer once nothing is left to move and no caller
// holds parked deliveries from it. Otherwise it stays for the callers still
// moving, or for the next Unpark, and the server removes it once it has been
// idle for unparkIdle. Acknowledgements reach the consumer asynchronously,
// so a batch just acknowledged may still count as held for a moment.
func (u *unparker) release(ctx context.Context) {
	ctx, cancel := resolveContext(ctx)
	defer cancel()
	for range 5 {
		c, err := u.q.deliveries.Consumer(ctx, u.name)
		if err != nil {
			return
		}
		info := c.CachedInfo()
		if info.NumPending > 0 {
			return
		}
		if info.NumAckPending == 0 {
			if err := u.q.deliveries.DeleteConsumer(ctx, u.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				u.q.log.V(1).Info("Could not delete a parking consumer; the server removes it when idle",
					"consumer", u.name, "error", err.Error())
			}
			return
		}
		if sleep(ctx, 20*time.Millisecond) != nil {
			return
		}
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
