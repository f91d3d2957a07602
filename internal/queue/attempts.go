package queue

import (
	"context"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Attempt is one entry of a subscription's attempt log.
type Attempt struct {
	Time       time.Time
	Attempt    int
	StatusCode int
	Latency    time.Duration
	Error      string
	// Response is the start of the response body, cut to MaxResponseBytes.
	Response string
}

// MaxResponseBytes is how much of a response body the attempt log keeps.
const MaxResponseBytes = 20 << 10

// attemptStall is short on purpose: the log is for people looking at
// recent history, and a full publish window means the server is behind, when
// delivering matters more than recording.
const attemptStall = 100 * time.Millisecond

// RecordAttempt adds an attempt to the subscription's log without waiting
// for it to be stored; failures are logged. The log keeps the most recent
// Config.AttemptLog entries per subscription.
func (q *Queue) RecordAttempt(ctx context.Context, ns, sub string, a Attempt) error {
	if len(a.Response) > MaxResponseBytes {
		cut := MaxResponseBytes
		for cut > 0 && !utf8.RuneStart(a.Response[cut]) {
			cut--
		}
		a.Response = a.Response[:cut]
	}
	_, err := q.ajs.PublishMsgAsync(&nats.Msg{Subject: attemptSubject(ns, sub), Data: encodeAttempt(&a)},
		jetstream.WithStallWait(attemptStall))
	if err != nil {
		return fmt.Errorf("recording an attempt for %s/%s: %w", ns, sub, err)
	}
	return nil
}

// RecentAttempts returns up to limit of the subscription's latest attempts,
// newest first.
func (q *Queue) RecentAttempts(ctx context.Context, ns, sub string, limit int) ([]Attempt, error) {
	if limit <= 0 {
		return nil, nil
	}
	// The log is bounded per subject, so reading all of it is cheap; the
	// server offers no reverse read.
	var out []Attempt
	err := scan(ctx, q.attempts, attemptSubject(ns, sub), time.Time{}, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		a, err := decodeAttempt(m.Data())
		if err != nil {
			q.log.Error(err, "Skipping an undecodable attempt", "seq", md.Sequence.Stream)
			return true, nil
		}
		out = append(out, a)
		if len(out) > limit {
			out = out[1:]
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading attempt log of %s/%s: %w", ns, sub, err)
	}
	slices.Reverse(out)
	return out, nil
}
