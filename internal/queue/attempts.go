package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// Error is cut to MaxErrorBytes.
	Error string
	// Response is the start of the response body, cut to MaxResponseBytes.
	Response string
	// EventID is the id of the event the attempt delivered (empty in entries
	// stored before it was recorded).
	EventID string
	// Headers are the request's headers as the dispatcher recorded them:
	// "Name: value" lines with every credential and signature value masked
	// (delivery.Result.Headers), cut to MaxHeaderBytes on a line boundary.
	// Empty in entries stored before headers were recorded.
	Headers string
}

// Equal reports whether a and b are the same attempt-log entry.
func (a Attempt) Equal(b Attempt) bool {
	return a.Time.Equal(b.Time) && a.Attempt == b.Attempt && a.StatusCode == b.StatusCode &&
		a.Latency == b.Latency && a.Error == b.Error && a.Response == b.Response && a.EventID == b.EventID &&
		a.Headers == b.Headers
}

// MaxResponseBytes is how much of a response body the attempt log keeps.
const MaxResponseBytes = 20 << 10

// MaxErrorBytes is how much of an attempt's error the attempt log keeps. With
// MaxResponseBytes and MaxHeaderBytes it bounds an entry, which the log's
// size bound needs.
const MaxErrorBytes = 4 << 10

// MaxHeaderBytes is how much of an attempt's request headers the attempt log
// keeps: hookline's own take about 300 bytes, the rest is room for an
// endpoint's configured headers.
const MaxHeaderBytes = 4 << 10

// The attempt log is batched. Writing one message per attempt made it one of
// the three stream writes of every delivery; instead RecordAttempt only
// appends to an in-memory buffer per subscription, and a flusher publishes
// each subscription's buffer as one message:
//
//   - every attemptFlushEvery, or as soon as a subscription has
//     attemptBatchEntries entries or another entry would take its batch past
//     attemptBatchBytes;
//   - a batch holds at most attemptBatchEntries entries and attemptBatchBytes
//     bytes (an entry is at most MaxResponseBytes+MaxErrorBytes+MaxHeaderBytes
//     and a little, so any entry fits);
//   - the buffer holds at most attemptBufferBytes in all (a stalled server);
//     past it the oldest buffered entries are dropped and counted
//     (DroppedAttempts).
//
// The stream keeps MaxMsgsPerSubject = Config.AttemptLog messages per
// subscription, as it did when a message was one attempt. A batch holds one
// attempt at least (a quiet subscription writes one-entry batches), so fewer
// messages could not promise the last AttemptLog attempts; RecentAttempts
// trims to AttemptLog. The worst case per subscription is therefore
// AttemptLog batches of attemptBatchBytes: 100 × 64 KiB = 6.4 MiB with the
// defaults (it was 100 entries of up to ~24 KiB, 2.4 MiB, before), and
// RecentAttempts reads at most AttemptLog messages, as before.
//
// A crash loses what is buffered: at most the last attemptFlushEvery of
// attempt-log entries. Deliveries are not affected. Close flushes.
const (
	attemptFlushEvery   = 250 * time.Millisecond
	attemptBatchEntries = 100
	attemptBatchBytes   = 64 << 10
	attemptBufferBytes  = 4 << 20
	// attemptEntryOverhead is the buffer's bookkeeping per entry, counted
	// against attemptBufferBytes so that many small entries are bounded too.
	attemptEntryOverhead = 64
	// attemptFlushStall is how long the flusher waits for room in the
	// publish window. It is off the delivery path, so it can wait longer
	// than a delivery would; meanwhile new entries stay buffered.
	attemptFlushStall = time.Second
)

var errAttemptLogClosed = errors.New("the queue is closed")

// RecordAttempt adds an attempt to the subscription's log. It does not wait:
// the attempt is buffered and stored with others of the subscription within
// about 250 ms (see attemptFlushEvery), so a crash can lose the last 250 ms
// of the attempt log, and never a delivery. Storing failures are logged and
// counted in DroppedAttempts. The log keeps the most recent Config.AttemptLog
// entries per subscription. It fails only after Close.
func (q *Queue) RecordAttempt(ctx context.Context, sub SubscriptionID, a Attempt) error {
	a.Response = cutUTF8(a.Response, MaxResponseBytes)
	a.Error = cutUTF8(a.Error, MaxErrorBytes)
	a.Headers = cutLines(a.Headers, MaxHeaderBytes)
	if err := q.alog.add(q, attemptSubject(sub), encodeAttemptEntry(&a)); err != nil {
		return fmt.Errorf("recording an attempt for %s: %w", sub, err)
	}
	return nil
}

