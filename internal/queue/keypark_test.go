package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestKeyParking: many keys on two keyed lanes, and failing keys among them.
// While they fail, every other key, those that share a failing key's lane
// too, is delivered complete and in order, including events published after
// the failing keys were blocked; each failing key is attempted only at its
// head, with rising attempt numbers, and its successors wait on disk. Once
// the failing keys recover, their successors arrive in publish order, each
// as attempt 1, and nothing of the parking is left behind.
//
// "bounded" keeps one blocked key in memory per lane, so the others are read
// from the stream as their deliveries come by.
func TestKeyParking(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		cache   int
		failing []string
	}{
		{name: "one failing key", failing: []string{"k00"}},
		{name: "bounded", cache: 1, failing: []string{"k00", "k01", "k02", "k03"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testKeyParking(t, tt.cache, tt.failing)
		})
	}
}

func testKeyParking(t *testing.T, cache int, failing []string) {
	q := openTest(t, testConfig(t.TempDir()))
	q.keyCache = cache
	ctx := context.Background()
	const lanes, keys, perKey = 2, 16, 5
	keyOf := func(id string) string { k, _, _ := strings.Cut(id, "-"); return k }
	batch := func(from int) {
		var evs []Event
		for seq := from; seq < from+perKey; seq++ {
			for k := range keys {
				evs = append(evs, testEvent("team-a", fmt.Sprintf("k%02d-%d", k, seq)))
			}
		}
		publish(t, q, evs...)
	}
	if err := q.EnsureKeyed(ctx, "team-a", "per.customer", "crm", lanes); err != nil {
		t.Fatal(err)
	}
	batch(0)
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			k := keyOf(ev.ID)
			return []Delivery{{Subscription: "per.customer", SubscriptionUID: "u1", Ordered: true,
				Lane: KeyLane(k, lanes), KeyHash: KeyHash(k)}}, nil
		})
	})
	isFailing := map[string]bool{}
	peers := 0
	for _, k := range failing {
		isFailing[k] = true
	}
	for k := range keys {
		name := fmt.Sprintf("k%02d", k)
		for _, f := range failing {
			if !isFailing[name] && KeyLane(name, lanes) == KeyLane(f, lanes) {
				peers++
				break
			}
		}
	}
	if peers == 0 {
		t.Fatal("no key shares a failing key's lane; the test shows nothing")
	}
	var fail atomic.Bool
	fail.Store(true)
	var rec recorder
	var mu sync.Mutex
	failed := map[string][]Delivery{}
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 1, func(_ context.Context, j *Job) {
			d := j.Delivery()
			if k := keyOf(d.Event.ID); isFailing[k] && fail.Load() {
				mu.Lock()
				failed[k] = append(failed[k], d)
				mu.Unlock()
				if err := j.RetryAt(time.Now().Add(50 * time.Millisecond)); err != nil {
					t.Errorf("RetryAt: %v", err)
				}
				return
			}
			rec.add(d)
			if err := j.Done(); err != nil {
				t.Errorf("Done: %v", err)
			}
		})
	})
	free := (keys - len(failing)) * perKey
	eventually(t, "every other key's first batch", func() bool { return rec.len() >= free })
	// Published while the failing keys are blocked: their deliveries are
	// parked as they come, behind what is parked already.
	batch(perKey)
	eventually(t, "every other key's second batch", func() bool { return rec.len() >= 2*free })
	eventually(t, "each failing key retried", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range failing {
			if len(failed[k]) < 3 {
				return false
			}
		}
		return true
	})
	eventually(t, "the failing keys' successors parked", func() bool {
		b, err := q.Backlog(ctx)
		return err == nil && b.Ordered[SubscriptionKey{"team-a", "per.customer"}] >= uint64(len(failing)*(2*perKey-1))
	})
	recovered := time.Now()
	fail.Store(false)
	eventually(t, "every delivery", func() bool { return rec.len() >= keys*2*perKey })

	mu.Lock()
	checkKeyParking(t, rec.all(), failed, isFailing, recovered)
	mu.Unlock()
	if len(rec.all()) != keys*2*perKey {
		t.Errorf("%d deliveries, want %d", len(rec.all()), keys*2*perKey)
	}
	eventually(t, "the parking gone", func() bool {
		b, err := q.Backlog(ctx)
		return err == nil && b.Ordered[SubscriptionKey{"team-a", "per.customer"}] == 0 && keyRecords(ctx, t, q) == 0
	})
}

