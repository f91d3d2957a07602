package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Parking per key. On a keyed lane (keyed.go) a delivery that carries its
// key's hash (Delivery.KeyHash) does not hold the lane when it fails: its key
// is blocked instead, and only the key's own successors wait.
//
// A key is blocked while it has a record, on HL_LANE_HOLDS next to its
// lane's record (keySubject): which delivery is its head, and which attempt
// of it is due when. While the record is there:
//
//   - the head is not on the lane: its retry is a schedule, as for an
//     unordered delivery, that puts a copy marked KeyHead on the lane when
//     it is due. Only that copy, with the attempt the record names, is
//     handed out; any other copy of a head is a leftover of a crash and is
//     dropped.
//   - every other delivery of the key that the lane hands out is moved to
//     the key's parking subject (keyParkSubject, hl.ord.<ns>.<sub>.<lane>.
//     <hash>, in the deliveries stream, read by no consumer), in lane order.
//   - when the head is resolved (delivered, dead, dropped), the first parked
//     delivery becomes the head: a KeyHead copy goes on the lane and the
//     record names it. With nothing parked, the record is removed and the key
//     runs free again.
//
// So the lane keeps delivering other keys while one fails, and a key's order
// is kept because one process at a time reads the lane (MaxAckPending=1):
// whatever it moves to a key's parking subject arrives in lane order, and
// nothing of the key leaves the lane while its record is there.
//
// Every step stores before it acknowledges, in an order such that a process
// killed between any two finds, when the lane hands the same message out
// again, either nothing done yet or a state the rules above complete
// (keypark_sigkill_test.go): a delivery parked twice, or a head sent twice,
// comes again right after itself, never after a later delivery of its key.
//
// Memory: a lane reading keys keeps the records of at most keyCacheMax
// blocked keys; with more, the others are read from the stream when one of
// their deliveries comes by. Disk holds the rest: one record and one parking
// subject per blocked key.
//
// A lane also counts its blocked keys, whatever the bound on memory
// (keycount.go).

// keyCacheMax is how many blocked keys' records a lane keeps in memory,
// unless Queue.keyCache says otherwise (tests).
const keyCacheMax = 1024

func (q *Queue) keyCacheMax() int {
	if q.keyCache > 0 {
		return q.keyCache
	}
	return keyCacheMax
}

// KeyHash identifies a key on its lane: FNV-1a, 64 bits, of the key, never
// 0 (0 is a delivery without a key). Like KeyLane it is stored with
// deliveries and must never change.
func KeyHash(key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	if v := h.Sum64(); v != 0 {
		return v
	}
	return 1
}

func keyToken(h uint64) string {
	s := strconv.FormatUint(h, 16)
	return strings.Repeat("0", 16-len(s)) + s
}

// keyParkSubject is where the deliveries of a blocked key wait: its lane's
// subject and the key's hash. No consumer filter covers it (a lane's
// consumer reads exactly its lane's subject).
func keyParkSubject(d *Delivery) string {
	return laneSubjectOf(d.Event.Namespace, d.Subscription, d.Lane) + "." + keyToken(d.KeyHash)
}

// keyRecord is what is stored about a blocked key: its head (event,
// subscription object, replay), the attempt of it due next and when, and
// when its first attempt was made.
type keyRecord struct {
	id      string
	uid     string
	replay  uint64
	attempt int
	due     time.Time
	first   time.Time
}

func recordOf(d *Delivery, attempt int, due time.Time) *keyRecord {
	return &keyRecord{id: d.Event.ID, uid: d.SubscriptionUID, replay: d.Replay, attempt: attempt, due: due, first: d.FirstAttempt}
}

// is reports whether d is the head (at any attempt).
func (r *keyRecord) is(d *Delivery) bool {
	return r.id == d.Event.ID && r.uid == d.SubscriptionUID && r.replay == d.Replay
}

func sameDelivery(a, b *Delivery) bool {
	return a.Event.ID == b.Event.ID && a.SubscriptionUID == b.SubscriptionUID && a.Replay == b.Replay
}

