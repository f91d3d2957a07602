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

const (
	lateAckChildEnv = "HOOKLINE_LATE_ACK_CHILD"
	lateAckCloseEnv = "HOOKLINE_LATE_ACK_CLOSE"
)

func init() {
	if dir := os.Getenv(lateAckChildEnv); dir != "" {
		lateAckChild(dir, os.Getenv(lateAckCloseEnv) != "")
		os.Exit(1)
	}
}

// lateAckChild delivers the events stored in dir with every acknowledgement
// held (an hour's delay, fewer messages than a batch), prints "delivered"
// once all of them are, and then, with closeFirst, closes the queue and
// prints "closed".
func lateAckChild(dir string, closeFirst bool) {
	q, err := Open(context.Background(), testConfig(dir), logr.Discard())
	if err != nil {
		fmt.Println("error", err)
		return
	}
	q.acks = newLateAcks(logr.Discard(), time.Hour)
	fmt.Println("started")
	ctx := context.Background()
	src, err := q.OpenDeliveries(ctx, 256)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	go func() { _ = runFanout(ctx, q, toEndpoint("billing", "erp")) }()
	n := 0
	for j := range src.Jobs() {
		_ = j.Done()
		if n++; n == lateAckEvents {
			break
		}
	}
	fmt.Println("delivered")
	if closeFirst {
		q.Close()
		fmt.Println("closed")
	}
	select {}
}

const lateAckEvents = 100

// A dispatcher killed (SIGKILL) while it holds acknowledgements loses
// nothing: every message it had not acknowledged comes back. Each delivery
// it had sent is sent again (at least once, the same webhook-id), and may be
// sent twice: its event comes back too, and its fan-out, repeated, stores the
// delivery again when it groups it with other events than the first time did
// (a group's message id is its members'). Closed first, it sends what it
// holds, and nothing comes back.
func TestLateAcksSIGKILL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		closeFirst bool
	}{{"killed holding them", false}, {"closed then killed", true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			seedEvents(t, testConfig(dir), lateAckEvents)
			env := []string{lateAckChildEnv + "=" + dir}
			if c.closeFirst {
				env = append(env, lateAckCloseEnv+"=1")
			}
			cmd, lines := startTestChild(t, env, "started")
			want := []string{"delivered"}
			if c.closeFirst {
				want = append(want, "closed")
			}
			for _, w := range want {
				if !lines.Scan() || lines.Text() != w {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					t.Fatalf("child: %q, want %q", lines.Text(), w)
				}
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()

			q := openTest(t, testConfig(dir))
			evs, dls := streamMsgs(t, q, streamEvents), streamMsgs(t, q, streamDeliveries)
			t.Logf("after the child: %d events and %d delivery messages stored", evs, dls)
			seen := map[string]int{}
			redeliver(t, q, 4, seen)
			again := 0
			for _, n := range seen {
				again += n
			}
			t.Logf("%d deliveries sent again after the restart", again)
			if !c.closeFirst {
				for i := range lateAckEvents {
					if n := seen[fmt.Sprintf("e%d", i)]; n < 1 || n > 2 {
						t.Errorf("event e%d delivered %d times after the restart, want once or twice", i, n)
					}
				}
			} else if again != 0 {
				t.Errorf("%d deliveries sent again after a close, want none", again)
			}
		})
	}
}
