package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Event retention: every event the fan-out handles is also stored in its
// own stream, HL_RETAINED, kept by age and size (MaxAge, MaxBytes, oldest
// discarded first), so that receivers can fetch what they missed and a
// subscription can be recovered from it.
//
// The subject is hl.ret.<namespace>.<type>.<bucket>, where bucket is one
// of retainedBuckets values derived from the event id. Listing a namespace,
// or one type of it, is then a subject-filtered scan, time-ordered because
// the stream is; finding one event by id scans one bucket. The buckets bound
// the subjects the server indexes (a subject per event would cost its
// memory per event) while keeping a lookup by id to a fraction of the
// namespace's events.
//
// Events are keyed by namespace name: a namespace deleted and created again
// under the same name sees the events the old one retained until they age
// out, unless they are purged (PurgeRetained).

const (
	streamRetained = "HL_RETAINED"
	subjRetained   = "hl.ret"
	// retainedBuckets is the number of id buckets per namespace and type.
	retainedBuckets = 64
)

// Defaults of the retention window.
const (
	DefaultRetention      = 7 * 24 * time.Hour
	DefaultRetentionBytes = 1 << 30
)

// ErrRetentionOff is returned by the retained-event reads when the queue
// keeps no events.
var ErrRetentionOff = errors.New("event retention is off")

func retainedBucket(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString([]byte{sum[0] % retainedBuckets})
}

func retainedSubject(ev *Event) string {
	return subjRetained + "." + token(ev.Namespace) + "." + token(ev.Type) + "." + retainedBucket(ev.ID)
}

// retainedFilter is the subject filter of a namespace's retained events, of
// one type when typ is not empty.
func retainedFilter(ns, typ string) string {
	if typ == "" {
		return subjRetained + "." + token(ns) + ".>"
	}
	return subjRetained + "." + token(ns) + "." + token(typ) + ".*"
}

func (q *Queue) retaining() bool { return q.cfg.Retention > 0 }

func (q *Queue) retainedStreamConfig() jetstream.StreamConfig {
	maxBytes := q.cfg.RetentionBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        streamRetained,
		Description: "hookline: accepted events, kept after fan-out for listing and recovery",
		Subjects:    []string{subjRetained + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      q.cfg.Retention,
		MaxBytes:    maxBytes,
		// A fan-out repeated after a crash stores the event again; its id
		// makes that a no-op. Only a repeated fan-out has to be caught, as
		// for the deliveries, so the window is theirs, not the events' 10
		// minutes: the server keeps every id of the window in memory (about
		// 170 bytes for an event's), which under a steady load is the rate
		// times the window.
		Duplicates: min(q.deliveryDedupeWindow(), q.cfg.Retention),
		// The fan-out stores retained copies as atomic batches under
		// SyncAlways (groupcommit.go).
		AllowAtomicPublish: q.cfg.Embedded,
	}
}

// publishRetained stores ev in the retained events, as part of its fan-out.
func (q *Queue) publishRetained(pub publishFunc, ev *Event, futures []jetstream.PubAckFuture) ([]jetstream.PubAckFuture, error) {
	if !q.retaining() {
		return futures, nil
	}
	m := &nats.Msg{
		Subject: retainedSubject(ev),
		Header:  nats.Header{jetstream.MsgIDHeader: []string{eventMsgID(ev.Namespace, ev.ID)}},
		Data:    encodeEvent(ev),
	}
	f, err := pub(m)
	if err != nil {
		return futures, fmt.Errorf("retaining event %s/%s: %w", ev.Namespace, ev.ID, err)
	}
	return append(futures, f), nil
}

// RetainedEvent is an event as retained: Seq orders the retained events and
// is the cursor of a listing; Stored is when the fan-out retained it.
type RetainedEvent struct {
	Event  Event
	Seq    uint64
	Stored time.Time
}

// EventQuery selects retained events of one namespace.
type EventQuery struct {
	Namespace string
	// Type, when set, is the one event type to list.
	Type string
	// Since and Until bound when the events were retained (inclusive); zero
	// is unbounded.
	Since, Until time.Time
	// Cursor, when not zero, continues a listing: the Next of its previous
	// page.
	Cursor uint64
	// Limit is the most events returned; at least 1.
	Limit int
	// NewestFirst lists backwards in time.
	NewestFirst bool
}

// ListEvents returns a page of retained events and the cursor of the next
// page, zero when there is none.
func (q *Queue) ListEvents(ctx context.Context, eq EventQuery) ([]RetainedEvent, uint64, error) {
	if q.retained == nil {
		return nil, 0, ErrRetentionOff
	}
	if eq.Limit < 1 {
		eq.Limit = 1
	}
	var (
		out []RetainedEvent
		err error
	)
	if eq.NewestFirst {
		out, err = q.listBackward(ctx, eq)
	} else {
		out, err = q.listForward(ctx, eq)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("listing retained events of %s: %w", eq.Namespace, err)
	}
	var next uint64
	if len(out) > eq.Limit {
		out = out[:eq.Limit]
		next = out[len(out)-1].Seq
	}
	return out, next, nil
}