func encodeKeyRecord(r *keyRecord) []byte {
	e := encoder{}
	e.byte(codecV2)
	e.string(r.id)
	e.string(r.uid)
	e.uvarint(r.replay)
	e.varint(int64(r.attempt))
	e.time(r.due)
	e.time(r.first)
	return e.b
}

func decodeKeyRecord(b []byte) (*keyRecord, error) {
	d := decoder{b: b}
	d.version("key record")
	r := &keyRecord{id: d.string(), uid: d.string(), replay: d.uvarint(), attempt: d.int(), due: d.time(), first: d.time()}
	if d.err != nil {
		return nil, fmt.Errorf("decoding key record: %w", d.err)
	}
	return r, nil
}

// keys is what one run of a keyed lane knows of its blocked keys. Only the
// lane's goroutine uses it, one message at a time.
type keys struct {
	// mu is never contended: a lane's next message comes only after its
	// current one is resolved. It orders the lane's goroutine and a
	// handler that resolves a job on another for the race detector, which
	// cannot see that order through the server.
	mu sync.Mutex
	q  *Queue
	// subject is the lane's hold subject; a key's record is on
	// subject.<hash>.
	subject string
	loaded  bool
	// complete: blocked holds every blocked key of the lane, so a key not in
	// it is free without asking the stream.
	complete bool
	// blocked maps a key to its record; nil until the record was read.
	blocked map[uint64]*keyRecord

	// count is how many keys of the lane are blocked: all of them, not only
	// those in blocked (keycount.go). It is written under mu and read by
	// anyone (Lane.BlockedKeys); counted says it was read from the stream.
	count   atomic.Int64
	counted atomic.Bool
}

func (k *keys) keySubject(h uint64) string { return k.subject + "." + keyToken(h) }

// load learns which keys of the lane are blocked from the stream's subject
// index, up to keyCacheMax of them. It runs once the lane hands out its first
// delivery, which it does only after whoever read the lane before resolved
// theirs, so every record written before is seen.
func (k *keys) load(ctx context.Context) error {
	info, err := k.q.holds.Info(ctx, jetstream.WithSubjectFilter(k.subject+".*"))
	if err != nil {
		return fmt.Errorf("listing the blocked keys of %s: %w", k.subject, err)
	}
	k.setCount(len(info.State.Subjects))
	limit := k.q.keyCacheMax()
	k.blocked = make(map[uint64]*keyRecord, min(len(info.State.Subjects), limit))
	k.complete = true
	for subj := range info.State.Subjects {
		h, err := strconv.ParseUint(subj[len(k.subject)+1:], 16, 64)
		if err != nil {
			continue
		}
		if len(k.blocked) >= limit {
			k.complete = false
			break
		}
		k.blocked[h] = nil
	}
	k.loaded = true
	return nil
}

// lookup returns the record of a blocked key, nil for a free one.
func (k *keys) lookup(ctx context.Context, h uint64) (*keyRecord, error) {
	if !k.loaded || (!k.complete && len(k.blocked) == 0) {
		if err := k.load(ctx); err != nil {
			return nil, err
		}
	}
	r, ok := k.blocked[h]
	switch {
	case r != nil:
		return r, nil
	case !ok && k.complete:
		return nil, nil
	}
	m, err := k.q.holds.GetLastMsgForSubject(ctx, k.keySubject(h))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		delete(k.blocked, h)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the record of a blocked key: %w", err)
	}
	if r, err = decodeKeyRecord(m.Data); err != nil {
		return nil, err
	}
	k.remember(h, r)
	return r, nil
}

func (k *keys) remember(h uint64, r *keyRecord) {
	if _, ok := k.blocked[h]; ok || len(k.blocked) < k.q.keyCacheMax() {
		k.blocked[h] = r
		return
	}
	k.complete = false
}

