package queue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go/jetstream"
)

// ackMsg is a message that counts its acknowledgements; release, when set,
// holds each Ack until it is closed.
type ackMsg struct {
	jetstream.Msg
	acks    atomic.Int32
	entered atomic.Bool
	release chan struct{}
}

func (m *ackMsg) Ack() error {
	m.entered.Store(true)
	if m.release != nil {
		<-m.release
	}
	m.acks.Add(1)
	return nil
}

func acked(ms []*ackMsg) (n int) {
	for _, m := range ms {
		n += int(m.acks.Load())
	}
	return n
}

func TestLateAcksHeldUntilCloseOrFull(t *testing.T) {
	t.Parallel()
	// An hour's delay: only a full batch or close sends anything.
	a := newLateAcks(logr.Discard(), time.Hour)
	ms := make([]*ackMsg, ackBatchMax+3)
	for i := range ms {
		ms[i] = &ackMsg{}
	}
	for _, m := range ms[:ackBatchMax-1] {
		if err := a.ack(m); err != nil {
			t.Fatal(err)
		}
	}
	if n := acked(ms); n != 0 {
		t.Fatalf("%d acknowledged before the delay or a full batch", n)
	}
	_ = a.ack(ms[ackBatchMax-1])
	if n := acked(ms); n != ackBatchMax {
		t.Fatalf("a full batch sent %d acknowledgements, want %d", n, ackBatchMax)
	}
	for _, m := range ms[ackBatchMax:] {
		_ = a.ack(m)
	}
	if n := acked(ms); n != ackBatchMax {
		t.Fatalf("%d acknowledged, want the full batch's %d only", n, ackBatchMax)
	}
	a.close()
	for i, m := range ms {
		if n := m.acks.Load(); n != 1 {
			t.Fatalf("message %d acknowledged %d times after close, want once", i, n)
		}
	}
	// After close, nothing waits.
	late := &ackMsg{}
	_ = a.ack(late)
	if late.acks.Load() != 1 {
		t.Fatal("an acknowledgement after close was held")
	}
}

func TestLateAcksSentAfterTheDelay(t *testing.T) {
	t.Parallel()
	a := newLateAcks(logr.Discard(), 5*time.Millisecond)
	t.Cleanup(a.close)
	for round := range 3 {
		ms := []*ackMsg{{}, {}, {}}
		for _, m := range ms {
			_ = a.ack(m)
		}
		eventually(t, fmt.Sprintf("round %d acknowledged", round), func() bool { return acked(ms) == len(ms) })
	}
}

// close must not return while a batch is being sent: the connection closes
// right after it.
func TestLateAcksCloseWaitsForABatchBeingSent(t *testing.T) {
	t.Parallel()
	a := newLateAcks(logr.Discard(), time.Hour)
	release := make(chan struct{})
	ms := make([]*ackMsg, ackBatchMax)
	for i := range ms {
		ms[i] = &ackMsg{release: release}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, m := range ms {
			_ = a.ack(m) // the last one sends the batch, held by release
		}
	})
	eventually(t, "the full batch being sent", ms[0].entered.Load)
	closed := make(chan struct{})
	go func() {
		a.close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("close returned while a batch was being sent")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-closed
	wg.Wait()
	if n := acked(ms); n != len(ms) {
		t.Fatalf("%d acknowledged, want %d", n, len(ms))
	}
}

// The point of acknowledging late: events handled one after another, each
// delivered before the next comes, as at a steady low rate, no longer make
// the file store replace the work queues' last block for each of them.
// Acknowledged at once, the 200 events below went through 166-201 block
// files in each stream; late, 3-7, as a block file lasts until a pause in
// the flow.
func TestLateAcksKeepTheWorkQueuesBlocks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q := openTest(t, testConfig(dir))
	stop := run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })
	const events = 200
	sent := make(chan struct{}, events)
	stopDeliveries := run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 4, func(_ context.Context, j *Job) {
			if err := j.Done(); err != nil {
				t.Error(err)
			}
			sent <- struct{}{}
		})
	})
	for i := range events {
		publish(t, q, testEvent("team-a", fmt.Sprintf("e%d", i)))
		select {
		case <-sent:
		case <-time.After(30 * time.Second):
			t.Fatalf("event %d not delivered", i)
		}
	}
	eventually(t, "both work queues empty", func() bool {
		return streamMsgs(t, q, streamEvents) == 0 && streamMsgs(t, q, streamDeliveries) == 0
	})
	stopDeliveries()
	stop()
	for _, stream := range []string{streamEvents, streamDeliveries} {
		n := lastBlock(t, dir, stream)
		t.Logf("%s: %d events went through %d block files", stream, events, n)
		if n > events/2 {
			t.Errorf("%s went through %d block files for %d events; acknowledged late it should keep its block while events keep coming", stream, n, events)
		}
	}
}

// lastBlock is the highest block file number the stream's store has used.
func lastBlock(t *testing.T, dataDir, stream string) int {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "msgs" && filepath.Base(filepath.Dir(path)) == stream {
			dirs = append(dirs, path)
		}
		return err
	})
	if err != nil || len(dirs) != 1 {
		t.Fatalf("finding the store of %s: %v (%d found)", stream, err, len(dirs))
	}
	entries, err := os.ReadDir(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	last := 0
	for _, e := range entries {
		if n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".blk")); err == nil && strings.HasSuffix(e.Name(), ".blk") {
			last = max(last, n)
		}
	}
	if last == 0 {
		t.Fatalf("no block file in %s", dirs[0])
	}
	return last
}
