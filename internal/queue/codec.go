package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Messages are encoded in a small length-prefixed binary format rather than
// JSON. Events are on the hot path (every accepted event is encoded once and
// decoded once, every delivery once per attempt), and JSON would re-validate
// and re-escape the event's payload, which is already JSON, each time;
// the binary form copies it as opaque bytes and decodes it without copying.
// The first byte is a format version so the layout can change without
// misreading messages already stored. codecV1 stored times as UnixNano, 0
// meaning unset, which cannot hold times before 1678 or after 2262 and
// takes the Unix epoch for unset; codecV2 stores seconds and nanoseconds
// apart and round-trips every time.Time exactly. Both are read. codecV3 is
// codecV2 with the event's W3C traceparent after its data; it is written only
// for an event that carries one (tracing on), so without tracing the stored
// form, and what an older dispatcher can read, is unchanged.
const (
	codecV1 = 1
	codecV2 = 3
	codecV3 = 5
)

var errShort = errors.New("message truncated")

type encoder struct {
	b []byte
	// trace writes the event's traceparent (codecV3).
	trace bool
	// legacyTimes writes codecV1 times, only for tests of old data.
	legacyTimes bool
}

func (e *encoder) byte(v byte)      { e.b = append(e.b, v) }
func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(v []byte)   { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) string(v string)  { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }

// time encodes a flag (0: the zero time), the Unix seconds and the
// nanoseconds.
func (e *encoder) time(t time.Time) {
	if e.legacyTimes {
		if t.IsZero() {
			e.varint(0)
			return
		}
		e.varint(t.UnixNano())
		return
	}
	if t.IsZero() {
		e.byte(0)
		return
	}
	e.byte(1)
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond())) //nolint:gosec // G115: Nanosecond is in [0, 1e9)
}

type decoder struct {
	b   []byte
	err error
	// win is one copy of up to stringWindow bytes of the message, which the
	// strings that fall inside it are sliced from: a delivery's six names
	// cost one allocation instead of six. winRem is len(b) when it was made.
	win    string
	winRem int
	// trace reads the event's traceparent (codecV3).
	trace bool
	// legacyTimes reads codecV1 times.
	legacyTimes bool
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns a slice of the message itself: the message buffer is not
// reused by the client, so aliasing saves a copy of every payload.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// stringWindow is how much of a message one string copy covers: more than
// the names before a delivery's data take (subscription, its uid, endpoint,
// namespace, event id and type, each usually well under 64 bytes). A string
// outside the window (a traceparent after the data, a long name) starts a new
// one or, if longer than a window, is copied alone.
const stringWindow = 256

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.fail()
		return ""
	}
	if n == 0 {
		return ""
	}
	size := int(n) //nolint:gosec // G115: n <= len(d.b)
	off := d.winRem - len(d.b)
	if d.win == "" || off+size > len(d.win) {
		if size > stringWindow {
			v := string(d.b[:size])
			d.b = d.b[size:]
			return v
		}
		d.win, d.winRem, off = string(d.b[:min(len(d.b), stringWindow)]), len(d.b), 0
	}
	v := d.win[off : off+size]
	d.b = d.b[size:]
	return v
}

func (d *decoder) time() time.Time {
	if d.legacyTimes {
		v := d.varint()
		if v == 0 {
			return time.Time{}
		}
		return time.Unix(0, v).UTC()
	}
	if d.byte() == 0 {
		return time.Time{}
	}
	sec, nsec := d.varint(), d.uvarint()
	if nsec >= 1e9 {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) int() int { return int(d.varint()) }

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errShort
	}
}

func (d *decoder) version(what string) {
	switch v := d.byte(); {
	case d.err != nil:
	case v == codecV1:
		d.legacyTimes = true
	case v == codecV3:
		d.trace = true
	case v != codecV2:
		d.err = fmt.Errorf("%s: unknown format version %d", what, v)
	}
}

func (e *encoder) event(ev *Event) {
	e.string(ev.Namespace)
	e.string(ev.ID)
	e.string(ev.Type)
	e.time(ev.Time)
	e.bytes(ev.Data)
	if e.trace {
		e.string(ev.TraceParent)
	}
}

