package queue

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// laneSeen is one ordered delivery a replica took.
type laneSeen struct {
	replica string
	id      string
	attempt int
}

// laneLog records the ordered deliveries every replica takes.
type laneLog struct {
	mu   sync.Mutex
	seen []laneSeen
}

func (l *laneLog) add(s laneSeen) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, s)
}

func (l *laneLog) all() []laneSeen {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen)
}

// laneReplica runs the ordered lanes of q as replica name, as the engine
// does, resolving each delivery with resolve. stop ends
// its deliveries, waits for its lanes, and releases it.
func laneReplica(t *testing.T, q *Queue, name string, log *laneLog, resolve func(*Job) error) (src *Deliveries, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	src, err := q.OpenDeliveries(ctx, 16)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for j := range src.Jobs() {
			_ = j.Done()
		}
	})
	wg.Go(func() {
		for {
			select {
			case lane := <-src.Lanes():
				wg.Go(func() {
					for j := range lane.Jobs() {
						d := j.Delivery()
						log.add(laneSeen{replica: name, id: d.Event.ID, attempt: d.Attempt})
						if err := resolve(j); err != nil {
							t.Errorf("%s resolving %s: %v", name, d.Event.ID, err)
						}
					}
				})
			case <-ctx.Done():
				return
			}
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			rctx, c := context.WithTimeout(context.Background(), 10*time.Second)
			defer c()
			if err := src.Release(rctx); err != nil {
				t.Errorf("Release: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return src, stop
}

// TestOrderedLaneFollowsEndpointOwner runs three replicas on one server
// (two through the network, as with an external cluster). An ordered lane
// created on one replica is pulled only by the replica assigned its
// endpoint's partition; when that replica stops, the lane moves to the
// replica assigned the partition next, with its order and its attempt
// count (a retry made by the old owner is attempt 2 on the new one), and
// nothing lost or taken twice.
func TestOrderedLaneFollowsEndpointOwner(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.Listen = "127.0.0.1:-1"
	// A lease that runs out on a loaded machine redelivers (at least once),
	// which is not what this test is about.
	cfg.AckWait = 20 * time.Second
	qs := []*Queue{openTest(t, cfg)}
	for range 2 {
		qs = append(qs, openTest(t, Config{URL: qs[0].ClientURL(), MaxRequestTimeout: cfg.MaxRequestTimeout, AckWait: cfg.AckWait}))
	}
	ctx := context.Background()

	var log laneLog
	// The first attempt of "retry" fails, on whichever replica makes it.
	resolve := func(j *Job) error {
		if d := j.Delivery(); d.Event.ID == "retry" && d.Attempt == 1 {
			return j.RetryAt(time.Now().Add(2 * time.Second))
		}
		return j.Done()
	}
	names := []string{"r0", "r1", "r2"}
	srcs := make([]*Deliveries, 3)
	stops := make([]func(), 3)
	for i, q := range qs {
		srcs[i], stops[i] = laneReplica(t, q, names[i], &log, resolve)
	}
	owner := func(p int, among []int) int {
		for _, i := range among {
			if slices.Contains(srcs[i].Assigned(), p) {
				return i
			}
		}
		return -1
	}
	eventually(t, "the partitions spread over the three replicas", func() bool {
		n := 0
		for _, s := range srcs {
			if len(s.Assigned()) == 0 {
				return false
			}
			n += len(s.Assigned())
		}
		return n == Partitions
	})
	// An endpoint that r0, which creates the lane, does not own.
	ep := ""
	for i := 0; ep == ""; i++ {
		if e := fmt.Sprintf("ep-%d", i); owner(partitionOf("team-a", e), []int{0, 1, 2}) != 0 {
			ep = e
		}
	}
	p := partitionOf("team-a", ep)
	first := owner(p, []int{0, 1, 2})
	if err := qs[0].EnsureOrdered(ctx, "team-a", "ledger", ep); err != nil {
		t.Fatal(err)
	}
	publishOrdered := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			d := Delivery{Event: testEvent("team-a", id), Subscription: "ledger", SubscriptionUID: "u1", Endpoint: ep, Ordered: true, Attempt: 1}
			if err := qs[0].publishAt(ctx, &d, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("a%02d", i))
	}
	publishOrdered(want...)
	eventually(t, "the first owner delivering the lane", func() bool { return len(log.all()) == len(want) })
	for _, s := range log.all() {
		if s.replica != names[first] {
			t.Fatalf("%s took %s of a lane whose endpoint %s (partition %d) %s owns", s.replica, s.id, ep, p, names[first])
		}
	}

	// The owner's retry of "retry" is due after it stops.
	publishOrdered("retry")
	want = append(want, "retry")
	eventually(t, "the first owner's failed attempt", func() bool { return len(log.all()) == len(want) })
	var more []string
	for i := range 10 {
		more = append(more, fmt.Sprintf("b%02d", i))
	}
	publishOrdered(more...)
	want = append(want, "retry")
	want = append(want, more...)
	stops[first]()
	var rest []int
	for i := range 3 {
		if i != first {
			rest = append(rest, i)
		}
	}
	eventually(t, "the partition reassigned", func() bool {
		n := 0
		for _, i := range rest {
			n += len(srcs[i].Assigned())
		}
		return n == Partitions && owner(p, rest) >= 0
	})
	next := owner(p, rest)
	eventually(t, "the next owner delivering the rest of the lane", func() bool { return len(log.all()) >= len(want) })

	seen := log.all()
	var got []string
	for i, s := range seen {
		got = append(got, s.id)
		if i > len(want)-len(more)-2 && s.replica != names[next] {
			t.Errorf("%s took %s after the lane moved to %s", s.replica, s.id, names[next])
		}
		if s.id == "retry" && s.replica == names[next] && s.attempt != 2 {
			t.Errorf("the retry on the next owner is attempt %d, want 2", s.attempt)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("lane delivered\n%s\nwant\n%s\n(%v)", strings.Join(got, " "), strings.Join(want, " "), seen)
	}
	t.Logf("lane of %s (partition %d) moved from %s to %s", ep, p, names[first], names[next])
}

// TestOrderedLaneFollowsRepointedSubscription: a subscription re-pointed to
// an endpoint another replica owns has its lane pulled by that replica from
// then on, in order, though the lane was re-pointed on the first replica.
func TestOrderedLaneFollowsRepointedSubscription(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.Listen = "127.0.0.1:-1"
	cfg.AckWait = 20 * time.Second
	qs := []*Queue{openTest(t, cfg)}
	qs = append(qs, openTest(t, Config{URL: qs[0].ClientURL(), MaxRequestTimeout: cfg.MaxRequestTimeout, AckWait: cfg.AckWait}))
	ctx := context.Background()

	var log laneLog
	names := []string{"r0", "r1"}
	srcs := make([]*Deliveries, 2)
	for i, q := range qs {
		srcs[i], _ = laneReplica(t, q, names[i], &log, (*Job).Done)
	}
	eventually(t, "the partitions split between the replicas", func() bool {
		return len(srcs[0].Assigned()) == Partitions/2 && len(srcs[1].Assigned()) == Partitions/2
	})
	// One endpoint of each replica.
	eps := make([]string, 2)
	for i := 0; eps[0] == "" || eps[1] == ""; i++ {
		e := fmt.Sprintf("ep-%d", i)
		for r := range 2 {
			if eps[r] == "" && slices.Contains(srcs[r].Assigned(), partitionOf("team-a", e)) {
				eps[r] = e
			}
		}
	}
	publish := func(ep string, ids ...string) {
		t.Helper()
		for _, id := range ids {
			d := Delivery{Event: testEvent("team-a", id), Subscription: "ledger", SubscriptionUID: "u1", Endpoint: ep, Ordered: true, Attempt: 1}
			if err := qs[0].publishAt(ctx, &d, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := qs[0].EnsureOrdered(ctx, "team-a", "ledger", eps[0]); err != nil {
		t.Fatal(err)
	}
	publish(eps[0], "a0", "a1", "a2")
	eventually(t, "r0 delivering the lane", func() bool { return len(log.all()) == 3 })
	// Re-pointed by r0, which fans out.
	if err := qs[0].EnsureOrdered(ctx, "team-a", "ledger", eps[1]); err != nil {
		t.Fatal(err)
	}
	publish(eps[1], "b0", "b1", "b2", "b3")
	eventually(t, "r1 delivering the re-pointed lane", func() bool { return len(log.all()) == 7 })
	var got []string
	for i, s := range log.all() {
		got = append(got, s.replica+":"+s.id)
		if want := names[min(i/3, 1)]; s.replica != want {
			t.Errorf("%s took %s, want %s", s.replica, s.id, want)
		}
	}
	if want := "r0:a0 r0:a1 r0:a2 r1:b0 r1:b1 r1:b2 r1:b3"; strings.Join(got, " ") != want {
		t.Fatalf("lane delivered %s, want %s", strings.Join(got, " "), want)
	}
}
