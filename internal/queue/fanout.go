package queue

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

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

// Fanout hands out stored events, in batches, for the caller to match to
// subscriptions; OpenFanout starts it. Store acknowledges each event only
// once all of its deliveries are stored, so a crash repeats a fan-out (the
// deliveries' ids make the repeat a no-op, but for a second copy of a
// delivery its first fan-out parked: publishDeliveries) and never loses one. An error
// from matching NAKs the event, which comes back after a short, growing
// delay.
//
// Deliveries are stored in the order of their events, which is what ordered
// lanes deliver in. Four things keep that order: batches publish one after
// another even though they are matched in parallel; a delivery to an ordered
// lane is published only once the lane's previous one is stored, and one
// that fails is retried in place, holding the lane, rather than with its
// event (fanorder.go); the consumer is pinned to one replica at a time (a
// JetStream priority group), so replicas do not fan out concurrently; and a
// replica that takes the fan-out over first fans out the events the previous
// holder left unresolved, before the later ones the server hands it
// (fantakeover.go). An event whose unordered deliveries fail is retried
// later, behind events that came after it, which unordered deliveries do not
// mind (its ordered ones were stored first).
type Fanout struct {
	q       *Queue
	ctx     context.Context
	batches chan *EventBatch
	pinned  atomic.Bool
	lanes   *laneChains
}

// EventBatch is a run of events to match. Whoever takes it from
// Fanout.Batches must Store it: the next batch publishes only after this one
// has.
type EventBatch struct {
	f      *Fanout
	msgs   []jetstream.Msg
	events []Event
	// prev is closed once the batch before has sent its publishes; sent
	// once this one has.
	prev <-chan struct{}
	sent chan struct{}
}

// Matched is what matching one event gave: its deliveries (one per matching
// subscription; the queue fills in Event and, when zero, Attempt, the caller
// sets Subscription, SubscriptionUID, Endpoint and Ordered), or the error
// that keeps it from being fanned out now.
type Matched struct {
	Deliveries []Delivery
	// Rejected are deliveries that go straight to the dead letters: their
	// subscription cannot decide whether it wants the event (its filter
	// failed on it). They are stored with the deliveries, before the event
	// is acknowledged.
	Rejected []Rejected
	Err      error
}

// Rejected is a delivery that is dead from the start, and why.
type Rejected struct {
	Delivery Delivery
	Info     DeadInfo
}

// OpenFanout starts reading events until ctx ends.
func (q *Queue) OpenFanout(ctx context.Context) (*Fanout, error) {
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
		return nil, err
	}
	msgs := make(chan jetstream.Msg, fanoutBatch)
	go q.pump(ctx, consumer, fanoutBatch*2, true, msgs, jetstream.PullPriorityGroup(fanoutGroup))

	f := &Fanout{q: q, ctx: ctx, batches: make(chan *EventBatch, fanoutWorkers), lanes: newLaneChains(ctx, q)}
	go f.batch(ctx, msgs)
	return f, nil
}

// batch cuts the messages into batches, each whatever is already buffered
// up to fanoutBatch, with the events a previous holder left unresolved
// ahead of the first event after them (fantakeover.go).
func (f *Fanout) batch(ctx context.Context, msgs <-chan jetstream.Msg) {
	defer close(f.batches)
	prev := make(chan struct{})
	close(prev)
	send := func(ms []jetstream.Msg) {
		b := &EventBatch{f: f, msgs: ms, prev: prev, sent: make(chan struct{})}
		prev = b.sent
		f.batches <- b
	}
	t := &takeover{f: f}
	for m := range msgs {
		f.pinned.Store(true)
		var ms []jetstream.Msg
	fill:
		for {
			if ahead, ok := t.admit(ctx, m); ok {
				if len(ahead) > 0 && len(ms) > 0 {
					send(ms)
					ms = nil
				}
				for len(ahead) > 0 {
					n := min(len(ahead), fanoutBatch)
					send(ahead[:n:n])
					ahead = ahead[n:]
				}
				ms = append(ms, m)
			}
			if len(ms) >= fanoutBatch {
				break
			}
			select {
			case next, ok := <-msgs:
				if !ok {
					break fill
				}
				m = next
			default:
				break fill
			}
		}
		if len(ms) > 0 {
			send(ms)
		}
	}
}