// put stores a key's record: the key is blocked, with r its head.
func (k *keys) put(ctx context.Context, h uint64, r *keyRecord) error {
	if _, err := k.q.js.Publish(ctx, k.keySubject(h), encodeKeyRecord(r)); err != nil {
		return fmt.Errorf("storing the head of a blocked key: %w", err)
	}
	k.remember(h, r)
	return nil
}

// free removes a key's record: it is no longer blocked.
func (k *keys) free(ctx context.Context, h uint64) error {
	if err := k.q.holds.Purge(ctx, jetstream.WithPurgeSubject(k.keySubject(h))); err != nil {
		return fmt.Errorf("removing the record of an unblocked key: %w", err)
	}
	delete(k.blocked, h)
	return nil
}

// keyJob is the key side of a job from a keyed lane: head says the job is
// its blocked key's head, so resolving it moves the key on. blocked is
// whether the key is counted as blocked (keys.count) as of this job: at
// first, as head says.
type keyJob struct {
	keys    *keys
	head    bool
	blocked bool
}

// testHookKey runs at each step of parking per key, with the step's name,
// for the tests that kill a process between two steps.
var testHookKey func(step string)

func keyStep(step string) {
	if testHookKey != nil {
		testHookKey(step)
	}
}

// admit decides about a delivery with a key that the lane hands out: true to
// hand it to the caller, false when it was dealt with here (parked behind its
// blocked key, dropped as a leftover copy of a head, or put back after an
// error).
//
//nolint:contextcheck // like a settlement (Job.resolve), it runs on its own deadline.
func (k *keys) admit(j *Job) bool {
	ctx, cancel := resolveContext(context.Background())
	defer cancel()
	k.mu.Lock()
	handled, err := k.decide(ctx, j)
	k.mu.Unlock()
	if err != nil {
		k.q.log.Error(err, "Could not tell whether a delivery's key is blocked; trying again shortly",
			"subject", j.msg.Subject(), "event", j.d.Event.ID)
		_ = j.msg.NakWithDelay(time.Second)
		return false
	}
	return !handled
}

func (k *keys) decide(ctx context.Context, j *Job) (handled bool, err error) {
	d := &j.d
	r, err := k.lookup(ctx, d.KeyHash)
	if err != nil {
		return false, err
	}
	switch {
	case r == nil && !d.KeyHead:
		j.key = &keyJob{keys: k}
		return false, nil
	case r == nil:
		// A copy of a head resolved already (a crash between putting it on
		// the lane and acknowledging what came before).
		return true, k.consume(j)
	case r.is(d) && d.Attempt == r.attempt && d.KeyHead:
		j.key = &keyJob{keys: k, head: true, blocked: true}
		return false, nil
	case r.is(d) && d.Attempt < r.attempt:
		// The head's earlier attempt, back because its process died after
		// storing the record: make sure the retry is scheduled (the same
		// message id as the first time, so at most one).
		next := *d
		next.Attempt, next.Holds, next.KeyHead, next.FirstAttempt = r.attempt, 0, true, r.first
		if err := k.q.publishAt(ctx, &next, r.due); err != nil {
			return false, fmt.Errorf("scheduling attempt %d of a blocked key's head: %w", next.Attempt, err)
		}
		return true, k.consume(j)
	case d.KeyHead:
		return true, k.consume(j)
	}
	return true, k.park(ctx, j)
}

// park moves a delivery of a blocked key to the key's parking subject.
func (k *keys) park(ctx context.Context, j *Job) error {
	d := j.d
	subj := keyParkSubject(&d)
	// Parked already by a process that died before acknowledging it: it is
	// the last one parked, since nothing moves on the lane until then.
	last, err := k.q.deliveries.GetLastMsgForSubject(ctx, subj)
	switch {
	case err == nil:
		if ld, derr := decodeDelivery(last.Data); derr == nil && sameDelivery(&ld, &d) {
			return k.consume(j)
		}
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("reading the parked deliveries of a blocked key: %w", err)
	}
	d.Holds, d.KeyHead = 0, false
	if j.unstarted {
		d.FirstAttempt = time.Time{}
	}
	if _, err := k.q.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: encodeDelivery(&d)}); err != nil {
		return fmt.Errorf("parking a delivery behind its blocked key: %w", err)
	}
	keyStep("parked")
	return k.consume(j)
}