// checkKeyParking checks TestKeyParking's deliveries: each failing key
// failed only at its head, as attempts 1, 2, ...; every key arrived in
// publish order; a failing key's later deliveries came as attempt 1, first
// tried after it recovered.
func checkKeyParking(t *testing.T, got []seen, failed map[string][]Delivery, isFailing map[string]bool, recovered time.Time) {
	t.Helper()
	keyOf := func(id string) string { k, _, _ := strings.Cut(id, "-"); return k }
	seqOf := func(id string) int { _, s, _ := strings.Cut(id, "-"); n, _ := strconv.Atoi(s); return n }
	for k, ds := range failed {
		for i, d := range ds {
			if d.Event.ID != k+"-0" || d.Attempt != i+1 {
				t.Errorf("failing key %s: failure %d was %s attempt %d, want its head %s-0 as attempt %d", k, i, d.Event.ID, d.Attempt, k, i+1)
			}
		}
	}
	next := map[string]int{}
	for _, s := range got {
		k, seq := keyOf(s.d.Event.ID), seqOf(s.d.Event.ID)
		if seq != next[k] {
			t.Errorf("key %s: got %s, want %s-%d", k, s.d.Event.ID, k, next[k])
		}
		next[k]++
		if !isFailing[k] || seq == 0 {
			continue
		}
		if s.d.Attempt != 1 {
			t.Errorf("%s: attempt %d, want 1: parking is no attempt", s.d.Event.ID, s.d.Attempt)
		}
		if s.d.FirstAttempt.Before(recovered) {
			t.Errorf("%s: first attempt at %s, before its key recovered at %s: parking is no attempt", s.d.Event.ID, s.d.FirstAttempt, recovered)
		}
	}
}

// keyRecords counts the records of blocked keys.
func keyRecords(ctx context.Context, t testing.TB, q *Queue) int {
	t.Helper()
	info, err := q.holds.Info(ctx, jetstream.WithSubjectFilter(subjHolds+".*.*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(info.State.Subjects)
}

// TestRemoveOrderedTakesParkedKeys: deleting a subscription removes its
// blocked keys' parked deliveries and records with its lanes.
func TestRemoveOrderedTakesParkedKeys(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	if err := q.EnsureKeyed(ctx, "team-a", "s", "crm", 1); err != nil {
		t.Fatal(err)
	}
	publish(t, q, testEvent("team-a", "a-0"), testEvent("team-a", "a-1"), testEvent("team-a", "a-2"))
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			return []Delivery{{Subscription: "s", SubscriptionUID: "u1", Ordered: true, Lane: 1, KeyHash: KeyHash("a")}}, nil
		})
	})
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 1, func(_ context.Context, j *Job) {
			_ = j.RetryAt(time.Now().Add(time.Hour))
		})
	})
	eventually(t, "two deliveries parked behind the failing head", func() bool {
		counts, err := q.subjectCounts(ctx, subjOrdered+".>")
		return err == nil && counts[keyParkSubject(&Delivery{Event: Event{Namespace: "team-a"}, Subscription: "s", Lane: 1, KeyHash: KeyHash("a")})] == 2
	})
	if n := keyRecords(ctx, t, q); n != 1 {
		t.Fatalf("%d key records, want 1", n)
	}
	if err := q.RemoveOrdered(ctx, "team-a", "s"); err != nil {
		t.Fatal(err)
	}
	b, err := q.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := b.Ordered[SubscriptionKey{"team-a", "s"}]; n != 0 || keyRecords(ctx, t, q) != 0 {
		t.Errorf("after RemoveOrdered: %d ordered deliveries, %d key records", n, keyRecords(ctx, t, q))
	}
}

// TestKeyParkingDeadHead: a blocked key's head that becomes a dead letter
// moves the key on like a delivered one, and its replay is delivered as a
// fresh delivery of the key, not dropped as a leftover copy of a head.
func TestKeyParkingDeadHead(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	if err := q.EnsureKeyed(ctx, "team-a", "s", "crm", 1); err != nil {
		t.Fatal(err)
	}
	publish(t, q, testEvent("team-a", "a-0"), testEvent("team-a", "b-0"), testEvent("team-a", "a-1"))
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			return []Delivery{{Subscription: "s", SubscriptionUID: "u1", Ordered: true, Lane: 1, KeyHash: KeyHash(ev.ID[:1])}}, nil
		})
	})
	var rec recorder
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 1, func(_ context.Context, j *Job) {
			d := j.Delivery()
			rec.add(d)
			switch {
			case d.Event.ID == "a-0" && d.Replay == 0 && d.Attempt == 1:
				_ = j.RetryAt(time.Now())
			case d.Event.ID == "a-0" && d.Replay == 0:
				_ = j.Dead(DeadInfo{Reason: "gave up"})
			default:
				_ = j.Done()
			}
		})
	})
	eventually(t, "a-1 after its dead head", func() bool { return rec.len() >= 4 })
	sid := SubscriptionID{"team-a", "s", "u1"}
	if n, err := q.Replay(ctx, sid, time.Time{}, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Replay: %d, %v", n, err)
	}
	eventually(t, "the replayed head", func() bool { return rec.len() >= 5 })
	var got []string
	for _, s := range rec.all() {
		got = append(got, fmt.Sprintf("%s/%d/%v", s.d.Event.ID, s.d.Attempt, s.d.Replay != 0))
	}
	want := "[a-0/1/false b-0/1/false a-0/2/false a-1/1/false a-0/1/true]"
	if fmt.Sprint(got) != want {
		t.Errorf("deliveries %v, want %s", got, want)
	}
}