// Workers is how many goroutines should range over Batches: enough to
// overlap one batch's matching and wait for acknowledgements with another's
// (measured with BenchmarkFanoutDeliver).
func (f *Fanout) Workers() int { return fanoutWorkers }

// Batches yields batches of events until the Fanout's context ends. Any
// number of goroutines may range over it; each must Store every batch it
// gets and range to the end.
func (f *Fanout) Batches() iter.Seq[*EventBatch] {
	return func(yield func(*EventBatch) bool) {
		for b := range f.batches {
			if f.ctx.Err() != nil {
				close(b.sent)
				for _, m := range b.msgs {
					_ = m.Nak()
				}
				continue
			}
			b.decode()
			if !yield(b) {
				return
			}
		}
	}
}

// Close hands the fan-out over to another replica; call it once every range
// over Batches has ended.
//
//nolint:contextcheck // the hand-over runs after the reader's context ended, on resolveContext's own deadline.
func (f *Fanout) Close() {
	if !f.pinned.Load() {
		return
	}
	// Everything this replica took is resolved: hand the fan-out over now
	// instead of after the pin expires, so a rolling update does not pause
	// it.
	uctx, cancel := resolveContext(f.ctx)
	defer cancel()
	if err := f.q.events.UnpinConsumer(uctx, consumerFanout, fanoutGroup); err != nil {
		f.q.log.V(1).Info("Could not hand the fan-out over", "error", err.Error())
	}
}

func (b *EventBatch) decode() {
	msgs := b.msgs[:0]
	b.events = make([]Event, 0, len(b.msgs))
	for _, m := range b.msgs {
		ev, err := decodeEvent(m.Data())
		if err != nil {
			// Nothing will ever decode it; kept, it would sit in the stream
			// forever.
			b.f.q.log.Error(err, "Dropping an undecodable event", "subject", m.Subject())
			_ = m.Term()
			continue
		}
		b.events = append(b.events, ev)
		msgs = append(msgs, m)
	}
	b.msgs = msgs
}

// Events are the batch's events, in the order they were stored.
func (b *EventBatch) Events() []Event { return b.events }

