package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func alwaysQueue(t *testing.T, dir string) *Queue {
	t.Helper()
	cfg := testConfig(dir)
	cfg.Sync = SyncAlways
	q := openTest(t, cfg)
	if q.group == nil {
		t.Fatal("no group commit under SyncAlways")
	}
	return q
}

func commitNow(q *Queue, evs ...Event) []*commitReq {
	batch := make([]*commitReq, len(evs))
	for i := range evs {
		batch[i] = &commitReq{msg: eventMsg(&evs[i]), done: make(chan struct{})}
	}
	q.group.commit(context.Background(), batch)
	return batch
}

// A batch is stored whole, with consecutive sequences; a batch the server
// refuses because it repeats a stored id is published event by event, and
// each caller gets its own answer. A group too small to repay an atomic
// batch (groupCommitAtomicMin) is published event by event from the start,
// with the same answers.
func TestGroupCommitBatches(t *testing.T) {
	t.Parallel()
	for _, size := range []int{3, groupCommitAtomicMin, 40} {
		t.Run(fmt.Sprintf("%d events", size), func(t *testing.T) {
			t.Parallel()
			q := alwaysQueue(t, t.TempDir())
			evs := make([]Event, size)
			for i := range evs {
				evs[i] = testEvent("team-a", fmt.Sprintf("e%d", i))
			}
			first := commitNow(q, evs...)
			for i, r := range first {
				if r.err != nil || r.res.Duplicate {
					t.Fatalf("event %d: %+v, %v", i, r.res, r.err)
				}
				if r.res.Seq != first[0].res.Seq+uint64(i) {
					t.Errorf("event %d stored at %d, want %d", i, r.res.Seq, first[0].res.Seq+uint64(i))
				}
			}

			// The same size again, with one repeat in it.
			again := make([]Event, size)
			again[0] = testEvent("team-a", "e1")
			for i := 1; i < size; i++ {
				again[i] = testEvent("team-a", fmt.Sprintf("n%d", i))
			}
			rs := commitNow(q, again...)
			if r := rs[0]; r.err != nil || !r.res.Duplicate || r.res.Seq != first[1].res.Seq {
				t.Errorf("repeated e1: %+v, %v; want a duplicate of seq %d", r.res, r.err, first[1].res.Seq)
			}
			for i, r := range rs[1:] {
				if r.err != nil || r.res.Duplicate {
					t.Errorf("new n%d beside a repeat: %+v, %v; want it stored", i+1, r.res, r.err)
				}
			}
			if n := streamMsgs(t, q, streamEvents); n != uint64(2*size-1) {
				t.Errorf("%d events stored, want %d", n, 2*size-1)
			}
		})
	}
}