// consume acknowledges a lane message dealt with here.
func (k *keys) consume(j *Job) error {
	if j.lane != nil {
		j.lane.forget()
	}
	return j.msg.Ack()
}

// retry blocks the job's key with the job as its head, due again at t, and
// takes it off the lane so the lane goes on with other keys. The record is
// stored first: a process that dies before the schedule is stored gets this
// message again, sees the record and schedules it then (decide).
func (kj *keyJob) retry(ctx context.Context, j *Job, t time.Time) error {
	k := kj.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	next := j.d
	next.Attempt++
	next.Holds, next.KeyHead = 0, true
	if err := k.put(ctx, j.d.KeyHash, recordOf(&next, next.Attempt, t)); err != nil {
		return err
	}
	k.blocking(kj, true)
	keyStep("retry-recorded")
	if err := k.q.publishAt(ctx, &next, t); err != nil {
		return fmt.Errorf("scheduling attempt %d of a blocked key's head: %w", next.Attempt, err)
	}
	keyStep("retry-scheduled")
	if j.lane != nil {
		j.lane.forget()
	}
	if err := j.msg.Ack(); err != nil {
		return err
	}
	k.q.log.V(1).Info("A key's delivery failed; the key's later deliveries wait behind it while its lane goes on",
		"lane", laneSubject(&j.d), "key", keyToken(j.d.KeyHash), "event", j.d.Event.ID, "attempt", next.Attempt, "due", t)
	return nil
}

// resolved moves a blocked key on once its head is resolved: its first
// parked delivery becomes the head, or, with none, the key is free again.
//
// The order of the steps is what keeps a crash harmless: the new head's copy
// is stored on the lane before the record names it (else a crash would leave
// a record naming a head that is nowhere on the lane), and taken off the
// parking subject only after (else it would be nowhere at all). A crash
// before the record hands the old head out again; after it, the old head is a
// leftover, and the new one, still parked, is skipped as a copy of itself
// when it is resolved in turn.
func (kj *keyJob) resolved(ctx context.Context, j *Job) error {
	k, d := kj.keys, &j.d
	k.mu.Lock()
	defer k.mu.Unlock()
	subj := keyParkSubject(d)
	for {
		m, err := k.q.deliveries.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			if err := k.free(ctx, d.KeyHash); err != nil {
				return err
			}
			k.blocking(kj, false)
			keyStep("freed")
			if err := j.msg.Ack(); err != nil {
				return err
			}
			k.q.log.V(1).Info("A blocked key is free again", "lane", laneSubject(d), "key", keyToken(d.KeyHash))
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the parked deliveries of a blocked key: %w", err)
		}
		nd, err := decodeDelivery(m.Data)
		if err != nil || sameDelivery(&nd, d) {
			if err != nil {
				k.q.log.Error(err, "Dropping an undecodable parked delivery", "subject", subj)
			}
			if err := k.q.deliveries.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("removing a parked delivery of a blocked key: %w", err)
			}
			continue
		}
		nd.KeyHead, nd.Holds = true, 0
		id := deliveryMsgID(&nd) + "/k" + strconv.FormatUint(m.Sequence, 10)
		if _, err := k.q.js.PublishMsg(ctx, &nats.Msg{
			Subject: laneSubject(&nd),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{id}},
			Data:    encodeDelivery(&nd),
		}); err != nil {
			return fmt.Errorf("moving a parked delivery of a blocked key back to its lane: %w", err)
		}
		keyStep("promote-published")
		if err := k.put(ctx, d.KeyHash, recordOf(&nd, nd.Attempt, time.Now())); err != nil {
			return err
		}
		k.blocking(kj, true)
		keyStep("promote-recorded")
		if err := k.q.deliveries.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("removing a parked delivery moved back to its lane: %w", err)
		}
		keyStep("promote-removed")
		return j.msg.Ack()
	}
}
