package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
func (q *Queue) pump(ctx context.Context, consumer func(context.Context) (jetstream.Consumer, error),
	batch int, nakOnStop bool, out chan<- jetstream.Msg, opts ...jetstream.PullConsumeOpt,
) {
	defer close(out)
	q.pumpInto(ctx, consumer, batch, nakOnStop, out, opts...)
}

// pumpInto is pump without closing out, for several pumps feeding one
// channel.
func (q *Queue) pumpInto(ctx context.Context, consumer func(context.Context) (jetstream.Consumer, error),
	batch int, nakOnStop bool, out chan<- jetstream.Msg, opts ...jetstream.PullConsumeOpt,
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

// pumpOnce reads with Consume, whose callback hands each message to out and
// blocks while out is full, rather than with the Messages iterator. The
// iterator buffers in a channel of exactly batch messages, and the client
// drops what does not fit ("slow consumer"); after a missed heartbeat (the
// server busy fsyncing under SyncAlways, or a starved machine) it forgets
// the messages still on their way and pulls a full batch again, so the two
// pulls together overflow that channel. The dropped messages came back only
// after their ack wait: a 17 s stall in BenchmarkFanoutDeliver with
// SyncAlways. Consume's subscription queues instead (up to the client's
// pending limits, far above a few batches), its heartbeat timer is paused
// while the callback runs, so a busy pool of workers is not taken for a
// dead pull, and out is the bound on what is buffered in this process.
func (q *Queue) pumpOnce(ctx context.Context, consumer func(context.Context) (jetstream.Consumer, error),
	batch int, nakOnStop bool, out chan<- jetstream.Msg, opts []jetstream.PullConsumeOpt,
) error {
	cons, err := consumer(ctx)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var failed error
	// handling is held while the callback runs, and returned is set once
	// this function is done: the client may report the subscription closed
	// while its last callback is still running, and out must not see a send
	// after the caller closes it.
	var handling sync.Mutex
	returned := false
	defer func() {
		handling.Lock()
		returned = true
		handling.Unlock()
	}()
	handler := func(m jetstream.Msg) {
		handling.Lock()
		defer handling.Unlock()
		if ctx.Err() == nil && !returned {
			select {
			case out <- m:
				return
			case <-ctx.Done():
			}
		}
		if nakOnStop {
			_ = m.Nak()
		}
	}
	onErr := func(_ jetstream.ConsumeContext, err error) {
		switch {
		case errors.Is(err, jetstream.ErrNoHeartbeat):
			// Handled inside the client by issuing a new pull.
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrBadRequest),
			errors.Is(err, jetstream.ErrConnectionClosed):
			mu.Lock()
			failed = err
			mu.Unlock()
		default:
			q.log.V(1).Info("Reading from JetStream", "consumer", cons.CachedInfo().Name, "error", err.Error())
		}
	}
	opts = append([]jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(batch), jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(onErr),
	}, opts...)
	cc, err := cons.Consume(handler, opts...)
	if err != nil {
		return fmt.Errorf("starting to read consumer: %w", err)
	}
	select {
	case <-ctx.Done():
		// Buffered messages go through handler, which NAKs them.
		cc.Drain()
		<-cc.Closed()
		return nil
	case <-cc.Closed():
	}
	mu.Lock()
	defer mu.Unlock()
	if failed == nil {
		failed = errors.New("the subscription closed")
	}
	return fmt.Errorf("reading consumer: %w", failed)
}

// nakBackoff spaces out redeliveries of a message whose processing keeps
// failing, so a persistent error does not turn into a busy loop.
func nakBackoff(m jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := m.Metadata(); err == nil && md.NumDelivered > 0 {
		n = md.NumDelivered
	}
	d := time.Second << min(n-1, 6)
	return min(d, maxNakBackoff)
}

// maxNakBackoff is the longest delay nakBackoff gives.
const maxNakBackoff = time.Minute
