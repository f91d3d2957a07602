package queue

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Ordered lanes deliver in the order their deliveries were stored, and the
// fan-out stores them in the order of the events, as long as one replica
// fans out every event in stream order. When the fan-out moves to another
// replica — the one holding it died, was cut off behind a paused NATS node,
// or restarted — the events the old holder had taken and not acknowledged
// stay with it until their lease runs out (fanoutAckWait), while the server
// hands the new holder the events after them. Fanned out as they come, those
// events' deliveries would be stored first, and the old holder's would come
// back behind them.
//
// So a holder starts each turn (a new pin id on the messages it gets) by
// reading the consumer's ack floor: every event at or below it is resolved.
// Before it fans out an event, it makes sure every event between what it has
// covered and that event was fanned out first: it reads those still in the
// stream (a work queue keeps only unresolved events) by sequence and fans
// them out ahead, in stream order, as a catch-up. The delivery ids make a
// second fan-out of the same event a no-op, so it does not matter whether
// the old holder stored some of them already, or stores them late (a
// replica cut off by a paused node): the new holder's copies went first, and
// the old holder's repeats of the same ids are dropped by the deliveries
// stream's de-duplication. When the caught-up event itself comes back to
// this holder after its lease, it is acknowledged without being matched
// again, so its side effects (filter failures counted as dead letters) are
// not counted twice.
//
// Within a turn events come in stream order (a redelivery is of an event
// already covered), so the check costs one comparison per event; a catch-up
// costs one read per unresolved event, once per turn.

// pinIDHeader is the header the server puts on each message of a pinned
// priority group, naming the pin the message was handed out under.
const pinIDHeader = "Nats-Pin-Id"

// takeover is the fan-out's record of its turn as holder. Only the batching
// goroutine calls admit; settled is also written by the workers, through the
// caught-up messages' Ack.
type takeover struct {
	f       *Fanout
	started bool
	pin     string
	// covered is the highest event sequence such that every event up to it
	// is resolved or was fanned out by this holder in this turn.
	covered uint64

	mu sync.Mutex
	// settled are the caught-up events whose deliveries are all stored,
	// waiting for their own message to come back to be acknowledged.
	settled map[uint64]struct{}
}

// takeoverMaxSettled bounds settled: past it, the set is cleared, and an
// event forgotten that way that comes back is fanned out again (its
// deliveries' ids make that a no-op).
var takeoverMaxSettled = 4 * fanoutMaxAckPending

// admit is called for each message in the order the server handed them out.
// It returns the caught-up events to fan out before m, and whether m itself
// is to be fanned out (false when it was caught up already and is now
// acknowledged).
func (t *takeover) admit(ctx context.Context, m jetstream.Msg) ([]jetstream.Msg, bool) {
	md, err := m.Metadata()
	if err != nil {
		return nil, true
	}
	seq := md.Sequence.Stream
	if pin := m.Headers().Get(pinIDHeader); !t.started || pin != t.pin {
		t.started, t.pin = true, pin
		t.begin(ctx, seq)
	}
	if t.takeSettled(seq) {
		_ = m.Ack()
		return nil, false
	}
	var ahead []jetstream.Msg
	if seq > t.covered+1 {
		ahead = t.catchUp(ctx, t.covered+1, seq)
	}
	t.covered = max(t.covered, seq)
	return ahead, true
}

// begin starts a turn at the consumer's ack floor. Without it (NATS away
// for longer than half a lease) the turn starts at first, and an event the
// old holder left unresolved can come back behind later ones: logged.
func (t *takeover) begin(ctx context.Context, first uint64) {
	var floor uint64
	err := t.retryRead(ctx, func(ctx context.Context) error {
		c, err := t.f.q.events.Consumer(ctx, consumerFanout)
		if err == nil {
			floor = c.CachedInfo().AckFloor.Stream
		}
		return err
	})
	if err != nil {
		t.f.q.log.Error(err, "Could not read where the previous holder of the fan-out left off; events it left unresolved may be fanned out after later ones", "from", first)
		t.covered = first - 1
		return
	}
	t.covered = floor
	t.forgetBelow(floor)
}