// listForward reads up to Limit+1 events, oldest first.
func (q *Queue) listForward(ctx context.Context, eq EventQuery) ([]RetainedEvent, error) {
	var out []RetainedEvent
	var startSeq uint64
	if eq.Cursor != 0 {
		startSeq = eq.Cursor + 1
	}
	err := scanFrom(ctx, q.retained, retainedFilter(eq.Namespace, eq.Type), eq.Since, startSeq,
		func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
			if !eq.Until.IsZero() && md.Timestamp.After(eq.Until) {
				return false, nil
			}
			if md.Timestamp.Before(eq.Since) {
				return true, nil
			}
			if ev, ok := q.decodeRetained(m.Data(), md); ok {
				out = append(out, ev)
			}
			return len(out) <= eq.Limit, nil
		})
	return out, err
}

// listBackward reads up to Limit+1 events, newest first. JetStream reads
// forward only, so it reads windows of sequences backwards from the end (or
// the cursor), each window four times the last.
func (q *Queue) listBackward(ctx context.Context, eq EventQuery) ([]RetainedEvent, error) {
	info, err := q.retained.Info(ctx)
	if err != nil {
		return nil, err
	}
	first, hi := info.State.FirstSeq, info.State.LastSeq
	if eq.Cursor != 0 {
		hi = min(hi, eq.Cursor-1)
	}
	var out []RetainedEvent
	window := 4 * (uint64(max(eq.Limit, 0)) + 1)
	for hi >= first && hi > 0 && len(out) <= eq.Limit {
		lo := first
		if hi >= window && hi-window+1 > first {
			lo = hi - window + 1
		}
		var page []RetainedEvent
		older := false
		err := scanFrom(ctx, q.retained, retainedFilter(eq.Namespace, eq.Type), time.Time{}, lo,
			func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
				if md.Sequence.Stream > hi {
					return false, nil
				}
				if md.Timestamp.Before(eq.Since) {
					older = true
					return true, nil
				}
				if !eq.Until.IsZero() && md.Timestamp.After(eq.Until) {
					return true, nil
				}
				if ev, ok := q.decodeRetained(m.Data(), md); ok {
					page = append(page, ev)
				}
				return true, nil
			})
		if err != nil {
			return nil, err
		}
		slices.Reverse(page)
		out = append(out, page...)
		if older || lo == first {
			break
		}
		hi = lo - 1
		window *= 4
	}
	return out, nil
}

func (q *Queue) decodeRetained(data []byte, md *jetstream.MsgMetadata) (RetainedEvent, bool) {
	ev, err := decodeEvent(data)
	if err != nil {
		q.log.Error(err, "Skipping an undecodable retained event", "seq", md.Sequence.Stream)
		return RetainedEvent{}, false
	}
	return RetainedEvent{Event: ev, Seq: md.Sequence.Stream, Stored: md.Timestamp}, true
}

// GetEvent returns the retained event of namespace ns with the producer's
// id, the latest if it was retained more than once; ErrNotFound when none is
// retained.
func (q *Queue) GetEvent(ctx context.Context, ns, id string) (RetainedEvent, error) {
	if q.retained == nil {
		return RetainedEvent{}, ErrRetentionOff
	}
	var (
		found RetainedEvent
		ok    bool
	)
	filter := subjRetained + "." + token(ns) + ".*." + retainedBucket(id)
	err := scan(ctx, q.retained, filter, time.Time{}, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		if ev, decoded := q.decodeRetained(m.Data(), md); decoded && ev.Event.ID == id {
			found, ok = ev, true
		}
		return true, nil
	})
	if err != nil {
		return RetainedEvent{}, fmt.Errorf("reading retained event %s/%s: %w", ns, id, err)
	}
	if !ok {
		return RetainedEvent{}, fmt.Errorf("retained event %s/%s: %w", ns, id, ErrNotFound)
	}
	return found, nil
}

// ScanEvents calls fn with the retained events of namespace ns, oldest
// first, from sequence from (or, when it is zero, from time since) up to and
// including sequence to, until fn returns false.
func (q *Queue) ScanEvents(ctx context.Context, ns string, from uint64, since time.Time, to uint64,
	fn func(RetainedEvent) (bool, error),
) error {
	if q.retained == nil {
		return ErrRetentionOff
	}
	return scanFrom(ctx, q.retained, retainedFilter(ns, ""), since, from,
		func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
			if md.Sequence.Stream > to {
				return false, nil
			}
			ev, ok := q.decodeRetained(m.Data(), md)
			if !ok {
				return true, nil
			}
			return fn(ev)
		})
}

// LastRetained is the sequence of the latest retained event of any
// namespace, 0 when there is none.
func (q *Queue) LastRetained(ctx context.Context) (uint64, error) {
	if q.retained == nil {
		return 0, ErrRetentionOff
	}
	info, err := q.retained.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the retained events' state: %w", err)
	}
	return info.State.LastSeq, nil
}

// PurgeRetained removes every retained event of namespace ns.
func (q *Queue) PurgeRetained(ctx context.Context, ns string) error {
	if q.retained == nil {
		return nil
	}
	if err := q.retained.Purge(ctx, jetstream.WithPurgeSubject(retainedFilter(ns, ""))); err != nil {
		return fmt.Errorf("purging retained events of %s: %w", ns, err)
	}
	return nil
}