// version writes the format version: codecV3 when the event carries a traceparent.
func (e *encoder) version(ev *Event) {
	if ev.TraceParent != "" {
		e.trace = true
		e.byte(codecV3)
		return
	}
	e.byte(codecV2)
}

func (d *decoder) event() Event {
	var ev Event
	ev.Namespace = d.string()
	ev.ID = d.string()
	ev.Type = d.string()
	ev.Time = d.time()
	if data := d.bytes(); len(data) > 0 {
		ev.Data = data
	}
	if d.trace {
		ev.TraceParent = d.string()
	}
	return ev
}

func encodeEvent(ev *Event) []byte {
	e := encoder{b: make([]byte, 0, 32+len(ev.Namespace)+len(ev.ID)+len(ev.Type)+len(ev.Data)+len(ev.TraceParent))}
	e.version(ev)
	e.event(ev)
	return e.b
}

func decodeEvent(b []byte) (Event, error) {
	d := decoder{b: b}
	d.version("event")
	ev := d.event()
	if d.err != nil {
		return Event{}, fmt.Errorf("decoding event: %w", d.err)
	}
	return ev, nil
}

const (
	flagOrdered = 1
	// flagKeyHead marks a keyed lane's copy of a blocked key's head
	// (keypark.go).
	flagKeyHead = 2
	// flagKeyHash says the message ends with Delivery.KeyHash, 8 bytes.
	// The hash goes last, after everything a version without it reads, so
	// that version reads the message as before and ignores it.
	flagKeyHash = 4
)

// laneShift places Delivery.Lane in the flags above the flag bits: a
// version that does not know keyed lanes reads such a delivery as one of the
// subscription's single ordered lane, and a delivery stored before keyed
// lanes reads as lane 0, so no codec version is needed.
const laneShift = 8

func (e *encoder) delivery(dv *Delivery) {
	var flags uint64
	if dv.Ordered {
		flags |= flagOrdered
	}
	if dv.Lane > 0 {
		flags |= uint64(dv.Lane) << laneShift
	}
	if dv.KeyHead {
		flags |= flagKeyHead
	}
	if dv.KeyHash != 0 {
		flags |= flagKeyHash
	}
	e.uvarint(flags)
	e.varint(int64(dv.Attempt))
	e.varint(int64(dv.Holds))
	e.uvarint(dv.Replay)
	e.time(dv.FirstAttempt)
	e.string(dv.Subscription)
	e.string(dv.SubscriptionUID)
	e.string(dv.Endpoint)
	e.event(&dv.Event)
}

// keyHash ends a delivery or dead letter that has one (flagKeyHash).
func (e *encoder) keyHash(dv *Delivery) {
	if dv.KeyHash != 0 {
		e.b = binary.BigEndian.AppendUint64(e.b, dv.KeyHash)
	}
}

// keyHash reads the hash that ends the message if its flags say there is one
// (delivery left KeyHash non-zero for that).
func (d *decoder) keyHash(dv *Delivery) {
	if dv.KeyHash == 0 || d.err != nil {
		return
	}
	if len(d.b) < 8 {
		d.fail()
		return
	}
	dv.KeyHash = binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
}

func (d *decoder) delivery() Delivery {
	var dv Delivery
	flags := d.uvarint()
	dv.Ordered = flags&flagOrdered != 0
	dv.KeyHead = flags&flagKeyHead != 0
	if flags&flagKeyHash != 0 {
		dv.KeyHash = 1 // read by keyHash, at the end of the message
	}
	dv.Lane = int(flags >> laneShift) //nolint:gosec // G115: at most MaxKeyLanes, written by encoder.delivery
	dv.Attempt = d.int()
	dv.Holds = d.int()
	dv.Replay = d.uvarint()
	dv.FirstAttempt = d.time()
	dv.Subscription = d.string()
	dv.SubscriptionUID = d.string()
	dv.Endpoint = d.string()
	dv.Event = d.event()
	return dv
}