// TestBlockedKeysMemoryIsBounded: a lane keeps at most its bound of blocked
// keys in memory, and still finds every other blocked key's record on disk;
// a fresh run of the lane learns them from the stream, and counts them all.
func TestBlockedKeysMemoryIsBounded(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	q.keyCache = 2
	ctx := context.Background()
	subject := holdSubject(laneConsumerName("team-a", "s", 1))
	k := &keys{q: q, subject: subject}
	const blocked = 7
	for i := range blocked {
		h := KeyHash(fmt.Sprint("key-", i))
		if r, err := k.lookup(ctx, h); err != nil || r != nil {
			t.Fatalf("key %d before it is blocked: %v, %v", i, r, err)
		}
		if err := k.put(ctx, h, &keyRecord{id: fmt.Sprint("e", i), uid: "u1", attempt: 2}); err != nil {
			t.Fatal(err)
		}
		if len(k.blocked) > 2 {
			t.Fatalf("%d blocked keys in memory, bound 2", len(k.blocked))
		}
	}
	for _, fresh := range []bool{false, true} {
		if fresh {
			k = &keys{q: q, subject: subject}
		}
		for i := range blocked {
			r, err := k.lookup(ctx, KeyHash(fmt.Sprint("key-", i)))
			if err != nil || r == nil || r.id != fmt.Sprint("e", i) || r.attempt != 2 {
				t.Errorf("fresh %v, key %d: record %+v, %v", fresh, i, r, err)
			}
			if len(k.blocked) > 2 {
				t.Fatalf("%d blocked keys in memory, bound 2", len(k.blocked))
			}
		}
		if r, err := k.lookup(ctx, KeyHash("free")); err != nil || r != nil {
			t.Errorf("fresh %v: a free key has record %+v, %v", fresh, r, err)
		}
		if fresh && (!k.counted.Load() || k.count.Load() != blocked) {
			t.Errorf("a fresh run of the lane counts %d blocked keys (counted %v), want all %d, not the %d in memory",
				k.count.Load(), k.counted.Load(), blocked, len(k.blocked))
		}
	}
	for i := range blocked {
		if err := k.free(ctx, KeyHash(fmt.Sprint("key-", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := keyRecords(ctx, t, q); n != 0 {
		t.Errorf("%d key records after freeing every key", n)
	}
	for i := range blocked {
		if r, err := k.lookup(ctx, KeyHash(fmt.Sprint("key-", i))); err != nil || r != nil {
			t.Errorf("key %d after it was freed: %+v, %v", i, r, err)
		}
	}
	if !k.complete {
		t.Error("with no key blocked the lane should know it without asking the stream")
	}
}

// TestBlockedKeysCount: the blocked keys a subscription's keyed lanes report
// (Lane.BlockedKeys, the engine's hookline_ordered_blocked_keys) rise to N
// while N keys fail, fall to 0 once they recover, and, after the lanes are
// run again while keys are blocked and nothing is due on them, are read from
// the stream as they start. Memory keeps one blocked key per lane, fewer
// than block on each lane, so the count cannot come from memory; and it
// never goes above N.
func TestBlockedKeysCount(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	q.keyCache = 1
	ctx := context.Background()
	const lanes, keys = 2, 8
	sub := SubscriptionKey{"team-a", "s"}
	failing := map[string]bool{"k00": true, "k01": true, "k02": true, "k03": true, "k04": true}
	const n = 5
	keyOf := func(id string) string { k, _, _ := strings.Cut(id, "-"); return k }
	perLane := map[int]int{}
	for k := range failing {
		perLane[KeyLane(k, lanes)]++
	}
	if max(perLane[1], perLane[2]) <= q.keyCache {
		t.Fatal("no lane has more failing keys than it keeps in memory; the test shows nothing")
	}
	batch := func(seq int) {
		var evs []Event
		for s := seq; s < seq+3; s++ {
			for k := range keys {
				evs = append(evs, testEvent("team-a", fmt.Sprintf("k%02d-%d", k, s)))
			}
		}
		publish(t, q, evs...)
	}
	if err := q.EnsureKeyed(ctx, "team-a", "s", "crm", lanes); err != nil {
		t.Fatal(err)
	}
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			k := keyOf(ev.ID)
			return []Delivery{{Subscription: "s", SubscriptionUID: "u1", Ordered: true, Lane: KeyLane(k, lanes), KeyHash: KeyHash(k)}}, nil
		})
	})

	// What the handler does with a failing key's delivery.
	const (
		failSoon  = iota // retried shortly
		recover          // delivered
		failLater        // retried in an hour: nothing is due on the lanes
	)
	var mode atomic.Int32
	var mu sync.Mutex
	delivered := map[string]int{}
	failedAt := map[int32]map[string]int{}
	handler := func(_ context.Context, j *Job) {
		d := j.Delivery()
		k := keyOf(d.Event.ID)
		m := mode.Load()
		mu.Lock()
		defer mu.Unlock()
		switch {
		case !failing[k] || m == recover:
			delivered[k]++
			if err := j.Done(); err != nil {
				t.Errorf("Done: %v", err)
			}
		default:
			if failedAt[m] == nil {
				failedAt[m] = map[string]int{}
			}
			failedAt[m][k]++
			wait := 50 * time.Millisecond
			if m == failLater {
				wait = time.Hour
			}
			if err := j.RetryAt(time.Now().Add(wait)); err != nil {
				t.Errorf("RetryAt: %v", err)
			}
		}
	}
	var w laneWatch
	count := func(want, wantLanes int) func() bool {
		return func() bool {
			got, reporting := w.blockedKeys(sub)
			if got > n || got < 0 {
				t.Errorf("%d blocked keys reported, never more than %d fail", got, n)
			}
			return got == want && reporting == wantLanes
		}
	}
	allFailed := func(m int32, times int) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for k := range failing {
				if failedAt[m][k] < times {
					return false
				}
			}
			return true
		}
	}
	deliveredAll := func(each int, which func(string) bool) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for k := range keys {
				name := fmt.Sprintf("k%02d", k)
				if which(name) && delivered[name] < each {
					return false
				}
			}
			return true
		}
	}
	free := func(k string) bool { return !failing[k] }
	every := func(string) bool { return true }

	batch(0)
	stop := run(t, func(ctx context.Context) error { return runDeliveriesWatched(ctx, q, 1, handler, &w) })
	eventually(t, "the failing keys retried", allFailed(failSoon, 3))
	eventually(t, "the other keys delivered", deliveredAll(3, free))
	eventually(t, fmt.Sprintf("%d blocked keys on the 2 lanes", n), count(n, lanes))
	if got := keyRecords(ctx, t, q); got != n {
		t.Errorf("%d key records, want %d", got, n)
	}

	mode.Store(recover)
	eventually(t, "every key delivered", deliveredAll(3, every))
	eventually(t, "no blocked key", count(0, lanes))
	if got := keyRecords(ctx, t, q); got != 0 {
		t.Errorf("%d key records after recovery, want none", got)
	}

	mode.Store(failLater)
	batch(3)
	eventually(t, "the failing keys failed again", allFailed(failLater, 1))
	eventually(t, "the other keys' second batch", deliveredAll(6, free))
	eventually(t, fmt.Sprintf("%d blocked keys again", n), count(n, lanes))
	stop()
	if got, reporting := w.blockedKeys(sub); reporting != 0 {
		t.Errorf("stopped lanes still report %d blocked keys", got)
	}

	// Run again: the heads are due in an hour, so no delivery comes by
	// to load the keys; the lanes count them from the stream as they start.
	mu.Lock()
	before := fmt.Sprint(delivered, failedAt)
	mu.Unlock()
	run(t, func(ctx context.Context) error { return runDeliveriesWatched(ctx, q, 1, handler, &w) })
	eventually(t, fmt.Sprintf("%d blocked keys after the lanes started again", n), count(n, lanes))
	mu.Lock()
	if after := fmt.Sprint(delivered, failedAt); after != before {
		t.Errorf("deliveries were handed out after the restart (%s, before %s): the count may have come from them", after, before)
	}
	mu.Unlock()

	// Deleting the subscription stops its lanes, and their figures.
	if err := q.RemoveOrdered(ctx, "team-a", "s"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no lane of the deleted subscription reporting", count(0, 0))
}
