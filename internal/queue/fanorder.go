package queue

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Ordered lanes deliver in the order their deliveries were stored, so the
// fan-out must store an ordered subscription's deliveries in the order of
// their events, whatever fails. Async publishes in flight together do not
// guarantee that: when a NATS node goes away with one of them, or the stream
// refuses one for a moment (no leader yet, a limit), the ones sent after it
// can still be stored, and retrying the lost one later puts it behind them.
// So each ordered lane has a chain: a delivery to the lane is published only
// once the one before it is stored, and a publish that fails is retried in
// place, holding the lane's later deliveries, instead of being NAKed with
// its event. Unordered deliveries keep the pipelined async publish: their
// order does not matter. An ordered lane is read one delivery at a time, so
// one publish round trip per delivery keeps the fan-out ahead of the lane.
//
// Under SyncAlways (groupcommit.go) the fan-out stores a batch's deliveries
// as atomic batches, committed before the next batch publishes, when there
// are enough of them; an atomic batch first waits for the chains of its
// ordered lanes (wait), and fewer deliveries are published through the
// chains.

// laneRetry bounds the pause between two tries of an ordered delivery whose
// publish failed.
var laneRetry = [2]time.Duration{100 * time.Millisecond, 5 * time.Second}

// laneChains is the fan-out's chains, by lane subject.
type laneChains struct {
	q     *Queue
	ctx   context.Context
	mu    sync.Mutex
	tails map[string]*lanePub
}

func newLaneChains(ctx context.Context, q *Queue) *laneChains {
	return &laneChains{q: q, ctx: ctx, tails: map[string]*lanePub{}}
}

// publish stores m on its lane after the lane's previous delivery; Store
// calls it in the order of the events, one batch after another.
func (c *laneChains) publish(m *nats.Msg) (jetstream.PubAckFuture, error) {
	p := &lanePub{msg: m, done: make(chan struct{}), ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	c.mu.Lock()
	prev := c.tails[m.Subject]
	c.tails[m.Subject] = p
	c.mu.Unlock()
	go c.store(p, prev)
	return p, nil
}

// wait returns once the deliveries on the chains of the given lanes, published
// before the call, are resolved, or the fan-out stops.
func (c *laneChains) wait(lanes map[string]bool) {
	var tails []*lanePub
	c.mu.Lock()
	for subject := range lanes {
		if p := c.tails[subject]; p != nil {
			tails = append(tails, p)
		}
	}
	c.mu.Unlock()
	for _, p := range tails {
		select {
		case <-p.done:
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *laneChains) store(p, prev *lanePub) {
	defer func() {
		c.mu.Lock()
		if c.tails[p.msg.Subject] == p {
			delete(c.tails, p.msg.Subject)
		}
		c.mu.Unlock()
		close(p.done)
	}()
	if prev != nil {
		select {
		case <-prev.done:
		case <-c.ctx.Done():
		}
		if prev.failed || c.ctx.Err() != nil {
			// Only the fan-out stopping ends a chain: what is left comes
			// back to the next fan-out with its events, in order.
			p.fail(errors.Join(errLaneStopped, c.ctx.Err()))
			return
		}
	}
	pause := laneRetry[0]
	for try := 1; ; try++ {
		ack, err := c.try(p.msg)
		if err == nil {
			if try > 1 {
				c.q.log.Info("An ordered delivery is stored after failed tries; its lane goes on", "subject", p.msg.Subject, "tries", try)
			}
			p.ok <- ack
			return
		}
		if c.ctx.Err() != nil {
			p.fail(err)
			return
		}
		if try == 1 || try%20 == 0 {
			c.q.log.Error(err, "Storing an ordered delivery failed; retrying it before the lane's next", "subject", p.msg.Subject, "tries", try)
		}
		select {
		case <-time.After(pause):
		case <-c.ctx.Done():
			p.fail(c.ctx.Err())
			return
		}
		pause = min(2*pause, laneRetry[1])
	}
}

// try publishes m once and waits for its acknowledgement. Repeating a
// publish that was stored after all (its acknowledgement lost) is
// recognised by the delivery's id.
func (c *laneChains) try(m *nats.Msg) (*jetstream.PubAck, error) {
	f, err := c.q.publishAsync(m)
	if err != nil {
		return nil, err
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-c.ctx.Done():
		return nil, c.ctx.Err()
	}
}

var errLaneStopped = errors.New("the fan-out stopped before the lane's previous delivery was stored")

// lanePub is the acknowledgement of a delivery published through a chain.
type lanePub struct {
	msg    *nats.Msg
	ok     chan *jetstream.PubAck
	err    chan error
	done   chan struct{}
	failed bool // set before done closes
}

func (p *lanePub) fail(err error) {
	p.failed = true
	p.err <- err
}

// stored is whether p is already resolved.
func (p *lanePub) stored() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *lanePub) Ok() <-chan *jetstream.PubAck { return p.ok }
func (p *lanePub) Err() <-chan error            { return p.err }
func (p *lanePub) Msg() *nats.Msg               { return p.msg }