// retryRead calls read, each call on its own request deadline, until it
// succeeds, ctx ends, or half a fan-out lease has passed, pausing as a lane's
// store does between tries (laneRetry); it returns read's last error.
func (t *takeover) retryRead(ctx context.Context, read func(context.Context) error) error {
	pause := laneRetry[0]
	deadline := time.Now().Add(fanoutAckWait / 2)
	for {
		rctx, cancel := context.WithTimeout(ctx, t.f.q.cfg.MaxRequestTimeout)
		err := read(rctx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
		pause = min(2*pause, laneRetry[1])
	}
}

// catchUp reads the events still in the stream from from up to, not
// including, to.
func (t *takeover) catchUp(ctx context.Context, from, to uint64) []jetstream.Msg {
	q := t.f.q
	var out []jetstream.Msg
	began := time.Now()
	for seq := from; seq < to; {
		var raw *jetstream.RawStreamMsg
		err := t.retryRead(ctx, func(ctx context.Context) error {
			var err error
			raw, err = q.events.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subjEvents+".>"))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				raw = nil
				return nil // nothing left from seq on
			}
			return err
		})
		if err != nil {
			q.log.Error(err, "Could not read the events the previous holder of the fan-out left unresolved; they may be fanned out after later ones", "from", seq, "to", to)
			break
		}
		if raw == nil || raw.Sequence >= to {
			break
		}
		out = append(out, &caughtUp{t: t, raw: raw})
		seq = raw.Sequence + 1
	}
	if len(out) > 0 {
		q.log.Info("Fanning out the events the previous holder of the fan-out left unresolved, before later ones", "events", len(out), "from", from, "to", to, "read", time.Since(began).Round(time.Millisecond).String())
	}
	return out
}

func (t *takeover) settle(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.settled == nil {
		t.settled = map[uint64]struct{}{}
	}
	if len(t.settled) >= takeoverMaxSettled {
		clear(t.settled)
	}
	t.settled[seq] = struct{}{}
}

func (t *takeover) takeSettled(seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.settled[seq]; ok {
		delete(t.settled, seq)
		return true
	}
	return false
}

// forgetBelow drops the settled events at or below the ack floor: someone
// acknowledged them, and they will not come back.
func (t *takeover) forgetBelow(floor uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for seq := range t.settled {
		if seq <= floor {
			delete(t.settled, seq)
		}
	}
}

// caughtUp is an event read from the stream to be fanned out ahead of its
// turn. It goes through a batch like the messages the server hands out, but
// belongs to no consumer: acknowledging it records that its deliveries are
// stored, so that its own message is acknowledged when it comes; the rest
// is left to that message.
type caughtUp struct {
	t   *takeover
	raw *jetstream.RawStreamMsg
}

func (c *caughtUp) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Stream: c.raw.Sequence},
		NumDelivered: 1,
		Timestamp:    c.raw.Time,
		Stream:       streamEvents,
		Consumer:     consumerFanout,
	}, nil
}

func (c *caughtUp) Data() []byte                     { return c.raw.Data }
func (c *caughtUp) Headers() nats.Header             { return c.raw.Header }
func (c *caughtUp) Subject() string                  { return c.raw.Subject }
func (c *caughtUp) Reply() string                    { return "" }
func (c *caughtUp) Ack() error                       { c.t.settle(c.raw.Sequence); return nil }
func (c *caughtUp) DoubleAck(context.Context) error  { return c.Ack() }
func (c *caughtUp) Nak() error                       { return nil }
func (c *caughtUp) NakWithDelay(time.Duration) error { return nil }
func (c *caughtUp) InProgress() error                { return nil }
func (c *caughtUp) Term() error                      { return nil }
func (c *caughtUp) TermWithReason(string) error      { return nil }