// Store publishes the deliveries of each event, matched[i] being those of
// Events()[i], and acknowledges each event whose deliveries are all stored;
// the others come back later. It works on the Fanout's context: an event
// whose ordered deliveries wait behind their lane is settled after Store
// returns, for as long as the fan-out runs.
//
//nolint:contextcheck // the batch belongs to the fan-out, whose context ends it.
func (b *EventBatch) Store(matched []Matched) {
	q, ctx := b.f.q, b.f.ctx
	<-b.prev
	var futures []jetstream.PubAckFuture
	// Under SyncAlways the deliveries and retained copies of the batch are
	// staged and stored as one atomic batch per stream, one fsync each,
	// before the next batch publishes, when there are enough of them to
	// repay a batch (groupcommit.go); otherwise each is an async publish.
	pub, ordered := q.publishAsync, b.f.lanes.publish
	var st *stager
	if q.group != nil {
		st = newStager(ctx, q, b.f.lanes)
		pub, ordered = st.stage, st.stageOrdered
	}
	// The batch's deliveries to one subscription go together as a group
	// when every replica reads groups (group.go); an event's share of a
	// group is added once the rest of it is stored, so that an event that
	// comes back for another fan-out has no delivery stored already.
	var groups *grouper
	if q.groupsOn.Load() {
		groups = &grouper{}
	}
	items := make([]fanned, len(b.msgs))
	for i, m := range b.msgs {
		it := &items[i]
		it.msg, it.from, it.err = m, len(futures), errors.New("not matched")
		if i < len(matched) {
			var grouped []*Delivery
			it.err = matched[i].Err
			if it.err == nil {
				futures, grouped, it.err = q.publishDeliveries(pub, ordered, b.events[i], matched[i].Deliveries, firstFanout(m), groups != nil, futures)
			}
			if it.err == nil {
				futures, it.err = q.publishRejected(pub, b.events[i], matched[i].Rejected, futures)
			}
			if it.err == nil {
				futures, it.err = q.publishRetained(pub, &b.events[i], futures)
			}
			if it.err == nil {
				for _, d := range grouped {
					groups.add(i, d)
				}
			}
		}
		it.to = len(futures)
	}
	var gfutures []jetstream.PubAckFuture
	var gitems [][]int
	var gerrs []error
	if groups != nil {
		gfutures, gitems, gerrs = groups.publish(pub)
	}
	if st != nil {
		st.flush()
	}
	close(b.sent)
	// A group's future is awaited once, here (its channels answer one
	// receive), and its outcome given to each event with deliveries in it.
	for k, f := range gfutures {
		err := gerrs[k]
		if err == nil {
			err = await(ctx, []jetstream.PubAckFuture{f})
		}
		for _, i := range gitems[k] {
			if it := &items[i]; err != nil && it.err == nil {
				it.err = fmt.Errorf("storing a group of deliveries: %w", err)
			}
		}
	}

	// An event is acknowledged once all of its deliveries are stored. One
	// whose ordered deliveries still wait behind a lane's earlier delivery
	// (being retried) is settled in the background, so that the events
	// behind it that do not go to that lane are not held up; the server
	// hands out at most fanoutMaxAckPending events not yet settled.
	keep := b.keepLeased(items)
	var held []*fanned
	for i := range items {
		it := &items[i]
		err := it.err
		if err == nil {
			var others []jetstream.PubAckFuture
			for _, f := range futures[it.from:it.to] {
				if p, ok := f.(*lanePub); ok && !p.stored() {
					it.lanes = append(it.lanes, p)
					continue
				}
				others = append(others, f)
			}
			err = await(ctx, others)
			if err == nil && len(it.lanes) > 0 {
				held = append(held, it)
				continue
			}
		}
		b.settle(it, err)
	}
	if len(held) == 0 {
		keep()
		return
	}
	go func() {
		defer keep()
		for _, it := range held {
			b.settle(it, await(ctx, it.lanes))
		}
	}()
}

// settle acknowledges an event whose deliveries are stored (err nil), and
// NAKs one whose were not, which comes back later.
func (b *EventBatch) settle(it *fanned, err error) {
	q, ctx := b.f.q, b.f.ctx
	it.resolved.Store(true)
	if err != nil {
		if ctx.Err() == nil {
			q.log.Error(err, "Fanning out an event failed; it will be retried", "subject", it.msg.Subject())
		}
		_ = it.msg.NakWithDelay(nakBackoff(it.msg))
		return
	}
	_ = q.acks.ack(it.msg)
}

type fanned struct {
	msg      jetstream.Msg
	from, to int // its futures
	err      error
	// lanes are its ordered deliveries still waiting for their lane.
	lanes    []jetstream.PubAckFuture
	resolved atomic.Bool
}

// keepLeased extends the lease of the batch's events not yet resolved while
// their deliveries wait for an ordered lane's earlier delivery to be stored
// (a NATS node away can take longer than the lease), so they are not handed
// out again meanwhile. The returned func stops it.
func (b *EventBatch) keepLeased(items []fanned) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(fanoutAckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-b.f.ctx.Done():
				return
			case <-t.C:
				for i := range items {
					if !items[i].resolved.Load() {
						_ = items[i].msg.InProgress()
					}
				}
			}
		}
	}()
	return func() { close(done) }
}

