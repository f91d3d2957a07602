package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Upgrading from the old subject layout. Before the backlog followed the
// subscription and state was kept per object, three kinds of message had
// one token less in their subjects:
//
//	parked deliveries  hl.park.<ns>.<endpoint>        now hl.park.<ns>.<endpoint>.<subscription>
//	dead letters       hl.dead.<ns>.<subscription>    now hl.dead.<ns>.<subscription>.<uid>
//	attempt log        hl.att.<ns>.<subscription>     now hl.att.<ns>.<subscription>.<uid>
//
// Nothing reads the old subjects any more, so Open moves what they hold to
// the new ones. Parked deliveries and dead letters carry their subscription
// and its UID, so every one of them can be moved. Attempt log entries do
// not: a log is moved to the UID its subscription's dead letters, parked
// deliveries or ordered lane name, when they name exactly one; otherwise it
// stays where it is until the stream's max age removes it (the attempt log
// is a diagnostic; nothing is lost that would be delivered).
//
// Each message is copied, then deleted. A run killed between the two left
// exactly one copy behind (the first message still under an old subject),
// and the next run recognises it by the header it carries rather than copy
// it twice; the copy's message id also de-duplicates runs of two replicas
// at once. Messages are moved in stream order, so a subject's order is kept.

// migratedFrom names the old message a copy was made from: stream:sequence.
const migratedFrom = "Hookline-Migrated-From"

// migrateHook, when set (tests), runs after each copy and before the
// delete; an error stops the run there, as a SIGKILL would.
var migrateHook func() error

// oldLayout is one kind of old-layout message: where it is, and where it
// goes ("" to leave it).
type oldLayout struct {
	what   string
	stream jetstream.Stream
	filter string // matches the old subjects and no new one
	target func(m *jetstream.RawStreamMsg) (string, error)
}

// migrate moves every message of the old subject layout to the new one.
func (q *Queue) migrate(ctx context.Context) error {
	uids := map[SubscriptionKey]map[string]bool{}
	see := func(ns, sub, uid string) {
		k := SubscriptionKey{ns, sub}
		if uids[k] == nil {
			uids[k] = map[string]bool{}
		}
		uids[k][uid] = true
	}
	kinds := []oldLayout{{
		what: "parked deliveries", stream: q.deliveries, filter: subjParked + ".*.*",
		target: func(m *jetstream.RawStreamMsg) (string, error) {
			ns, ep, err := splitPair(m.Subject, subjParked)
			if err != nil {
				return "", err
			}
			d, err := decodeDelivery(m.Data)
			if err != nil {
				return "", err
			}
			see(ns, d.Subscription, d.SubscriptionUID)
			return parkSubject(ns, ep, d.Subscription), nil
		},
	}, {
		what: "dead letters", stream: q.dead, filter: subjDead + ".*.*",
		target: func(m *jetstream.RawStreamMsg) (string, error) {
			ns, sub, err := splitPair(m.Subject, subjDead)
			if err != nil {
				return "", err
			}
			d, _, err := decodeDead(m.Data)
			if err != nil {
				return "", err
			}
			see(ns, sub, d.SubscriptionUID)
			return deadSubject(SubscriptionID{ns, sub, d.SubscriptionUID}), nil
		},
	}, {
		what: "attempt logs", stream: q.attempts, filter: subjAttempts + ".*.*",
		target: func(m *jetstream.RawStreamMsg) (string, error) {
			ns, sub, err := splitPair(m.Subject, subjAttempts)
			if err != nil {
				return "", err
			}
			known := uids[SubscriptionKey{ns, sub}]
			if len(known) != 1 {
				return "", nil
			}
			for uid := range known {
				return attemptSubject(SubscriptionID{ns, sub, uid}), nil
			}
			return "", nil
		},
	}}
	// UIDs of dead letters an earlier, interrupted run already moved, and of
	// ordered lanes, also say whose attempt log an old one is.
	if err := q.knownUIDs(ctx, see); err != nil {
		return err
	}
	for _, k := range kinds {
		moved, left, err := q.migrateOld(ctx, k)
		if moved > 0 || left > 0 {
			q.log.Info("Moved messages of the old subject layout", "what", k.what, "moved", moved, "left", left)
		}
		if err != nil {
			return fmt.Errorf("moving %s of the old subject layout: %w", k.what, err)
		}
	}
	return nil
}

// knownUIDs reports the subscription UIDs the new layout's dead letters and
// the ordered lanes' deliveries name.
func (q *Queue) knownUIDs(ctx context.Context, see func(ns, sub, uid string)) error {
	info, err := q.dead.Info(ctx, jetstream.WithSubjectFilter(subjDead+".*.*.*"))
	if err != nil {
		return fmt.Errorf("listing dead letters: %w", err)
	}
	for subj := range info.State.Subjects {
		if id, err := splitSubscription(subj, subjDead); err == nil {
			see(id.Namespace, id.Name, id.UID)
		}
	}
	counts, err := q.subjectCounts(ctx, subjOrdered+".>")
	if err != nil {
		return err
	}
	for subj := range counts {
		m, err := q.deliveries.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			continue
		}
		if d, err := decodeDelivery(m.Data); err == nil {
			if ns, sub, _, err := splitOrdered(subj); err == nil {
				see(ns, sub, d.SubscriptionUID)
			}
		}
	}
	return nil
}

// migrateOld moves the messages of one kind, in stream order. moved counts
// those moved, left those that stay (no target, or undecodable).
func (q *Queue) migrateOld(ctx context.Context, k oldLayout) (moved, left int, err error) {
	name := k.stream.CachedInfo().Config.Name
	first := true
	for seq := uint64(1); ; {
		m, err := k.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(k.filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return moved, left, nil
		}
		if err != nil {
			return moved, left, fmt.Errorf("reading %s after sequence %d: %w", name, seq, err)
		}
		seq = m.Sequence + 1
		to, err := k.target(m)
		if err != nil {
			q.log.Error(err, "Leaving a message of the old subject layout that cannot be read", "stream", name, "subject", m.Subject, "seq", m.Sequence)
		}
		if to == "" {
			left++
			continue
		}
		from := name + ":" + strconv.FormatUint(m.Sequence, 10)
		copied := false
		if first {
			// A run killed after its copy and before its delete leaves this
			// message, the first still here, copied as the last of its target.
			first = false
			if last, err := k.stream.GetLastMsgForSubject(ctx, to); err == nil && last.Header.Get(migratedFrom) == from {
				copied = true
			}
		}
		if !copied {
			msg := &nats.Msg{Subject: to, Data: m.Data, Header: nats.Header{
				jetstream.MsgIDHeader: []string{"migrate/" + from},
				migratedFrom:          []string{from},
			}}
			if _, err := q.js.PublishMsg(ctx, msg); err != nil {
				return moved, left, fmt.Errorf("copying %s %s to %s: %w", from, m.Subject, to, err)
			}
			if migrateHook != nil {
				if err := migrateHook(); err != nil {
					return moved, left, err
				}
			}
		}
		if err := k.stream.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return moved, left, fmt.Errorf("deleting %s after copying it: %w", from, err)
		}
		moved++
	}
}