// Concurrent single events, each published twice: every id is stored once,
// and both publishes of it report the same sequence.
func TestGroupCommitConcurrent(t *testing.T) {
	t.Parallel()
	q := alwaysQueue(t, t.TempDir())
	const ids, callers = 600, 48
	var mu sync.Mutex
	results := map[string][]PublishResult{}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := c; i < 2*ids; i += callers {
				id := fmt.Sprintf("e%d", i%ids)
				res, err := q.PublishEvent(context.Background(), testEvent("team-a", id))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				results[id] = append(results[id], res)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for id, rs := range results {
		stored := 0
		for _, r := range rs {
			if !r.Duplicate {
				stored++
			}
		}
		if len(rs) != 2 || stored != 1 || rs[0].Seq != rs[1].Seq {
			t.Errorf("%s: %+v; want two answers, one stored, one duplicate, same sequence", id, rs)
		}
	}
	if n := streamMsgs(t, q, streamEvents); n != ids {
		t.Errorf("%d events stored, want %d", n, ids)
	}
}

// groupChildEnv makes the test binary run groupChild instead of the tests:
// it publishes single events from 32 goroutines under SyncAlways into the
// queue in $HOOKLINE_GROUP_DIR and prints "stored <id>" once each returns,
// until killed.
const groupChildEnv = "HOOKLINE_GROUP_CHILD"

func init() {
	if dir := os.Getenv(groupChildEnv); dir != "" {
		groupChild(dir)
		os.Exit(1)
	}
}

func groupChild(dir string) {
	cfg := testConfig(dir)
	cfg.Sync = SyncAlways
	q, err := Open(context.Background(), cfg, logr.Discard())
	if err != nil {
		fmt.Println("error", err)
		return
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for c := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("c%d-%d", c, i)
				if _, err := q.PublishEvent(context.Background(), testEvent("team-a", id)); err != nil {
					out.Lock()
					fmt.Println("error", err)
					out.Unlock()
					return
				}
				out.Lock()
				fmt.Println("stored", id)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

// A dispatcher killed (SIGKILL) while concurrent single events are being
// group-committed loses none that it answered as stored: each is in the
// events stream when the queue is opened again. Killed at several points.
func TestGroupCommitSIGKILL(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, after := range []int{1, 150, 700} {
		t.Run(fmt.Sprintf("after %d", after), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(exe, "-test.run", "^$")
			cmd.Env = append(os.Environ(), groupChildEnv+"="+dir)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			stored := map[string]bool{}
			lines := bufio.NewScanner(stdout)
			for len(stored) < after && lines.Scan() {
				what, id, _ := strings.Cut(lines.Text(), " ")
				if what != "stored" {
					t.Fatalf("child: %s", lines.Text())
				}
				stored[id] = true
			}
			_ = cmd.Process.Kill()
			// What the child printed before it died was answered too.
			for lines.Scan() {
				if what, id, _ := strings.Cut(lines.Text(), " "); what == "stored" {
					stored[id] = true
				}
			}
			_ = cmd.Wait()
			if len(stored) < after {
				t.Fatalf("the child stored %d events before it ended, want %d", len(stored), after)
			}

			q := openTest(t, testConfig(dir))
			found := storedEventIDs(t, q)
			for id := range stored {
				if !found[id] {
					t.Errorf("event %s was answered as stored but is not in the events stream after SIGKILL", id)
				}
			}
			t.Logf("killed after %d answered events; %d in the stream", len(stored), len(found))
		})
	}
}

func storedEventIDs(t *testing.T, q *Queue) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := q.events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := q.events.GetMsg(ctx, seq)
		if err != nil {
			if isNoMessage(err) {
				continue
			}
			t.Fatal(err)
		}
		ev, err := decodeEvent(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		found[ev.ID] = true
	}
	return found
}

func isNoMessage(err error) bool {
	return errors.Is(err, jetstream.ErrMsgNotFound) || strings.Contains(err.Error(), "no message found")
}

// A caller's batch under SyncAlways is stored as an atomic batch, and its
// repeats are reported as duplicates of the first copies.
func TestGroupCommitPublishEvents(t *testing.T) {
	t.Parallel()
	q := alwaysQueue(t, t.TempDir())
	evs := make([]Event, 300)
	for i := range evs {
		evs[i] = testEvent("team-a", fmt.Sprintf("e%d", i))
	}
	first, err := q.PublishEvents(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range first {
		if r.Duplicate || (i > 0 && r.Seq != first[i-1].Seq+1) {
			t.Fatalf("event %d: %+v after %+v; want stored in order", i, r, first[max(i-1, 0)])
		}
	}
	again, err := q.PublishEvents(context.Background(), append(evs[:2:2], testEvent("team-a", "new")))
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Duplicate || again[0].Seq != first[0].Seq || !again[1].Duplicate || again[2].Duplicate {
		t.Errorf("repeats and a new event: %+v", again)
	}
	if n := streamMsgs(t, q, streamEvents); n != 301 {
		t.Errorf("%d events stored, want 301", n)
	}
}

// twoSubscriptions matches every event to two subscriptions; the second's
// endpoint is down, so the fan-out parks its delivery at once
// (Delivery.Park), as the engine's matcher does for an open circuit.
func twoSubscriptions(_ context.Context, ev Event) ([]Delivery, error) {
	return []Delivery{
		{Subscription: "a", SubscriptionUID: "uid-a", Endpoint: "ep"},
		{Subscription: "b", SubscriptionUID: "uid-b", Endpoint: "down", Park: true},
	}, nil
}

// checkTwoSubscriptions fails unless each of events events has its two
// deliveries stored exactly once: one for delivery, one parked.
func checkTwoSubscriptions(t *testing.T, q *Queue, events int) {
	t.Helper()
	if n := streamMsgs(t, q, streamDeliveries); n != 2*uint64(events) {
		t.Errorf("%d deliveries stored, want %d", n, 2*events)
	}
	parked, err := q.Parked(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := parked[EndpointKey{"team-a", "down"}]; n != uint64(events) || len(parked) != 1 {
		t.Errorf("parked %v, want %d for team-a/down", parked, events)
	}
}

// checkTwoSubscriptionsAfterCrash fails unless each of events events has its
// delivery for delivery stored exactly once and its parked one once or twice:
// a park of an event's first fan-out carries no message id, so the fan-out
// repeated after the crash may park it again (publishDeliveries), but only
// once more.
func checkTwoSubscriptionsAfterCrash(t *testing.T, q *Queue, events int) {
	t.Helper()
	live, parked := map[string]int{}, map[string]int{}
	for _, m := range storedDeliveries(t, q) {
		d, err := decodeDelivery(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case d.Subscription == "a" && m.Subject == laneSubject(&d):
			live[d.Event.ID]++
		case d.Subscription == "b" && m.Subject == parkSubject(d.Event.Namespace, "down", "b"):
			parked[d.Event.ID]++
		default:
			t.Fatalf("unexpected delivery of %s for %s on %s", d.Event.ID, d.Subscription, m.Subject)
		}
	}
	again := 0
	for i := range events {
		id := fmt.Sprintf("e%d", i)
		if live[id] != 1 || parked[id] < 1 || parked[id] > 2 {
			t.Errorf("event %s: %d stored for delivery (want 1), %d parked (want 1 or 2)", id, live[id], parked[id])
		}
		again += parked[id] - 1
	}
	if len(live) != events || len(parked) != events {
		t.Errorf("deliveries of %d and parks of %d events, want %d", len(live), len(parked), events)
	}
	t.Logf("%d events parked a second time by the repeated fan-out", again)
}

// Under SyncAlways the fan-out stores each batch's deliveries and retained
// copies as atomic batches: every event gets all of its deliveries and its
// copy, once.
func TestFanoutAtomicBatches(t *testing.T) {
	t.Parallel()
	q := alwaysQueue(t, t.TempDir())
	const events = 600
	evs := make([]Event, events)
	for i := range evs {
		evs[i] = testEvent("team-a", fmt.Sprintf("e%d", i))
	}
	if _, err := q.PublishEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, twoSubscriptions) })
	eventually(t, "the fan-out of every event", func() bool { return streamMsgs(t, q, streamEvents) == 0 })
	checkTwoSubscriptions(t, q, events)
	if n := streamMsgs(t, q, streamRetained); n != events {
		t.Errorf("%d events retained, want %d", n, events)
	}
}