// cutUTF8 cuts s to at most n bytes on a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// cutLines cuts s, lines ending in '\n', to its whole lines within n bytes.
func cutLines(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:strings.LastIndexByte(s[:n], '\n')+1]
}

// DroppedAttempts counts attempt-log entries recorded but never stored:
// dropped from a full buffer or lost to a failed publish.
func (q *Queue) DroppedAttempts() uint64 { return q.alog.dropped.Load() }

// RecentAttempts returns up to limit of the subscription's latest attempts,
// newest first, at most Config.AttemptLog. Attempts this process recorded and
// has not stored yet are included.
func (q *Queue) RecentAttempts(ctx context.Context, sub SubscriptionID, limit int) ([]Attempt, error) {
	limit = min(limit, q.cfg.AttemptLog)
	if limit <= 0 {
		return nil, nil
	}
	subject := attemptSubject(sub)
	// The log is bounded per subject, so reading all of it is cheap; the
	// server offers no reverse read.
	//
	// Entries this process has not stored yet (buffered, or published and
	// not acknowledged) are taken before the stream is read: each is then
	// either in what the read returns or in this list, and the ones in both
	// are returned once. So every attempt recorded before the call is in the
	// answer, and a later read never loses one an earlier read showed.
	var unstored []Attempt
	for _, e := range q.alog.buffered(subject) {
		a, err := decodeAttemptEntry(e)
		if err != nil { // cannot happen: encoded by this process
			return nil, err
		}
		unstored = append(unstored, a)
	}
	var out []Attempt
	keep := func() {
		if len(out) > 2*limit {
			out = append([]Attempt(nil), out[len(out)-limit:]...)
		}
	}
	err := scan(ctx, q.attempts, subject, time.Time{}, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		n := len(out)
		var err error
		if out, err = decodeAttempts(out, m.Data()); err != nil {
			q.log.Error(err, "Skipping an undecodable attempt-log message", "seq", md.Sequence.Stream)
		}
		for _, a := range out[n:] {
			if i := slices.IndexFunc(unstored, a.Equal); i >= 0 {
				unstored = slices.Delete(unstored, i, i+1)
			}
		}
		keep()
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading attempt log of %s: %w", sub, err)
	}
	for _, a := range unstored {
		out = append(out, a)
		keep()
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	slices.Reverse(out)
	return out, nil
}

// attemptLog is the attempt buffer and its flusher. The zero value is ready;
// the flusher starts with the first attempt.
type attemptLog struct {
	mu   sync.Mutex
	subs map[string]*attemptBuf
	// order is the arrival order of the buffered entries, for dropping the
	// oldest. Entries taken by the flusher leave stale references, skipped
	// when met and cleared when the whole buffer is taken.
	order   []attemptRef
	due     []string // subjects with a full batch
	bytes   int      // counted against attemptBufferBytes
	seq     uint64
	closed  bool
	running bool
	// publishing is set while the flusher publishes what it took.
	publishing bool
	// inflight holds, per subject, the entries published and not yet
	// acknowledged, oldest first, so readers see them until they are stored.
	inflight map[string][]inflightAttempt
	flights  uint64

	kick, stop, done chan struct{}

	dropped       atomic.Uint64
	droppedLogged uint64 // flusher only
}

type attemptBuf struct {
	entries []bufferedAttempt // oldest first
	bytes   int               // sum of attemptEntryCost
	due     bool
}

type bufferedAttempt struct {
	seq   uint64
	entry []byte
}

type inflightAttempt struct {
	flight uint64
	entry  []byte
}

type attemptRef struct {
	subject string
	seq     uint64
}

func (l *attemptLog) add(q *Queue, subject string, entry []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errAttemptLogClosed
	}
	if !l.running {
		l.running = true
		l.subs = make(map[string]*attemptBuf)
		l.kick = make(chan struct{}, 1)
		l.stop = make(chan struct{})
		l.done = make(chan struct{})
		go l.run(q)
	}
	b := l.subs[subject]
	if b == nil {
		b = &attemptBuf{}
		l.subs[subject] = b
	}
	l.seq++
	b.entries = append(b.entries, bufferedAttempt{seq: l.seq, entry: entry})
	cost := attemptEntryCost(entry)
	b.bytes += cost
	l.bytes += cost + attemptEntryOverhead
	l.order = append(l.order, attemptRef{subject: subject, seq: l.seq})
	if !b.due && (len(b.entries) >= attemptBatchEntries ||
		attemptBatchSize(len(b.entries), b.bytes) > attemptBatchBytes) {
		b.due = true
		l.due = append(l.due, subject)
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	for l.bytes > attemptBufferBytes && l.dropOldest() {
	}
	return nil
}

// dropOldest drops the oldest buffered entry, if there is one.
func (l *attemptLog) dropOldest() bool {
	for len(l.order) > 0 {
		r := l.order[0]
		l.order = l.order[1:]
		b := l.subs[r.subject]
		// Older entries have been dropped or taken, so the oldest entry left
		// is never older than r.
		if b == nil || len(b.entries) == 0 || b.entries[0].seq != r.seq {
			continue
		}
		e := b.entries[0].entry
		b.entries[0] = bufferedAttempt{}
		b.entries = b.entries[1:]
		b.bytes -= attemptEntryCost(e)
		l.bytes -= attemptEntryCost(e) + attemptEntryOverhead
		if len(b.entries) == 0 {
			delete(l.subs, r.subject)
		}
		l.dropped.Add(1)
		return true
	}
	return false
}

// buffered returns the subject's entries not known to be stored, oldest
// first: those published and not yet acknowledged, then the buffered ones.
func (l *attemptLog) buffered(subject string) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][]byte
	for _, e := range l.inflight[subject] {
		out = append(out, e.entry)
	}
	if b := l.subs[subject]; b != nil {
		for _, e := range b.entries {
			out = append(out, e.entry)
		}
	}
	return out
}

