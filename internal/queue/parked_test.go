package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// parkFirstTime fans events out to the "erp" endpoint and parks every delivery
// the first time it is seen; later ones are recorded and acknowledged.
func parkFirstTime(t *testing.T, q *Queue, rec *recorder) (stop func()) {
	t.Helper()
	var mu sync.Mutex
	parked := map[string]bool{}
	return run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 8, func(ctx context.Context, j *Job) {
			id := j.Delivery().Event.ID
			mu.Lock()
			first := !parked[id]
			parked[id] = true
			mu.Unlock()
			if first {
				if err := j.Park(); err != nil {
					t.Errorf("Park: %v", err)
				}
				return
			}
			rec.add(j.Delivery())
			if err := j.Done(); err != nil {
				t.Errorf("Done: %v", err)
			}
		})
	})
}

func parkedCount(t testing.TB, q *Queue, endpoint string) uint64 {
	t.Helper()
	p, err := q.Parked(context.Background())
	if err != nil {
		t.Fatalf("Parked: %v", err)
	}
	return p[EndpointKey{"team-a", endpoint}]
}

func parkConsumers(t testing.TB, q *Queue) []string {
	t.Helper()
	var out []string
	names := q.deliveries.ConsumerNames(context.Background())
	for n := range names.Name() {
		if strings.HasPrefix(n, parkPrefix) {
			out = append(out, n)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParkThenUnpark(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	const n = 20
	for i := range n {
		publish(t, q, testEvent("team-a", fmt.Sprintf("e%02d", i)))
	}
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })
	var rec recorder
	parkFirstTime(t, q, &rec)

	// The parked copies count in the endpoint's backlog; the originals go
	// once their acknowledgements are processed.
	k := EndpointKey{"team-a", "erp"}
	eventually(t, "every delivery parked", func() bool {
		b, err := q.Backlog(ctx)
		return err == nil && b.Parked[k] == n && b.Endpoints[k] == n
	})
	// Parked deliveries are not handed out again by themselves.
	time.Sleep(1500 * time.Millisecond)
	if rec.len() != 0 {
		t.Fatalf("%d parked deliveries came back before Unpark", rec.len())
	}
	// An endpoint with nothing parked is a no-op, without a consumer.
	if moved, err := q.Unpark(ctx, "team-a", "other"); err != nil || moved != 0 {
		t.Fatalf("Unpark of an empty endpoint = %d, %v", moved, err)
	}

	moved, err := q.Unpark(ctx, "team-a", "erp")
	if err != nil || moved != n {
		t.Fatalf("Unpark = %d, %v; want %d", moved, err, n)
	}
	eventually(t, "the unparked deliveries", func() bool { return rec.len() == n })
	for _, s := range rec.all() {
		if s.d.Attempt != 1 || s.d.Holds != 0 || s.d.Endpoint != "erp" || s.d.FirstAttempt.IsZero() {
			t.Errorf("unparked delivery %+v: want attempt 1, no holds, first attempt kept", s.d)
		}
	}
	if p := parkedCount(t, q, "erp"); p != 0 {
		t.Errorf("%d still parked", p)
	}
	if cs := parkConsumers(t, q); len(cs) != 0 {
		t.Errorf("parking consumers left behind: %v", cs)
	}
	// Again: nothing to do.
	if moved, err := q.Unpark(ctx, "team-a", "erp"); err != nil || moved != 0 {
		t.Errorf("second Unpark = %d, %v; want 0", moved, err)
	}
	eventually(t, "the stream to empty", func() bool { return streamMsgs(t, q, streamDeliveries) == 0 })
}

func TestUnparkPaceAndMax(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	const n = 10
	for i := range n {
		d := Delivery{Event: testEvent("team-a", fmt.Sprintf("e%d", i)), Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp", Attempt: 3}
		if err := q.park(ctx, &d); err != nil {
			t.Fatal(err)
		}
	}
	// A pace that says stop moves nothing.
	if moved, err := q.Unpark(ctx, "team-a", "erp", UnparkRate(func() float64 { return -1 })); err != nil || moved != 0 {
		t.Fatalf("stopped Unpark = %d, %v", moved, err)
	}
	if moved, err := q.Unpark(ctx, "team-a", "erp", UnparkMax(1)); err != nil || moved != 1 {
		t.Fatalf("Unpark(max 1) = %d, %v", moved, err)
	}
	// A pace of 10/s moves one at a time, a tenth of a second apart; a
	// pause (zero) in between only delays.
	var asked int
	start := time.Now()
	moved, err := q.Unpark(ctx, "team-a", "erp", UnparkRate(func() float64 {
		asked++
		if asked == 2 {
			return 0
		}
		return 10
	}))
	if err != nil || moved != n-1 {
		t.Fatalf("paced Unpark = %d, %v; want %d", moved, err, n-1)
	}
	// Pacing: the batches were spread out (an outcome, not a speed).
	if el := time.Since(start); el < 700*time.Millisecond {
		t.Errorf("moved %d at 10/s in %s", moved, el)
	}
	if p := parkedCount(t, q, "erp"); p != 0 {
		t.Errorf("%d still parked", p)
	}
	counts, err := q.subjectCounts(ctx, deliverySubject("team-a", "erp"))
	if err != nil || counts[deliverySubject("team-a", "erp")] != n {
		t.Errorf("delivery subject holds %v (%v), want %d", counts, err, n)
	}
}

func TestParkOrderedRefused(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	if err := q.EnsureOrdered(context.Background(), "team-a", "ledger", "erp"); err != nil {
		t.Fatal(err)
	}
	publish(t, q, testEvent("team-a", "e1"))
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(context.Context, Event) ([]Delivery, error) {
			return []Delivery{{Subscription: "ledger", SubscriptionUID: "u", Endpoint: "erp", Ordered: true}}, nil
		})
	})
	var rec recorder
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 2, func(ctx context.Context, j *Job) {
			rec.add(j.Delivery())
			if err := j.Park(); !errors.Is(err, ErrOrderedPark) {
				t.Errorf("Park of an ordered delivery: %v, want ErrOrderedPark", err)
			}
			// The job is still open: it can be resolved another way.
			if err := j.Done(); err != nil {
				t.Errorf("Done after a refused Park: %v", err)
			}
		})
	})
	eventually(t, "the ordered delivery", func() bool { return rec.len() == 1 })
}