// fanoutChildEnv makes the test binary run fanoutChild: it fans out the
// events already stored in $HOOKLINE_FANOUT_DIR (under SyncAlways, or the
// default durability when fanoutChildSyncEnv is "default", or SyncAlways
// with every group published one by one when it is "one-by-one"), printing
// "fanning" once it has started and "matched N" after every 250 events
// matched, until killed.
// With fanoutChildPausedEnv set, its heap is taken to be close to the memory
// limit from the start: the fan-out waits (memgate.go), and it prints
// "paused" once it does.
const (
	fanoutChildEnv       = "HOOKLINE_FANOUT_CHILD"
	fanoutChildSyncEnv   = "HOOKLINE_FANOUT_CHILD_SYNC"
	fanoutChildPausedEnv = "HOOKLINE_FANOUT_CHILD_PAUSED"
)

func init() {
	if dir := os.Getenv(fanoutChildEnv); dir != "" {
		fanoutChild(dir, os.Getenv(fanoutChildSyncEnv), os.Getenv(fanoutChildPausedEnv) != "")
		os.Exit(1)
	}
}

func fanoutChild(dir, sync string, paused bool) {
	cfg := testConfig(dir)
	if sync != "default" {
		cfg.Sync = SyncAlways
	}
	if sync == "one-by-one" {
		groupCommitAtomicMin = math.MaxInt
	}
	q, err := Open(context.Background(), cfg, logr.Discard())
	if err != nil {
		fmt.Println("error", err)
		return
	}
	fmt.Println("fanning")
	if paused {
		mem := newHighMemory()
		q.memory = mem.gate(time.Hour)
		go func() {
			<-mem.highSeen
			fmt.Println("paused")
		}()
	}
	var matched atomic.Int64
	match := func(ctx context.Context, ev Event) ([]Delivery, error) {
		if n := matched.Add(1); n%250 == 0 {
			fmt.Println("matched", n)
		}
		return twoSubscriptions(ctx, ev)
	}
	if err := runFanout(context.Background(), q, match); err != nil {
		fmt.Println("error", err)
	}
}

// A dispatcher killed (SIGKILL) in the middle of atomic fan-out batches
// loses no delivery and stores none twice: the next start fans out again
// what was not acknowledged, and a batch repeating stored deliveries is
// refused and published message by message, each recognised by its id.
func TestFanoutAtomicSIGKILL(t *testing.T) {
	t.Parallel()
	testFanoutSIGKILL(t, "always")
}

