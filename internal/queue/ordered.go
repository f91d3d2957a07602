package queue

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Ordered lanes. A subscription with ordered delivery gets its own subject
// and a consumer with MaxAckPending=1: the next delivery is not handed out
// until the current one is resolved, across all replicas. A retry is a
// delayed NAK of the same message, which is what keeps the ones behind it
// waiting. Only ordered subscriptions get a consumer, so their number stays
// small; the unordered majority shares one.
//
// Because a NAK cannot change the message, what a redelivery is (which
// attempt, after how many holds) is stored: one record per lane on
// holdSubject, written before each NAK of a hold or a retry. A restart, a
// SIGKILL or another replica taking the lane over therefore never counts a
// hold, or a delivery that was fetched and never sent, as an attempt.

// EnsureOrdered creates the ordered lane of a subscription whose endpoint
// is endpoint (or points an existing lane at endpoint), and starts consuming
// it if deliveries are open (OpenDeliveries) and this replica owns the
// endpoint (laneowner.go). Deliveries with Ordered set are stored whether or
// not their lane exists; they wait until it does.
func (q *Queue) EnsureOrdered(ctx context.Context, ns, sub, endpoint string) error {
	return q.ensureLane(ctx, ns, sub, endpoint, 0)
}

// RemoveOrdered deletes a subscription's ordered lanes (the single one and
// any keyed ones, keyed.go) and the deliveries still in them. Call it when
// the subscription is deleted, or after its lanes have drained (Backlog)
// when it stops being ordered.
func (q *Queue) RemoveOrdered(ctx context.Context, ns, sub string) error {
	names, err := q.laneConsumers(ctx, ns, sub)
	if err != nil {
		return err
	}
	for _, name := range names {
		q.lanes.remove(name)
		if err := q.deliveries.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("deleting ordered lane %s of %s/%s: %w", name, ns, sub, err)
		}
	}
	// ".>" covers the keyed lanes and their keys' parked deliveries
	// (keypark.go).
	for _, subj := range []string{orderedSubject(ns, sub), orderedSubject(ns, sub) + ".>"} {
		if err := q.deliveries.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return fmt.Errorf("purging ordered lane of %s/%s: %w", ns, sub, err)
		}
	}
	for _, name := range names {
		for _, subj := range []string{holdSubject(name), holdSubject(name) + ".*"} {
			if err := q.holds.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
				return fmt.Errorf("purging the holds of ordered lane %s of %s/%s: %w", name, ns, sub, err)
			}
		}
	}
	return nil
}

type lanes struct {
	mu sync.Mutex
	// known maps each lane to the delivery partition of its endpoint.
	known   map[string]int
	running map[string]*Lane
	// owned is the partitions whose lanes this replica runs (own).
	owned [Partitions]bool
	// Set while a Deliveries is open; held is its count of unresolved jobs
	// per partition, which a lane's jobs count in too, so a partition is
	// handed to another replica only once its lanes' deliveries in flight
	// here are done as well.
	ctx  context.Context
	q    *Queue
	out  chan<- *Lane
	held *[Partitions]atomic.Int64
}

func (ls *lanes) init() {
	ls.known = map[string]int{}
	ls.running = map[string]*Lane{}
}

// start hands out, once this replica owns their endpoint (own), every lane
// already on the server (so lanes resume after a restart before anyone
// calls EnsureOrdered) and any added later, until ctx ends.
func (ls *lanes) start(ctx context.Context, q *Queue, out chan<- *Lane, held *[Partitions]atomic.Int64) error {
	ls.mu.Lock()
	if ls.ctx != nil {
		ls.mu.Unlock()
		return errors.New("deliveries are already open on this queue")
	}
	ls.ctx, ls.q, ls.out, ls.held = ctx, q, out, held
	ls.owned = [Partitions]bool{} // until spread says otherwise
	ls.mu.Unlock()
	if err := ls.refresh(ctx, q); err != nil {
		// The consumers were just created, so the server is there: a
		// listing that fails now is a moment of trouble (TestCluster: a NATS
		// node killed while a replica started), not a broken setup, and
		// failing here stopped the dispatcher. The lanes are listed again
		// at the next beats (Deliveries.followLanes).
		q.log.Error(err, "Listing the ordered lanes failed; they are listed again at the next beats")
	}
	// Forget the reader once it stops, so deliveries may be opened again.
	go func() {
		<-ctx.Done()
		ls.mu.Lock()
		ls.ctx, ls.out = nil, nil
		ls.owned = [Partitions]bool{}
		clear(ls.running)
		ls.mu.Unlock()
	}()
	return nil
}

func (ls *lanes) add(name string, p int) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.setLocked(name, p)
}

