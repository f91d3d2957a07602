package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pullExpiry is short because a pull that silently stalls is only noticed
// and re-issued when it expires. Stalls happen while a deep backlog drains:
// make bench with 50,000 events accepted at ~26k/s delivered only 2,569/s
// with a 5 s expiry (the dispatcher idle between pulls) and 9,459/s with
// 1 s. An idle consumer pays one extra pull request a second.
const pullExpiry = 1 * time.Second

// pump feeds out from a durable consumer until ctx ends, then closes out.
// With nakOnStop, messages still buffered at shutdown are NAKed so another
// replica (or the next start) gets them now rather than after their lease.
//
// It reads with the Messages iterator, not Consume, on purpose: Consume's
// callback would block while all workers are busy, and the client would take
// the missed heartbeats for a dead pull.
func (q *Queue) pump(ctx context.Context, consumer func(context.Context) (jetstream.Consumer, error),
	batch int, nakOnStop bool, out chan<- jetstream.Msg, opts ...jetstream.PullMessagesOpt,
) {
	defer close(out)
	q.pumpInto(ctx, consumer, batch, nakOnStop, out, opts...)
}

// pumpInto is pump without closing out, for several pumps feeding one
// channel.
func (q *Queue) pumpInto(ctx context.Context, consumer func(context.Context) (jetstream.Consumer, error),
	batch int, nakOnStop bool, out chan<- jetstream.Msg, opts ...jetstream.PullMessagesOpt,
) {
	for ctx.Err() == nil {
		err := q.pumpOnce(ctx, consumer, batch, nakOnStop, out, opts)
		if ctx.Err() != nil {
			return
		}
		// The consumer was deleted, the connection closed or the server
		// refused the pull: start over after a pause instead of spinning.
		q.log.Error(err, "Reading from JetStream failed; retrying")
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (q *Queue) pumpOnce(ctx context.Context, consumer func(context.Context) (jetstream.Consumer, error),
	batch int, nakOnStop bool, out chan<- jetstream.Msg, opts []jetstream.PullMessagesOpt,
) error {
	cons, err := consumer(ctx)
	if err != nil {
		return err
	}
	// A missed heartbeat (the server busy, say fsyncing under SyncAlways) is
	// handled inside the iterator by issuing a new pull; reported, it would
	// only make this loop start over.
	opts = append([]jetstream.PullMessagesOpt{
		jetstream.PullMaxMessages(batch), jetstream.PullExpiry(pullExpiry),
		jetstream.WithMessagesErrOnMissingHeartbeat(false),
	}, opts...)
	it, err := cons.Messages(opts...)
	if err != nil {
		return fmt.Errorf("starting to read consumer: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading consumer: %w", err)
		}
		if ctx.Err() == nil {
			select {
			case out <- m:
				continue
			case <-ctx.Done():
			}
		}
		if nakOnStop {
			_ = m.Nak()
		}
	}
}

// nakBackoff spaces out redeliveries of a message whose processing keeps
// failing, so a persistent error does not turn into a busy loop.
func nakBackoff(m jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := m.Metadata(); err == nil && md.NumDelivered > 0 {
		n = md.NumDelivered
	}
	d := time.Second << min(n-1, 6)
	return min(d, time.Minute)
}