// landed forgets the entries of flight id: stored, or given up on.
func (l *attemptLog) landed(id uint64, subjects []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, subject := range subjects {
		es := slices.DeleteFunc(l.inflight[subject], func(e inflightAttempt) bool { return e.flight == id })
		if len(es) == 0 {
			delete(l.inflight, subject)
		} else {
			l.inflight[subject] = es
		}
	}
}

// idle reports whether the subject has nothing buffered and the flusher is
// not publishing; what was published may not be stored yet.
func (l *attemptLog) idle(subject string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.subs[subject] == nil && len(l.inflight[subject]) == 0 && !l.publishing
}

// forget drops the subject's buffered entries, for a purge.
func (l *attemptLog) forget(subject string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.subs[subject]; b != nil {
		for _, e := range b.entries {
			l.bytes -= attemptEntryCost(e.entry) + attemptEntryOverhead
		}
		delete(l.subs, subject)
	}
	delete(l.inflight, subject)
}

// close stores what is buffered and stops the flusher. Later attempts are
// refused.
func (l *attemptLog) close() {
	l.mu.Lock()
	l.closed = true
	running := l.running
	l.mu.Unlock()
	if running {
		close(l.stop)
		<-l.done
	}
}

func (l *attemptLog) run(q *Queue) {
	defer close(l.done)
	t := time.NewTicker(attemptFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.flush(q, true)
			// Close drains the connection next, which does not wait for
			// acknowledgements; wait here so the last batches are stored.
			select {
			case <-q.ajs.PublishAsyncComplete():
			case <-time.After(shortWait):
				q.log.Error(nil, "Timed out storing the last attempt-log batches")
			}
			return
		case <-t.C:
			l.flush(q, true)
		case <-l.kick:
			l.flush(q, false)
		}
	}
}

type attemptBatch struct {
	subject string
	entries [][]byte
}

