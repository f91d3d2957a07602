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

func TestAssignSpreadsEveryPartition(t *testing.T) {
	for n := 1; n <= 7; n++ {
		t.Run(fmt.Sprint(n, " replicas"), func(t *testing.T) {
			var members []string
			for i := range n {
				members = append(members, fmt.Sprintf("replica-%d", i))
			}
			got := assign(members)
			count := map[string]int{}
			for p, m := range got {
				if !slices.Contains(members, m) {
					t.Fatalf("partition %d assigned to %q, not a member", p, m)
				}
				count[m]++
			}
			// Even: every member has floor or floor+1.
			floor := Partitions / n
			for _, m := range members {
				if count[m] < floor || count[m] > floor+1 {
					t.Errorf("%s has %d partitions, want %d or %d: %v", m, count[m], floor, floor+1, count)
				}
			}
			// The same set in another order gives the same assignment.
			rev := slices.Clone(members)
			slices.Reverse(rev)
			if again := assign(rev); again != got {
				t.Errorf("order of members changed the assignment:\n%v\n%v", got, again)
			}
		})
	}
	if got := assign(nil); got != [Partitions]string{} {
		t.Errorf("no members: %v, want every partition unassigned", got)
	}
}

// A replica joining or leaving moves only some partitions: those it takes
// or gives up, and a few more to keep the counts even.
func TestAssignMovesFewPartitions(t *testing.T) {
	three := []string{"a", "b", "c"}
	four := []string{"a", "b", "c", "d"}
	before, after := assign(three), assign(four)
	moved, toD := 0, 0
	for p := range Partitions {
		if before[p] != after[p] {
			moved++
			if after[p] == "d" {
				toD++
			}
		}
	}
	t.Logf("a fourth replica moved %d of %d partitions, %d of them to it", moved, Partitions, toD)
	if moved > Partitions/2 {
		t.Errorf("a fourth replica moved %d of %d partitions", moved, Partitions)
	}
}

// TestHandOffWaitsForHeldDeliveries: r1 owns every partition and holds one
// delivery of an endpoint in each, unresolved, as the engine holds a
// rate-limited endpoint's deliveries in memory. r2 starts and is assigned
// half the partitions, but gets none of their deliveries while r1 still
// holds some, even past PinnedTTL (r1 keeps its pins); once r1 resolves
// them, r2 delivers its partitions.
func TestHandOffWaitsForHeldDeliveries(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.Listen = "127.0.0.1:-1"
	q1 := openTest(t, cfg)
	q2 := openTest(t, Config{URL: q1.ClientURL(), MaxRequestTimeout: cfg.MaxRequestTimeout, AckWait: cfg.AckWait})

	// One endpoint per partition.
	var endpoints []string
	for i, seen := 0, map[int]bool{}; len(seen) < Partitions; i++ {
		ep := fmt.Sprintf("ep-%d", i)
		if p := partitionOf("team-a", ep); !seen[p] {
			seen[p] = true
			endpoints = append(endpoints, ep)
		}
	}

	ctx1, stop1 := context.WithCancel(context.Background())
	defer stop1()
	src1, err := q1.OpenDeliveries(ctx1, 64)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []*Job
	// Once r1 has resolved what it held it resolves what it takes, as the
	// engine does. It takes nothing of r2's partitions unless the two
	// replicas' views of each other differed for a moment (a server too
	// loaded to answer within memberTTL), when the pins decide.
	resolving := false
	r1Resolved := map[string]bool{}
	go func() {
		for j := range src1.Jobs() {
			mu.Lock()
			if resolving {
				r1Resolved[j.Delivery().Event.ID] = true
				_ = j.Done()
			} else {
				held = append(held, j)
			}
			mu.Unlock()
		}
	}()
	// r1 extends the leases of what it holds, as the engine does, from the
	// start: with the test's 1 s lease, a held delivery whose lease ran out
	// while r2 joined came back, once r1 gave up its pins, to r2.
	leasing := make(chan struct{})
	leased := make(chan struct{})
	go func() {
		defer close(leased)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-leasing:
				return
			case <-tick.C:
			}
			mu.Lock()
			for _, j := range held {
				_ = j.InProgress()
			}
			mu.Unlock()
		}
	}()
	storeDeliveries(t, q1, endpoints, 1, "a")
	eventually(t, "r1 holding one delivery of each endpoint", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(held) == len(endpoints)
	})

	all := &recorder{}
	r2, _ := runReplica(t, q2, "r2", all)
	eventually(t, "the partitions split between the replicas", func() bool {
		return len(src1.Assigned()) == Partitions/2 && len(r2.src.Assigned()) == Partitions/2
	})
	storeDeliveries(t, q1, endpoints, 1, "b")
	// Past the pinned TTL (r2 would have been pinned had r1 stopped
	// pulling).
	time.Sleep(PinnedTTL + 2*time.Second)
	if n := all.len(); n != 0 {
		t.Fatalf("r2 delivered %d deliveries while r1 still held deliveries of their partitions", n)
	}

	close(leasing)
	<-leased
	mu.Lock()
	for _, j := range held {
		if err := j.Done(); err != nil {
			t.Errorf("Done: %v", err)
		}
	}
	resolving = true
	mu.Unlock()
	// r2 delivers the "b" delivery of each endpoint of its partitions
	// (or r1 did, had their views differed meanwhile); r2 delivers nothing
	// of another partition, and none of the "a" ones r1 resolved.
	var want []string
	for _, ep := range endpoints {
		if slices.Contains(r2.src.Assigned(), partitionOf("team-a", ep)) {
			want = append(want, "b-"+ep+"-0")
		}
	}
	eventually(t, "r2 delivering its partitions once r1 resolved its deliveries", func() bool {
		got := map[string]bool{}
		for _, s := range all.all() {
			got[s.d.Event.ID] = true
		}
		mu.Lock()
		defer mu.Unlock()
		for id := range r1Resolved {
			got[id] = true
		}
		for _, id := range want {
			if !got[id] {
				return false
			}
		}
		return true
	})
	for _, s := range all.all() {
		if !slices.Contains(r2.src.Assigned(), partitionOf("team-a", s.d.Endpoint)) {
			t.Errorf("r2 delivered to %s, whose partition is not assigned to it", s.d.Endpoint)
		}
		if strings.HasPrefix(s.d.Event.ID, "a-") {
			t.Errorf("r2 delivered %s, which r1 had resolved", s.d.Event.ID)
		}
	}
	mu.Lock()
	t.Logf("r2 made %d deliveries for the %d of its partitions (more: at least once); r1 took %d after resolving", all.len(), len(want), len(r1Resolved))
	mu.Unlock()
}
