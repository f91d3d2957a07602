package queue

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A recovery sends a subscription's retained events since a time back
// through the normal delivery path, delivered ones included. Its progress
// is a record in a key-value bucket, keyed by the subscription object and
// the request's id, so that the same request made again (a retry, another
// replica) finds it instead of starting a second one, and an interrupted
// one resumes where it stopped.

const (
	recoveriesBucket = "hl-recoveries"
	// recoveryMark tags a delivery's Replay field as a recovery's rather
	// than a dead letter's sequence, so its message ids differ from the
	// original delivery's and from every other recovery's.
	recoveryMark = uint64(1) << 63
)

// Phases of a recovery.
const (
	RecoveryRunning  = "Running"
	RecoveryComplete = "Complete"
	RecoveryFailed   = "Failed"
)

// Recovery is the progress of one recovery request.
type Recovery struct {
	// ID is the request's id (its Idempotency-Key).
	ID           string         `json:"id"`
	Subscription SubscriptionID `json:"subscription"`
	// Since is the earliest retention time of the events it sends; UpTo
	// the last retained sequence it looks at, the latest when it started.
	Since time.Time `json:"since,omitzero"`
	UpTo  uint64    `json:"upTo"`
	// Cursor is the last retained sequence handled, 0 before the first.
	Cursor uint64 `json:"cursor"`
	// Scanned counts the namespace's retained events looked at, Queued the
	// deliveries stored for the subscription.
	Scanned    uint64    `json:"scanned"`
	Queued     uint64    `json:"queued"`
	Phase      string    `json:"phase"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`

	rev uint64
}

// Recovered reports whether a delivery was stored by a recovery.
func (d *Delivery) Recovered() bool { return d.Replay&recoveryMark != 0 }

func recoveryKey(sub SubscriptionID, id string) string {
	sum := sha256.Sum256([]byte(id))
	return token(sub.UID) + "." + hex.EncodeToString(sum[:16])
}

func (q *Queue) recoveries(ctx context.Context) (jetstream.KeyValue, error) {
	q.recMu.Lock()
	defer q.recMu.Unlock()
	if q.recKV != nil {
		return q.recKV, nil
	}
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      recoveriesBucket,
		Description: "hookline: progress of subscription recoveries, by request id",
		TTL:         max(q.cfg.Retention, 24*time.Hour),
		Storage:     jetstream.FileStorage,
		Replicas:    q.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the recoveries bucket: %w", err)
	}
	q.recKV = kv
	return kv, nil
}

// LoadRecovery returns the recovery of a subscription with request id id.
func (q *Queue) LoadRecovery(ctx context.Context, sub SubscriptionID, id string) (Recovery, bool, error) {
	kv, err := q.recoveries(ctx)
	if err != nil {
		return Recovery{}, false, err
	}
	e, err := kv.Get(ctx, recoveryKey(sub, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Recovery{}, false, nil
	}
	if err != nil {
		return Recovery{}, false, fmt.Errorf("reading recovery %s of %s: %w", id, sub, err)
	}
	var r Recovery
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Recovery{}, false, fmt.Errorf("decoding recovery %s of %s: %w", id, sub, err)
	}
	r.rev = e.Revision()
	return r, true, nil
}

// ErrRecoveryTaken is returned by SaveRecovery when the record changed since
// it was read: another process saved it first.
var ErrRecoveryTaken = errors.New("the recovery was updated by another process")

// SaveRecovery stores r: it creates the record when r was not loaded, and
// otherwise updates it only if nobody else did since r was loaded
// (ErrRecoveryTaken), so only one process runs a recovery at a time.
func (q *Queue) SaveRecovery(ctx context.Context, r *Recovery) error {
	kv, err := q.recoveries(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	key := recoveryKey(r.Subscription, r.ID)
	var rev uint64
	if r.rev == 0 {
		rev, err = kv.Create(ctx, key, b)
	} else {
		rev, err = kv.Update(ctx, key, b, r.rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("saving recovery %s of %s: %w", r.ID, r.Subscription, ErrRecoveryTaken)
	}
	if err != nil {
		return fmt.Errorf("saving recovery %s of %s: %w", r.ID, r.Subscription, err)
	}
	r.rev = rev
	return nil
}

// recoveryReplay is the Replay value of a recovery's deliveries.
func recoveryReplay(sub SubscriptionID, id string) uint64 {
	sum := sha256.Sum256([]byte(sub.UID + "\x00" + id))
	return recoveryMark | binary.BigEndian.Uint64(sum[:8])&^recoveryMark
}

// StoreRecovered stores deliveries of recovery r as attempt 1 on their
// lanes and returns once all are stored. Their message ids are the
// recovery's own, so storing the same ones again (a resumed recovery) is a
// no-op within the de-duplication window.
func (q *Queue) StoreRecovered(ctx context.Context, r *Recovery, ds []Delivery) error {
	mark := recoveryReplay(r.Subscription, r.ID)
	futures := make([]jetstream.PubAckFuture, 0, len(ds))
	for i := range ds {
		d := &ds[i]
		d.Attempt, d.Holds, d.Replay, d.FirstAttempt = 1, 0, mark, time.Time{}
		if err := d.validate(); err != nil {
			return fmt.Errorf("recovering event %s/%s: %w", d.Event.Namespace, d.Event.ID, err)
		}
		m := &nats.Msg{
			Subject: laneSubject(d),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{deliveryMsgID(d)}},
			Data:    encodeDelivery(d),
		}
		f, err := q.js.PublishMsgAsync(m, stallWait)
		if err != nil {
			return fmt.Errorf("recovering event %s/%s: %w", d.Event.Namespace, d.Event.ID, err)
		}
		futures = append(futures, f)
	}
	if err := await(ctx, futures); err != nil {
		return fmt.Errorf("storing recovered deliveries of %s: %w", r.Subscription, err)
	}
	return nil
}
