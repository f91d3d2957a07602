package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadDelivery is a delivery that ran out of attempts.
type DeadDelivery struct {
	Delivery Delivery
	Last     DeadInfo
	// Seq identifies it in the dead letters; a replay's message ids derive
	// from it, so replaying the same dead delivery twice is recognised.
	Seq    uint64
	DiedAt time.Time
}

// ListDead returns up to limit dead deliveries of a subscription, oldest
// first.
func (q *Queue) ListDead(ctx context.Context, sub SubscriptionID, limit int) ([]DeadDelivery, error) {
	var out []DeadDelivery
	if limit <= 0 {
		return out, nil
	}
	err := scan(ctx, q.dead, deadSubject(sub), time.Time{}, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		d, info, err := decodeDead(m.Data())
		if err != nil {
			q.log.Error(err, "Skipping an undecodable dead delivery", "seq", md.Sequence.Stream)
			return true, nil
		}
		diedAt := md.Timestamp
		if m.Headers().Get(migratedFrom) != "" && !info.Time.IsZero() {
			// Moved from the old subject layout when the queue was opened:
			// it died when its last failure says, not then.
			diedAt = info.Time
		}
		out = append(out, DeadDelivery{Delivery: d, Last: info, Seq: md.Sequence.Stream, DiedAt: diedAt})
		return len(out) < limit, nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing dead deliveries of %s: %w", sub, err)
	}
	return out, nil
}

// replayChunk bounds the dead deliveries republished before they are
// removed, and so the work repeated if a replay is interrupted.
const replayChunk = 256

// Replay sends the dead deliveries of a subscription that died within
// [from, to] (zero: unbounded) back for delivery as attempt 1, and removes
// them from the dead letters once the new deliveries are stored. It returns
// how many it replayed. An interrupted replay can be run again: deliveries
// already republished but not yet removed carry the same message ids and
// are not stored twice within the de-duplication window.
func (q *Queue) Replay(ctx context.Context, sub SubscriptionID, from, to time.Time) (int, error) {
	var (
		futures []jetstream.PubAckFuture
		seqs    []uint64
		total   int
	)
	flush := func() error {
		if err := await(ctx, futures); err != nil {
			return err
		}
		for _, seq := range seqs {
			if err := q.dead.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("removing replayed dead delivery %d: %w", seq, err)
			}
		}
		total += len(seqs)
		futures, seqs = futures[:0], seqs[:0]
		return nil
	}
	err := scan(ctx, q.dead, deadSubject(sub), from, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		if !to.IsZero() && md.Timestamp.After(to) {
			return false, nil
		}
		d, _, err := decodeDead(m.Data())
		if err != nil {
			q.log.Error(err, "Skipping an undecodable dead delivery", "seq", md.Sequence.Stream)
			return true, nil
		}
		f, err := q.js.PublishMsgAsync(replayMsg(d, md.Sequence.Stream), stallWait)
		if err != nil {
			return false, err
		}
		futures = append(futures, f)
		seqs = append(seqs, md.Sequence.Stream)
		if len(seqs) == replayChunk {
			return true, flush()
		}
		return true, nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return total, fmt.Errorf("replaying dead deliveries of %s: %w", sub, err)
	}
	return total, nil
}

// replayMsg is dead delivery d, stored as dead letter seq, sent back for
// delivery as attempt 1; its message ids derive from seq.
func replayMsg(d Delivery, seq uint64) *nats.Msg {
	d.Attempt, d.Holds, d.Replay, d.FirstAttempt = 1, 0, seq, time.Time{}
	return &nats.Msg{
		Subject: laneSubject(&d),
		Header:  nats.Header{jetstream.MsgIDHeader: []string{deliveryMsgID(&d)}},
		Data:    encodeDelivery(&d),
	}
}

// ErrNotFound is returned for a dead delivery or subscription that does not
// exist.
var ErrNotFound = errors.New("not found")

// Resend sends one dead delivery of the subscription, by its Seq, back for
// delivery as attempt 1 and removes it from the dead letters once the new
// delivery is stored. A Seq that is not a dead delivery of this very
// subscription is ErrNotFound. Resending again after an interruption is
// safe, as with Replay.
func (q *Queue) Resend(ctx context.Context, sub SubscriptionID, seq uint64) error {
	m, err := q.dead.GetMsg(ctx, seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("dead delivery %d of %s: %w", seq, sub, ErrNotFound)
	case err != nil:
		return fmt.Errorf("reading dead delivery %d of %s: %w", seq, sub, err)
	case m.Subject != deadSubject(sub):
		return fmt.Errorf("dead delivery %d of %s: %w", seq, sub, ErrNotFound)
	}
	d, _, err := decodeDead(m.Data)
	if err != nil {
		return fmt.Errorf("decoding dead delivery %d of %s: %w", seq, sub, err)
	}
	if _, err := q.js.PublishMsg(ctx, replayMsg(d, seq)); err != nil {
		return fmt.Errorf("resending dead delivery %d of %s: %w", seq, sub, err)
	}
	if err := q.dead.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("removing resent dead delivery %d of %s: %w", seq, sub, err)
	}
	return nil
}
