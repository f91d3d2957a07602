package queue

import (
	"context"
	"testing"
	"time"
)

// laneStep is what one reader of an ordered lane does with a delivery.
type laneStep int

const (
	stepAbandon laneStep = iota // fetched, then the process dies before resolving it
	stepRetry                   // a failed attempt: RetryAt now
	stepDone
)

// readLane runs one reader of the lane, doing steps[i] with the i-th
// delivery it is handed, and stops once it has done them all; it returns
// what it was handed. An abandoned delivery is left unresolved, as by a
// process killed between fetching and settling it.
func readLane(t *testing.T, q *Queue, steps ...laneStep) []Delivery {
	t.Helper()
	got := make(chan Delivery, len(steps))
	n := 0
	finished := make(chan struct{})
	stop := run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 1, func(_ context.Context, j *Job) {
			if n >= len(steps) {
				j.Detach()
				return
			}
			step := steps[n]
			n++
			got <- j.Delivery()
			var err error
			switch step {
			case stepAbandon:
				j.Detach()
			case stepRetry:
				err = j.RetryAt(time.Now())
			case stepDone:
				err = j.Done()
			}
			if err != nil {
				t.Errorf("step %d: %v", step, err)
			}
			if n == len(steps) {
				close(finished)
			}
		})
	})
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatalf("the lane handed out %d of %d deliveries", len(got), len(steps))
	}
	stop()
	close(got)
	var out []Delivery
	for d := range got {
		out = append(out, d)
	}
	return out
}

// TestOrderedFetchWithoutSendSpendsNoAttempt: a lane message fetched by a
// process that dies before resolving it comes back under the same attempt
// number; only a failed attempt (RetryAt) spends one, whatever the server's
// delivery count says.
func TestOrderedFetchWithoutSendSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	if err := q.EnsureOrdered(ctx, "team-a", "ledger", "erp"); err != nil {
		t.Fatal(err)
	}
	publish(t, q, testEvent("team-a", "e1"), testEvent("team-a", "e2"))
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			return []Delivery{{Subscription: "ledger", SubscriptionUID: "u1", Ordered: true}}, nil
		})
	})
	eventually(t, "fan-out", func() bool { return streamMsgs(t, q, streamEvents) == 0 })

	type want struct {
		id      string
		attempt int
	}
	check := func(reader string, got []Delivery, wants ...want) {
		t.Helper()
		if len(got) != len(wants) {
			t.Fatalf("%s was handed %d deliveries, want %d", reader, len(got), len(wants))
		}
		for i, w := range wants {
			if got[i].Event.ID != w.id || got[i].Attempt != w.attempt {
				t.Errorf("%s: delivery %d is %s attempt %d, want %s attempt %d", reader, i, got[i].Event.ID, got[i].Attempt, w.id, w.attempt)
			}
		}
	}
	// Dies holding e1 before sending it: no attempt made.
	check("first process", readLane(t, q, stepAbandon), want{"e1", 1})
	// Attempt 1 fails; attempt 2 is under way when this process dies too.
	check("second process", readLane(t, q, stepAbandon, stepAbandon), want{"e1", 1}, want{"e1", 1})
	check("third process", readLane(t, q, stepRetry, stepAbandon), want{"e1", 1}, want{"e1", 2})
	// e1 succeeds as attempt 2 and only then does e2 come, as attempt 1.
	check("fourth process", readLane(t, q, stepDone, stepDone), want{"e1", 2}, want{"e2", 1})
	eventually(t, "the lane's record to be removed", func() bool { return streamMsgs(t, q, streamHolds) == 0 })
}

// TestOrderedLegacyHoldsRecord: a record stored before attempts were kept
// (seq, holds, first only) is still read, its attempts taken, as they were
// then, from the server's delivery count less the holds.
func TestOrderedLegacyHoldsRecord(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	if err := q.EnsureOrdered(ctx, "team-a", "ledger", "erp"); err != nil {
		t.Fatal(err)
	}
	publish(t, q, testEvent("team-a", "e1"))
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			return []Delivery{{Subscription: "ledger", SubscriptionUID: "u1", Ordered: true}}, nil
		})
	})
	// The old version held e1 once and retried it twice: four deliveries,
	// the fourth under way; its record says one hold.
	seqs := make(chan uint64, 4)
	n := 0
	stop := run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 1, func(_ context.Context, j *Job) {
			md, err := j.msg.Metadata()
			if err != nil {
				t.Error(err)
			}
			n++
			switch n {
			case 1:
				err = j.Hold(time.Now())
			case 2, 3:
				err = j.RetryAt(time.Now())
			default:
				j.Detach()
			}
			if err != nil {
				t.Error(err)
			}
			select {
			case seqs <- md.Sequence.Stream:
			default:
			}
		})
	})
	var seq uint64
	for range 4 {
		seq = <-seqs
	}
	stop()
	first := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e := encoder{}
	e.byte(codecV2)
	e.uvarint(seq)
	e.varint(1)
	e.time(first)
	if _, err := q.js.Publish(ctx, holdSubject(orderedConsumerName("team-a", "ledger")), e.b); err != nil {
		t.Fatal(err)
	}
	got := readLane(t, q, stepDone)
	// Five deliveries by the server's count, one of them a hold: the fifth
	// is attempt 4 (one original and two retries spent, plus the abandoned
	// fourth delivery, which the old version counted).
	if got[0].Attempt != 4 || got[0].Holds != 1 || !got[0].FirstAttempt.Equal(first) {
		t.Errorf("after a legacy record: attempt %d, %d holds, first %v; want attempt 4, 1 hold, first %v", got[0].Attempt, got[0].Holds, got[0].FirstAttempt, first)
	}
}