// flush publishes every buffered entry (all) or the full batches only.
func (l *attemptLog) flush(q *Queue, all bool) {
	var batches []attemptBatch
	l.mu.Lock()
	if all {
		for subject, b := range l.subs {
			batches = cutAttemptBatches(batches, subject, b.entries, true)
		}
		clear(l.subs)
		if cap(l.order) > 4096 {
			l.order = nil
		} else {
			clear(l.order)
			l.order = l.order[:0]
		}
		l.bytes = 0
	} else {
		for _, subject := range l.due {
			b := l.subs[subject]
			if b == nil || !b.due {
				continue
			}
			b.due = false
			n := len(batches)
			batches = cutAttemptBatches(batches, subject, b.entries, false)
			taken := 0
			for _, bt := range batches[n:] {
				taken += len(bt.entries)
			}
			for _, e := range b.entries[:taken] {
				b.bytes -= attemptEntryCost(e.entry)
				l.bytes -= attemptEntryCost(e.entry) + attemptEntryOverhead
			}
			clear(b.entries[:taken])
			b.entries = b.entries[taken:]
			if len(b.entries) == 0 {
				delete(l.subs, subject)
			}
		}
	}
	clear(l.due)
	l.due = l.due[:0]
	l.publishing = len(batches) > 0
	l.flights++
	flight := l.flights
	subjects := make([]string, 0, len(batches))
	if len(batches) > 0 && l.inflight == nil {
		l.inflight = make(map[string][]inflightAttempt)
	}
	for _, bt := range batches {
		if !slices.Contains(subjects, bt.subject) {
			subjects = append(subjects, bt.subject)
		}
		for _, e := range bt.entries {
			l.inflight[bt.subject] = append(l.inflight[bt.subject], inflightAttempt{flight: flight, entry: e})
		}
	}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.publishing = false
		l.mu.Unlock()
	}()

	var failed uint64
	var firstErr error
	acks := make([]jetstream.PubAckFuture, 0, len(batches))
	for _, bt := range batches {
		// Publishes on one connection are stored in order, so batches of a
		// subject stay in order too.
		ack, err := q.ajs.PublishMsgAsync(&nats.Msg{Subject: bt.subject, Data: encodeAttemptBatch(bt.entries)},
			jetstream.WithStallWait(attemptFlushStall))
		if err != nil {
			failed += uint64(len(bt.entries))
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		acks = append(acks, ack)
	}
	if len(batches) > 0 {
		go l.awaitStored(q, flight, subjects, acks)
	}
	if failed > 0 {
		l.dropped.Add(failed)
		l.droppedLogged += failed
		q.log.Error(firstErr, "Recording delivery attempts failed", "attempts", failed)
	}
	if d := l.dropped.Load(); d != l.droppedLogged {
		q.log.Info("Dropped delivery attempts from a full attempt-log buffer",
			"dropped", d-l.droppedLogged, "bufferBytes", attemptBufferBytes)
		l.droppedLogged = d
	}
}

// awaitStored keeps a flight's entries visible to readers until the server
// has answered for all of its batches (or a minute has passed: the publish
// is then lost with the connection, and the entries with it).
func (l *attemptLog) awaitStored(q *Queue, flight uint64, subjects []string, acks []jetstream.PubAckFuture) {
	defer l.landed(flight, subjects)
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for _, ack := range acks {
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			q.log.Error(err, "Storing an attempt-log batch failed; its attempts are lost", "subject", ack.Msg().Subject)
		case <-timeout.C:
			q.log.Error(nil, "No answer for attempt-log batches within a minute; their attempts may be lost")
			return
		}
	}
}

// cutAttemptBatches appends the entries' batches to batches: the first ones
// as full as the limits allow. With all false it leaves out the last batch
// unless it is full.
func cutAttemptBatches(batches []attemptBatch, subject string, entries []bufferedAttempt, all bool) []attemptBatch {
	var cur [][]byte
	size := 0
	for _, e := range entries {
		cost := attemptEntryCost(e.entry)
		if len(cur) > 0 && attemptBatchSize(len(cur)+1, size+cost) > attemptBatchBytes {
			batches = append(batches, attemptBatch{subject: subject, entries: cur})
			cur, size = nil, 0
		}
		cur = append(cur, e.entry)
		size += cost
		if len(cur) == attemptBatchEntries {
			batches = append(batches, attemptBatch{subject: subject, entries: cur})
			cur, size = nil, 0
		}
	}
	if len(cur) > 0 && all {
		batches = append(batches, attemptBatch{subject: subject, entries: cur})
	}
	return batches
}
