package queue

import (
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go/jetstream"
)

// Acknowledgements a moment late. An acknowledgement of a work-queue message
// removes it, and when that empties the stream's last block the file store
// replaces the block: a new file, a tombstone and an unlink. At a steady
// 1,000 events a second the work queues are drained as fast as they fill, so
// that happened for nearly every message and took about a third of the
// dispatcher's CPU (docs/benchmarks.md, "Acknowledgements a moment late").
// Held back for ackDelay, the acknowledgements of messages already handled
// leave a few messages in the stream, so its last block only empties when
// the flow stops, and the blocks behind it go whole when they are done.
//
// Only messages whose work is finished are acknowledged late: an event whose
// deliveries are stored, a delivery sent or dropped. What a crash in the
// delay costs is what a crash before any acknowledgement costs: the message
// comes back, a delivery is sent again with the same webhook-id, and an
// event's fan-out is repeated, which stores its deliveries again only when
// it groups them differently (a group's message id is its members'), so a
// delivery can come up to twice more (TestLateAcksSIGKILL). Nothing is lost.
// Close sends every acknowledgement held, so a shutdown repeats nothing.
// Ordered lanes are acknowledged at once: a lane hands out its next delivery
// only after the acknowledgement.
const (
	// ackDelay is how long an acknowledgement waits at most. Longer than the
	// time between two events at the rates where the block churn costs
	// (about 50 a second and up), far shorter than any lease.
	ackDelay = 20 * time.Millisecond
	// ackBatchMax sends the held acknowledgements at once when this many
	// wait, so a busy queue does not hold thousands of messages handed out.
	ackBatchMax = 256
)

// lateAcks holds acknowledgements and sends them together, ackDelay after the
// first of them or when ackBatchMax wait.
type lateAcks struct {
	log   logr.Logger
	delay time.Duration

	mu      sync.Mutex
	pending []jetstream.Msg
	timer   *time.Timer
	closed  bool
	// sending counts batches being sent, for close to wait on: the
	// connection must not close under them.
	sending sync.WaitGroup
}

func newLateAcks(log logr.Logger, delay time.Duration) *lateAcks {
	a := &lateAcks{log: log, delay: delay}
	a.timer = time.AfterFunc(time.Hour, a.flush)
	a.timer.Stop()
	return a
}

// ack acknowledges m within the delay. Once closed, it acknowledges at once
// and returns the error.
func (a *lateAcks) ack(m jetstream.Msg) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return m.Ack()
	}
	a.pending = append(a.pending, m)
	switch len(a.pending) {
	case 1:
		a.timer.Reset(a.delay)
	case ackBatchMax:
		batch := a.take()
		a.mu.Unlock()
		a.send(batch)
		return nil
	}
	a.mu.Unlock()
	return nil
}

// take empties pending; a.mu is held. A batch it returns must be sent.
func (a *lateAcks) take() []jetstream.Msg {
	batch := a.pending
	a.pending = nil
	a.timer.Stop()
	if len(batch) > 0 {
		a.sending.Add(1)
	}
	return batch
}

func (a *lateAcks) flush() {
	a.mu.Lock()
	batch := a.take()
	a.mu.Unlock()
	a.send(batch)
}

// send acknowledges the batch. An acknowledgement that fails leaves its
// message to come back when its lease runs out, as a lost one does.
func (a *lateAcks) send(batch []jetstream.Msg) {
	if len(batch) == 0 {
		return
	}
	defer a.sending.Done()
	var failed int
	var last error
	for _, m := range batch {
		if err := m.Ack(); err != nil {
			failed, last = failed+1, err
		}
	}
	if failed > 0 {
		a.log.Error(last, "Acknowledging handled messages failed; they come back when their lease runs out and are handled again", "messages", failed)
	}
}

// close sends what is held, waits for batches being sent, and makes every
// later ack immediate.
func (a *lateAcks) close() {
	a.mu.Lock()
	a.closed = true
	batch := a.take()
	a.mu.Unlock()
	a.send(batch)
	a.sending.Wait()
}
