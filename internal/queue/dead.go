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
func (q *Queue) ListDead(ctx context.Context, ns, sub string, limit int) ([]DeadDelivery, error) {
	var out []DeadDelivery
	if limit <= 0 {
		return out, nil
	}
	err := scan(ctx, q.dead, deadSubject(ns, sub), time.Time{}, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		d, info, err := decodeDead(m.Data())
		if err != nil {
			q.log.Error(err, "Skipping an undecodable dead delivery", "seq", md.Sequence.Stream)
			return true, nil
		}
		out = append(out, DeadDelivery{Delivery: d, Last: info, Seq: md.Sequence.Stream, DiedAt: md.Timestamp})
		return len(out) < limit, nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing dead deliveries of %s/%s: %w", ns, sub, err)
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
func (q *Queue) Replay(ctx context.Context, ns, sub string, from, to time.Time) (int, error) {
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
	err := scan(ctx, q.dead, deadSubject(ns, sub), from, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		if !to.IsZero() && md.Timestamp.After(to) {
			return false, nil
		}
		d, _, err := decodeDead(m.Data())
		if err != nil {
			q.log.Error(err, "Skipping an undecodable dead delivery", "seq", md.Sequence.Stream)
			return true, nil
		}
		d.Attempt, d.Holds, d.Replay, d.FirstAttempt = 1, 0, md.Sequence.Stream, time.Time{}
		f, err := q.js.PublishMsgAsync(&nats.Msg{
			Subject: laneSubject(&d),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{deliveryMsgID(&d)}},
			Data:    encodeDelivery(&d),
		}, jetstream.WithStallWait(publishStall))
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
		return total, fmt.Errorf("replaying dead deliveries of %s/%s: %w", ns, sub, err)
	}
	return total, nil
}

// PurgeSubscription removes what the queue keeps about a deleted
// subscription: its dead deliveries and attempt log. Deliveries still queued
// are dropped by the handler, which no longer finds the subscription; an
// ordered lane is removed with RemoveOrdered.
func (q *Queue) PurgeSubscription(ctx context.Context, ns, sub string) error {
	if err := q.dead.Purge(ctx, jetstream.WithPurgeSubject(deadSubject(ns, sub))); err != nil {
		return fmt.Errorf("purging dead deliveries of %s/%s: %w", ns, sub, err)
	}
	q.alog.forget(attemptSubject(ns, sub))
	if err := q.attempts.Purge(ctx, jetstream.WithPurgeSubject(attemptSubject(ns, sub))); err != nil {
		return fmt.Errorf("purging attempt log of %s/%s: %w", ns, sub, err)
	}
	return nil
}