// runLocked starts the named lane under the deliveries reader's context
// (ls.ctx), which the lane lives as long as, not under the context of whoever
// asked for the lane (CreateOrdered's caller).
//
//nolint:contextcheck // a lane's life is the reader's (ls.ctx), not the request's that created it.
func (ls *lanes) runLocked(name string) {
	if _, ok := ls.running[name]; ok {
		return
	}
	ctx, cancel := context.WithCancel(ls.ctx)
	l := &Lane{name: name, q: ls.q, ctx: ctx, cancel: cancel, done: make(chan struct{}), held: &ls.held[ls.known[name]],
		keys: &keys{q: ls.q, subject: holdSubject(name)}}
	ls.running[name] = l
	out := ls.out
	go func() {
		select {
		case out <- l:
		case <-ctx.Done():
			close(l.done)
		}
	}()
}

func (ls *lanes) remove(name string) {
	ls.mu.Lock()
	delete(ls.known, name)
	l := ls.running[name]
	delete(ls.running, name)
	ls.mu.Unlock()
	if l != nil {
		l.cancel()
		<-l.done
	}
}

// drop forgets a lane whose reader is ending by itself.
func (ls *lanes) drop(name string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	delete(ls.known, name)
	delete(ls.running, name)
}

func (ls *lanes) stopAll() {
	ls.mu.Lock()
	var running []*Lane
	for _, l := range ls.running {
		l.cancel()
		running = append(running, l)
	}
	clear(ls.running)
	ls.mu.Unlock()
	for _, l := range running {
		<-l.done
	}
}

// Lane is one ordered subscription's lane: one delivery at a time, across
// all replicas.
type Lane struct {
	name   string
	q      *Queue
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// cons is kept across restarts of the pump, so the pin id it learnt
	// goes with its next pulls.
	cons jetstream.Consumer
	// pin is the pin id the lane last received a delivery under; gone is
	// set once its consumer was found deleted.
	pin  string
	gone bool
	// held is the count of unresolved jobs of the lane's partition.
	held *atomic.Int64
	// keys is what the lane knows of its blocked keys (keypark.go); sub
	// names its subscription once countKeys read it, for a keyed lane only.
	keys *keys
	sub  atomic.Pointer[SubscriptionKey]
}

// Jobs yields the lane's deliveries one at a time until the lane is removed,
// handed to the replica that owns its endpoint now (laneowner.go), or the
// context of OpenDeliveries ends; the next comes only once the current one
// is resolved. Range over it exactly once, to the end.
func (l *Lane) Jobs() iter.Seq[*Job] {
	return func(yield func(*Job) bool) {
		var counting sync.WaitGroup
		defer close(l.done)
		defer counting.Wait()
		defer l.release()
		defer l.cancel()
		q, name, ctx := l.q, l.name, l.ctx
		counting.Go(l.countKeys)
		consumer := func(cctx context.Context) (jetstream.Consumer, error) {
			c, err := q.laneConsumer(cctx, name)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				// Removed by another replica: stop until EnsureOrdered says
				// otherwise, rather than retry forever.
				q.log.Info("Ordered lane was removed; no longer consuming it", "consumer", name)
				q.lanes.drop(name)
				l.gone = true
				l.cancel()
			}
			if err != nil {
				return nil, fmt.Errorf("opening ordered lane %s: %w", name, err)
			}
			if l.cons == nil {
				l.cons = c
			}
			return l.cons, nil
		}
		msgs := make(chan jetstream.Msg)
		go q.pump(ctx, consumer, 1, true, msgs, jetstream.PullPriorityGroup(laneGroup))
		st := &lane{q: q, subject: holdSubject(name)}
		keyed := l.keys
		stopped := false
		for m := range msgs {
			if stopped || ctx.Err() != nil {
				// Handed back untouched: no attempt was made, and the stored
				// record, not the delivery count, says which attempt comes
				// next, so whichever replica runs the lane next may take it
				// now rather than after its lease.
				_ = m.Nak()
				continue
			}
			if h := m.Headers(); h != nil && h.Get(pinHeader) != "" {
				l.pin = h.Get(pinHeader)
			}
			j := q.job(m, st)
			if j != nil && j.d.KeyHash != 0 && j.d.Lane > 0 && !keyed.admit(j) {
				// Parked behind its blocked key, or a leftover (keypark.go).
				continue
			}
			if j != nil {
				j.held = l.held
				j.held.Add(1)
			}
			if j != nil && !yield(j) {
				stopped = true
				l.cancel()
			}
		}
	}
}