// The same under SyncAlways with every group too small for an atomic batch
// (groupCommitAtomicMin), as at a low, steady rate: each delivery and copy is
// published on its own, and the repeat is recognised by the deliveries' ids.
func TestFanoutOneByOneSIGKILL(t *testing.T) {
	t.Parallel()
	testFanoutSIGKILL(t, "one-by-one")
}

// The same with the default durability, where each delivery is its own
// publish: what makes the repeated fan-out a no-op is the deliveries' message
// ids (deliveryMsgID), which the server rebuilds from the stored messages of
// the deliveries stream's window (deliveryDedupeWindow) when it starts again.
// The repeat comes after the fan-out's lease, 30 s: well inside the window.
func TestFanoutSIGKILL(t *testing.T) {
	t.Parallel()
	testFanoutSIGKILL(t, "default")
}

// testFanoutSIGKILL runs fanoutChild with sync (its fanoutChildSyncEnv).
func testFanoutSIGKILL(t *testing.T, sync string) {
	t.Helper()
	const events = 3000
	// Killed as it starts, and after 250 and 1,500 events were matched; -1:
	// while the fan-out waits for memory (memgate.go), before it stored
	// anything, its events leased.
	for _, after := range []int{0, 1, 6, -1} {
		name := fmt.Sprintf("after %d lines", after)
		if after < 0 {
			name = "paused for memory"
		}
		t.Run(name, func(t *testing.T) {
			// The events the child had taken come back after the fan-out's
			// ack wait (30 s): the cases wait side by side.
			t.Parallel()
			dir := t.TempDir()
			cfg := testConfig(dir)
			if sync != "default" {
				cfg.Sync = SyncAlways
			}
			seedEvents(t, cfg, events)
			env := []string{fanoutChildEnv + "=" + dir, fanoutChildSyncEnv + "=" + sync}
			if after < 0 {
				env = append(env, fanoutChildPausedEnv+"=1")
			}
			cmd, lines := startTestChild(t, env, "fanning")
			for range after {
				if !lines.Scan() {
					t.Fatal("the child ended early")
				}
			}
			if after < 0 && (!lines.Scan() || lines.Text() != "paused") {
				_ = cmd.Process.Kill()
				t.Fatalf("child: %q, want paused", lines.Text())
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()

			q := openTest(t, testConfig(dir))
			left := streamMsgs(t, q, streamEvents)
			run(t, func(ctx context.Context) error { return runFanout(ctx, q, twoSubscriptions) })
			// Longer than eventually's 30 s: what the child had taken is
			// handed out again only after the fan-out's ack wait, 30 s.
			deadline := time.Now().Add(3 * time.Minute)
			for streamMsgs(t, q, streamEvents) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d events not fanned out after the restart", streamMsgs(t, q, streamEvents))
				}
				time.Sleep(50 * time.Millisecond)
			}
			checkTwoSubscriptionsAfterCrash(t, q, events)
			t.Logf("killed with %d of %d events left to fan out", left, events)
		})
	}
}

// Under SyncAlways a fan-out batch's ordered deliveries go through their
// lane's chain when there are too few to repay an atomic batch, and as an
// atomic batch otherwise; an atomic batch waits for the chains of its lanes,
// so a lane keeps the order of its deliveries across batches of both kinds.
func TestFanoutStagerKeepsLaneOrder(t *testing.T) {
	t.Parallel()
	q := alwaysQueue(t, t.TempDir())
	ctx := t.Context()
	lanes := newLaneChains(ctx, q)
	subject := laneSubjectOf("team-a", "ledger", 0)
	var futures []jetstream.PubAckFuture
	n := 0
	for _, size := range []int{5, 20, 1, 3, groupCommitAtomicMin, 2, 7, 40, 1} {
		st := newStager(ctx, q, lanes)
		for range size {
			m := &nats.Msg{
				Subject: subject,
				Header:  nats.Header{jetstream.MsgIDHeader: []string{fmt.Sprintf("d%d", n)}},
				Data:    []byte(strconv.Itoa(n)),
			}
			f, err := st.stageOrdered(m)
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
			n++
		}
		st.flush()
	}
	if err := await(ctx, futures); err != nil {
		t.Fatal(err)
	}
	info, err := q.deliveries.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(n) {
		t.Fatalf("%d deliveries stored, want %d", info.State.Msgs, n)
	}
	for i := range n {
		m, err := q.deliveries.GetMsg(ctx, info.State.FirstSeq+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(m.Data); got != strconv.Itoa(i) {
			t.Fatalf("lane position %d holds delivery %s, want %d", i, got, i)
		}
	}
}