func deliverySize(dv *Delivery) int {
	return 72 + len(dv.Subscription) + len(dv.SubscriptionUID) + len(dv.Endpoint) +
		len(dv.Event.Namespace) + len(dv.Event.ID) + len(dv.Event.Type) + len(dv.Event.Data) + len(dv.Event.TraceParent)
}

func encodeDelivery(dv *Delivery) []byte {
	e := encoder{b: make([]byte, 0, deliverySize(dv))}
	e.version(&dv.Event)
	e.delivery(dv)
	e.keyHash(dv)
	return e.b
}

func decodeDelivery(b []byte) (Delivery, error) {
	d := decoder{b: b}
	d.version("delivery")
	dv := d.delivery()
	d.keyHash(&dv)
	if d.err != nil {
		return Delivery{}, fmt.Errorf("decoding delivery: %w", d.err)
	}
	return dv, nil
}

func encodeDead(dv *Delivery, info *DeadInfo) []byte {
	e := encoder{b: make([]byte, 0, deliverySize(dv)+32+len(info.Reason))}
	e.version(&dv.Event)
	e.delivery(dv)
	e.varint(int64(info.StatusCode))
	e.string(info.Reason)
	e.time(info.Time)
	e.keyHash(dv)
	return e.b
}

func decodeDead(b []byte) (Delivery, DeadInfo, error) {
	d := decoder{b: b}
	d.version("dead delivery")
	dv := d.delivery()
	var info DeadInfo
	info.StatusCode = d.int()
	info.Reason = d.string()
	info.Time = d.time()
	d.keyHash(&dv)
	if d.err != nil {
		return Delivery{}, DeadInfo{}, fmt.Errorf("decoding dead delivery: %w", d.err)
	}
	return dv, info, nil
}

// The attempt log is stored in batches (see attempts.go): a version byte
// codecAttemptBatch, the entry count, then each entry length-prefixed, laid
// out as a codecV1 attempt without its version byte. Messages written before
// batching hold one codecV1 attempt; decodeAttempts reads both.
// codecAttemptBatch entries have codecV1 times, codecAttemptBatchV2 ones
// codecV2 times.
const (
	codecAttemptBatch   = 2
	codecAttemptBatchV2 = 4
)

// encodeAttempt is the single-attempt (codecV1) message, no longer written
// but still found in existing data directories.
func encodeAttempt(a *Attempt) []byte {
	e := encoder{b: make([]byte, 0, 48+len(a.Error)+len(a.Response)+len(a.EventID)), legacyTimes: true}
	e.byte(codecV1)
	e.attempt(a)
	return e.b
}

// encodeAttemptEntry is one attempt as it sits in a batch, without version
// byte or length prefix.
func encodeAttemptEntry(a *Attempt) []byte {
	e := encoder{b: make([]byte, 0, 48+len(a.Error)+len(a.Response)+len(a.EventID)+len(a.Headers))}
	e.attempt(a)
	return e.b
}

// attemptBatchSize is the encoded size of a batch of n entries of
// entryBytes bytes in all, length prefixes not included.
func attemptBatchSize(n, entryBytes int) int {
	return 1 + uvarintLen(uint64(n)) + entryBytes //nolint:gosec // G115: n counts entries, never negative
}

// attemptEntryCost is what one entry adds to a batch: its length prefix and
// itself.
func attemptEntryCost(entry []byte) int { return uvarintLen(uint64(len(entry))) + len(entry) }

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// encodeAttemptBatch encodes entries, oldest first, from
// encodeAttemptEntry.
func encodeAttemptBatch(entries [][]byte) []byte {
	size := 0
	for _, en := range entries {
		size += attemptEntryCost(en)
	}
	e := encoder{b: make([]byte, 0, attemptBatchSize(len(entries), size))}
	e.byte(codecAttemptBatchV2)
	e.uvarint(uint64(len(entries)))
	for _, en := range entries {
		e.bytes(en)
	}
	return e.b
}