// release unpins the lane if this replica still holds it, once nothing it
// took is in flight, so the replica that owns it next is pinned at its next
// pull instead of after PinnedTTL.
//
//nolint:contextcheck // runs as the lane ends, on its own deadline.
func (l *Lane) release() {
	if l.gone || l.pin == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shortWait)
	defer cancel()
	if err := l.q.unpinIf(ctx, l.name, laneGroup, l.pin); err != nil {
		l.q.log.Error(err, "Handing an ordered lane to another replica failed; it moves when the pin runs out", "consumer", l.name, "pinnedTTL", PinnedTTL)
	}
}

// lane tracks the one message in flight on an ordered lane.
type lane struct {
	q       *Queue
	subject string // holdSubject of the lane

	mu    sync.Mutex
	seq   uint64
	holds int
	// spent counts the attempts of the message that were made and failed
	// (RetryAt); the attempt being handed out is spent+1.
	spent int
	first time.Time
}

// observe fills in the attempt number and first-attempt time of a
// (re)delivered message, reading its stored record when it is new to this
// process.
//
// The attempt number comes from the stored count of failed attempts, not
// from the server's delivery count: a redelivery that was no attempt (a
// hold, or a process that fetched the message and died, or stopped, before
// sending it) is then never counted as one. An attempt whose process died
// mid-send is made again under the same number, as an unordered one is.
func (l *lane) observe(m jetstream.Msg, d *Delivery) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if md.Sequence.Stream != l.seq {
		l.seq, l.holds, l.spent, l.first = md.Sequence.Stream, 0, 0, time.Now()
		l.loadLocked(md.NumDelivered)
	}
	d.Attempt += l.spent
	d.Holds = l.holds
	if d.FirstAttempt.IsZero() {
		d.FirstAttempt = l.first
	}
}

// loadLocked reads the stored record of the message l.seq. Without a record
// for it (it was neither held nor retried, or the record is of an earlier
// message) it has no holds and no attempts spent. delivered is the server's
// delivery count, for a record written before attempts were stored.
//
//nolint:contextcheck // like a settlement (Job.resolve), reading a lane's record runs on its own deadline, whoever asks.
func (l *lane) loadLocked(delivered uint64) {
	ctx, cancel := resolveContext(context.Background())
	defer cancel()
	m, err := l.q.holds.GetLastMsgForSubject(ctx, l.subject)
	if err != nil {
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			l.q.log.Error(err, "Could not read the holds of an ordered delivery; counting none", "subject", l.subject)
		}
		return
	}
	r, err := decodeHolds(m.Data)
	if err != nil {
		l.q.log.Error(err, "Ignoring undecodable holds of an ordered delivery", "subject", l.subject)
		return
	}
	if r.seq != l.seq {
		return
	}
	if r.spent < 0 {
		// Written by a version that derived attempts from the delivery count.
		r.spent = max(int(delivered)-1-r.holds, 0) //nolint:gosec // G115: a count of one message's deliveries, far below MaxInt
	}
	l.holds, l.spent, l.first = r.holds, r.spent, r.first
}

// nakUntil puts the lane's message back until t, storing first what the
// redelivery will be: one more hold (hold), or the next attempt (!hold).
// A crash between the store and the NAK leaves the message to come back
// when its lease runs out, as what was stored.
//
//nolint:contextcheck // part of a settlement (Job.resolve): its own deadline, whoever asks.
func (l *lane) nakUntil(m jetstream.Msg, t time.Time, hold bool) error {
	l.mu.Lock()
	r := laneRecord{seq: l.seq, holds: l.holds, spent: l.spent, first: l.first}
	l.mu.Unlock()
	if hold {
		r.holds++
	} else {
		r.spent++
	}
	ctx, cancel := resolveContext(context.Background())
	defer cancel()
	if _, err := l.q.js.Publish(ctx, l.subject, encodeHolds(r)); err != nil {
		return fmt.Errorf("storing the holds and attempts of an ordered delivery: %w", err)
	}
	if err := m.NakWithDelay(max(time.Until(t), 0)); err != nil {
		return err
	}
	l.mu.Lock()
	l.holds, l.spent = r.holds, r.spent
	l.mu.Unlock()
	return nil
}

// forget drops the record of the message just resolved.
//
//nolint:contextcheck // part of a settlement (Job.resolve): its own deadline, whoever asks.
func (l *lane) forget() {
	l.mu.Lock()
	stored := l.holds > 0 || l.spent > 0
	l.seq, l.holds, l.spent = 0, 0, 0
	l.mu.Unlock()
	if !stored {
		return
	}
	ctx, cancel := resolveContext(context.Background())
	defer cancel()
	if err := l.q.holds.Purge(ctx, jetstream.WithPurgeSubject(l.subject)); err != nil {
		// Harmless: a record of an earlier message is ignored.
		l.q.log.V(1).Info("Could not remove the holds of a resolved ordered delivery", "subject", l.subject, "error", err.Error())
	}
}