// TestUnparkFromTwoReplicas moves one backlog from two callers at once:
// each parked delivery is moved by one of them.
func TestUnparkFromTwoReplicas(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	const n = 2000
	for i := range n {
		d := Delivery{Event: testEvent("team-a", fmt.Sprintf("e%d", i)), Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp", Attempt: 1}
		if err := q.park(ctx, &d); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	moved := make([]int, 2)
	for i := range moved {
		wg.Go(func() {
			var err error
			moved[i], err = q.Unpark(ctx, "team-a", "erp", UnparkRate(func() float64 { return 4000 }))
			if err != nil {
				t.Errorf("Unpark %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	t.Logf("moved %v", moved)
	if moved[0]+moved[1] != n {
		t.Errorf("moved %d+%d, want %d in all", moved[0], moved[1], n)
	}
	counts, err := q.subjectCounts(ctx, deliverySubject("team-a", "erp"))
	if err != nil || counts[deliverySubject("team-a", "erp")] != n {
		t.Errorf("delivery subject holds %v (%v), want %d", counts, err, n)
	}
	eventually(t, "the parking consumer to go", func() bool { return len(parkConsumers(t, q)) == 0 })
}

// TestUnparkCrashLosesNothing stops the queue between storing a batch's
// copies and acknowledging the parked originals, as a crash would, then
// unparks again after a restart: every delivery arrives, some twice.
func TestUnparkCrashLosesNothing(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, testConfig(dir))
	ctx := context.Background()
	const n = 1000
	for i := range n {
		d := Delivery{Event: testEvent("team-a", fmt.Sprintf("e%04d", i)), Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp", Attempt: 2}
		if err := q.park(ctx, &d); err != nil {
			t.Fatal(err)
		}
	}
	batches := 0
	testHookUnparkStored = func() {
		if batches++; batches == 3 {
			q.Close() // the "crash": nothing of this batch is acknowledged
		}
	}
	t.Cleanup(func() { testHookUnparkStored = nil })
	moved, err := q.Unpark(ctx, "team-a", "erp", UnparkRate(func() float64 { return 1000 }))
	if err == nil || moved >= n {
		t.Fatalf("Unpark through a crash = %d, %v; want it cut short", moved, err)
	}
	testHookUnparkStored = nil
	t.Logf("moved %d before the crash", moved)

	q = openTest(t, testConfig(dir))
	again, err := q.Unpark(ctx, "team-a", "erp")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("moved %d after the restart", again)
	if p := parkedCount(t, q, "erp"); p != 0 {
		t.Fatalf("%d still parked", p)
	}
	var rec recorder
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 8, func(ctx context.Context, j *Job) {
			rec.add(j.Delivery())
			_ = j.Done()
		})
	})
	eventually(t, "every delivery", func() bool {
		seen := map[string]bool{}
		for _, s := range rec.all() {
			seen[s.d.Event.ID] = true
		}
		return len(seen) == n
	})
	for _, s := range rec.all() {
		if s.d.Attempt != 2 {
			t.Fatalf("delivery %s has attempt %d, want 2", s.d.Event.ID, s.d.Attempt)
		}
	}
	// Duplicates are at most what was moved before the crash: the batch
	// stored but not acknowledged, and acknowledgements the server had not
	// processed yet.
	if dup := rec.len() - n; dup > moved {
		t.Errorf("%d duplicates, more than the %d moved before the crash", dup, moved)
	}
}