func (e *encoder) attempt(a *Attempt) {
	e.time(a.Time)
	e.varint(int64(a.Attempt))
	e.varint(int64(a.StatusCode))
	e.varint(int64(a.Latency))
	e.string(a.Error)
	e.string(a.Response)
	// Later fields go at the end of the entry, which is length-prefixed in
	// its batch: older readers stop before them, and entries written before
	// them end here.
	e.string(a.EventID)
	e.string(a.Headers)
}

func (d *decoder) attempt() Attempt {
	var a Attempt
	a.Time = d.time()
	a.Attempt = d.int()
	a.StatusCode = d.int()
	a.Latency = time.Duration(d.varint())
	a.Error = d.string()
	a.Response = d.string()
	if len(d.b) > 0 {
		a.EventID = d.string()
	}
	if len(d.b) > 0 {
		a.Headers = d.string()
	}
	return a
}

// decodeAttempt decodes a single-attempt (codecV1) message.
func decodeAttempt(b []byte) (Attempt, error) {
	d := decoder{b: b}
	d.version("attempt")
	a := d.attempt()
	if d.err != nil {
		return Attempt{}, fmt.Errorf("decoding attempt: %w", d.err)
	}
	return a, nil
}

// decodeAttemptEntry decodes one entry of a batch (codecAttemptBatchV2).
func decodeAttemptEntry(b []byte) (Attempt, error) {
	return decodeEntry(b, false)
}

func decodeEntry(b []byte, legacyTimes bool) (Attempt, error) {
	d := decoder{b: b, legacyTimes: legacyTimes}
	a := d.attempt()
	if d.err != nil {
		return Attempt{}, fmt.Errorf("decoding attempt: %w", d.err)
	}
	return a, nil
}

// decodeAttempts decodes an attempt-log message of either format, oldest
// first, appending to out. On error it returns out unchanged.
func decodeAttempts(out []Attempt, b []byte) ([]Attempt, error) {
	if len(b) > 0 && b[0] == codecV1 {
		a, err := decodeAttempt(b)
		if err != nil {
			return out, err
		}
		return append(out, a), nil
	}
	d := decoder{b: b}
	v := d.byte()
	if d.err == nil && v != codecAttemptBatch && v != codecAttemptBatchV2 {
		return out, fmt.Errorf("decoding attempt batch: unknown format version %d", v)
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) { // each entry takes a byte at least
		d.fail()
	}
	if d.err != nil {
		return out, fmt.Errorf("decoding attempt batch: %w", d.err)
	}
	start := len(out)
	out = slices.Grow(out, int(n)) //nolint:gosec // G115: n <= len(d.b), checked above
	for range n {
		a, err := decodeEntry(d.bytes(), v == codecAttemptBatch)
		if d.err != nil {
			err = d.err
		}
		if err != nil {
			return out[:start], fmt.Errorf("decoding attempt batch: %w", err)
		}
		out = append(out, a)
	}
	if len(d.b) != 0 {
		return out[:start], fmt.Errorf("decoding attempt batch: %d trailing bytes", len(d.b))
	}
	return out, nil
}

// encodeHolds stores the bookkeeping of the ordered delivery at stream
// sequence seq: its holds, the attempts it has spent (failed and retried),
// and when its first attempt was made. The attempts come last: records
// written before they were kept end after the time.
func encodeHolds(r laneRecord) []byte {
	e := encoder{}
	e.byte(codecV2)
	e.uvarint(r.seq)
	e.varint(int64(r.holds))
	e.time(r.first)
	e.varint(int64(r.spent))
	return e.b
}

// laneRecord is what is stored about the one message in flight on an
// ordered lane. spent is -1 in a record written before attempts were
// stored: the attempts are then the server's delivery count less the holds.
type laneRecord struct {
	seq   uint64
	holds int
	spent int
	first time.Time
}

func decodeHolds(b []byte) (laneRecord, error) {
	d := decoder{b: b}
	d.version("lane holds")
	r := laneRecord{seq: d.uvarint(), holds: d.int(), first: d.time(), spent: -1}
	if d.err == nil && len(d.b) > 0 {
		r.spent = d.int()
	}
	return r, d.err
}
