package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// scanWait is how long one fetch of a scan waits for messages.
const scanWait = 2 * time.Second

// scan reads the messages of one subject, oldest first, from start (zero:
// the beginning), until fn returns false or the subject is read to the end
// as it was when the scan began. It serves the small, occasional reads
// (dead letters, the attempt log), so it uses a throwaway consumer without
// acks, which is cheap to create and leaves no state behind.
func scan(ctx context.Context, s jetstream.Stream, subject string, start time.Time,
	fn func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error),
) error {
	return scanFrom(ctx, s, subject, start, 0, fn)
}

// scanFrom is scan starting at stream sequence startSeq when it is not zero
// (then start is ignored).
func scanFrom(ctx context.Context, s jetstream.Stream, subject string, start time.Time, startSeq uint64,
	fn func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error),
) error {
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     subject,
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	switch {
	case startSeq != 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = startSeq
	case !start.IsZero():
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	}
	c, err := s.CreateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("reading %s: %w", subject, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shortWait)
		defer cancel()
		_ = s.DeleteConsumer(ctx, c.CachedInfo().Name)
	}()
	left := c.CachedInfo().NumPending
	empty := 0
	for left > 0 {
		batch, err := c.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(scanWait))
		if err != nil {
			return fmt.Errorf("reading %s: %w", subject, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("reading %s: %w", subject, err)
			}
			more, err := fn(m, md)
			if err != nil || !more {
				return err
			}
			left = md.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("reading %s: %w", subject, err)
		}
		if n == 0 {
			// Nothing within the wait: the rest expired or was deleted since
			// the count was taken, or the server is slow. Ask which, rather
			// than return a partial read as if it were whole.
			info, err := c.Info(ctx)
			if err != nil {
				return fmt.Errorf("reading %s: %w", subject, err)
			}
			if left = info.NumPending; left > 0 {
				if empty++; empty >= 5 {
					return fmt.Errorf("reading %s: no message within %s, %d times, while the server counts %d left", subject, scanWait, empty, left)
				}
			}
		}
	}
	return nil
}