// firstFanout tells whether m is its event's first fan-out: handed out
// once by the fan-out consumer, not read ahead of its turn by a replica
// taking the fan-out over (caughtUp), which the old holder may have fanned
// out already.
func firstFanout(m jetstream.Msg) bool {
	if _, ok := m.(*caughtUp); ok {
		return false
	}
	md, err := m.Metadata()
	return err == nil && md.NumDelivered == 1
}

// publishDeliveries publishes ev's deliveries, the ordered ones with
// ordered and the others with pub.
//
// Each delivery carries its message id, so that a repeated fan-out stores
// nothing twice, except a delivery parked on the event's first fan-out
// (first): the server keeps an id in memory for the deliveries stream's
// window, about 250 bytes each, and a burst to an endpoint that is down
// parks a delivery per event and subscription (1,000,000 held 245 MiB of
// ids for 4 minutes). Nothing was stored for the event before its first
// fan-out, so what that could repeat is only a later fan-out of the same
// event (after a crash, a takeover, or a lease that ran out), which then
// parks, or stores, a second copy of such a delivery: at least once, the
// same delivery id, as the engine's own parking has always been (parked.go).
// A later fan-out carries every id, so it is at most one more copy, however
// often the event comes back.
//
// With group, the deliveries that may go in a group (groupable) are not
// published but returned, for the caller to group.
func (q *Queue) publishDeliveries(pub, ordered publishFunc, ev Event, ds []Delivery, first, group bool, futures []jetstream.PubAckFuture) ([]jetstream.PubAckFuture, []*Delivery, error) {
	for i := range ds {
		d := &ds[i]
		d.Event = ev
		if d.Attempt == 0 {
			d.Attempt = 1
		}
		if err := d.validate(); err != nil {
			return futures, nil, fmt.Errorf("delivery %d of event %s/%s: %w", i, ev.Namespace, ev.ID, err)
		}
	}
	var grouped []*Delivery
	// The ordered ones first: a failed publish stops the event's others,
	// and an ordered delivery left out would be stored behind the next
	// event's.
	var failed error
	for _, want := range []bool{true, false} {
		for i := range ds {
			d := &ds[i]
			if d.Ordered != want {
				continue
			}
			if group && groupable(d) {
				grouped = append(grouped, d)
				continue
			}
			p := pub
			if d.Ordered {
				p = ordered
			}
			m := &nats.Msg{Subject: laneSubject(d), Data: encodeDelivery(d)}
			if d.Park && !d.Ordered {
				m.Subject = parkSubject(ev.Namespace, d.Endpoint, d.Subscription)
			}
			if !first || !d.Park || d.Ordered {
				m.Header = nats.Header{jetstream.MsgIDHeader: []string{deliveryMsgID(d)}}
			}
			f, err := p(m)
			if err != nil {
				failed = fmt.Errorf("publishing a delivery of event %s/%s: %w", ev.Namespace, ev.ID, err)
				if !d.Ordered {
					return futures, nil, failed
				}
				continue
			}
			futures = append(futures, f)
		}
	}
	return futures, grouped, failed
}

func (q *Queue) publishRejected(pub publishFunc, ev Event, rs []Rejected, futures []jetstream.PubAckFuture) ([]jetstream.PubAckFuture, error) {
	for i := range rs {
		d := &rs[i].Delivery
		d.Event = ev
		if d.Attempt == 0 {
			d.Attempt = 1
		}
		m := &nats.Msg{
			Subject: deadSubjectOf(d),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{deliveryMsgID(d) + "/dead"}},
			Data:    encodeDead(d, &rs[i].Info),
		}
		f, err := pub(m)
		if err != nil {
			return futures, fmt.Errorf("storing a rejected delivery of event %s/%s: %w", ev.Namespace, ev.ID, err)
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
