package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRetryAtFiresNotEarly(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	publish(t, q, testEvent("team-a", "e1"))
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })

	var rec recorder
	retryAt := make(chan time.Time, 1)
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 4, func(ctx context.Context, j *Job) {
			if rec.add(j.Delivery()) == 1 {
				at := time.Now().Add(2 * time.Second)
				retryAt <- at
				if err := j.RetryAt(at); err != nil {
					t.Errorf("RetryAt: %v", err)
				}
				// Exactly one resolution.
				if err := j.Done(); !errors.Is(err, ErrResolved) {
					t.Errorf("second resolution: got %v, want ErrResolved", err)
				}
				return
			}
			if err := j.InProgress(); err != nil {
				t.Errorf("InProgress: %v", err)
			}
			if err := j.Done(); err != nil {
				t.Errorf("Done: %v", err)
			}
		})
	})
	eventually(t, "the retry", func() bool { return rec.len() == 2 })
	at := <-retryAt
	got := rec.all()
	first, second := got[0].d, got[1].d
	if second.Attempt != 2 || first.Attempt != 1 {
		t.Fatalf("attempts %d then %d, want 1 then 2", first.Attempt, second.Attempt)
	}
	if got[1].at.Before(at) {
		t.Fatalf("retry arrived %v early", at.Sub(got[1].at))
	}
	if !second.FirstAttempt.Equal(first.FirstAttempt) || first.FirstAttempt.IsZero() {
		t.Errorf("FirstAttempt %v then %v, want kept", first.FirstAttempt, second.FirstAttempt)
	}
	if second.Event.ID != "e1" || string(second.Event.Data) != `{"id":"e1"}` || second.Endpoint != "erp" {
		t.Errorf("retry lost content: %+v", second)
	}
	eventually(t, "the retry to be acknowledged", func() bool { return streamMsgs(t, q, streamDeliveries) == 0 })
}

func TestHoldKeepsAttempt(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	publish(t, q, testEvent("team-a", "e1"))
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })

	var rec recorder
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 4, func(ctx context.Context, j *Job) {
			var err error
			switch rec.add(j.Delivery()) {
			case 1:
				// Due already: republished at once.
				err = j.Hold(time.Now().Add(-time.Second))
			case 2:
				// A second hold of the same attempt must not be taken for a
				// duplicate of the first.
				err = j.Hold(time.Now().Add(time.Second))
			default:
				err = j.Done()
			}
			if err != nil {
				t.Errorf("resolving: %v", err)
			}
		})
	})
	eventually(t, "two holds and the attempt", func() bool { return rec.len() == 3 })
	for i, s := range rec.all() {
		if s.d.Attempt != 1 {
			t.Errorf("delivery %d has attempt %d, want 1: holds do not spend retry budget", i, s.d.Attempt)
		}
		if s.d.Holds != i {
			t.Errorf("delivery %d has %d holds, want %d", i, s.d.Holds, i)
		}
	}
}

func TestUnacknowledgedDeliveriesComeBackAfterReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q := openTest(t, testConfig(dir))
	publish(t, q, testEvent("team-a", "e1"), testEvent("team-a", "e2"), testEvent("team-a", "e3"))
	stopFanout := run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })
	eventually(t, "fan-out", func() bool { return streamMsgs(t, q, streamDeliveries) == 3 })
	stopFanout()

	// A process that takes deliveries and dies before resolving them.
	var taken recorder
	stop := run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 4, func(ctx context.Context, j *Job) { taken.add(j.Delivery()) })
	})
	eventually(t, "deliveries taken", func() bool { return taken.len() == 3 })
	stop()
	q.Close()

	q = openTest(t, testConfig(dir))
	var done recorder
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 4, func(ctx context.Context, j *Job) {
			done.add(j.Delivery())
			if err := j.Done(); err != nil {
				t.Errorf("Done: %v", err)
			}
		})
	})
	eventually(t, "redelivery after reopening", func() bool { return done.len() >= 3 })
	ids := map[string]bool{}
	for _, s := range done.all() {
		ids[s.d.Event.ID] = true
	}
	if len(ids) != 3 {
		t.Fatalf("redelivered %v, want e1..e3", ids)
	}
	eventually(t, "the stream to empty", func() bool { return streamMsgs(t, q, streamDeliveries) == 0 })
}

func TestScheduledRetrySurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q := openTest(t, testConfig(dir))
	d := Delivery{Event: testEvent("team-a", "e1"), Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp", Attempt: 2}
	at := time.Now().Add(2 * time.Second)
	ctx := context.Background()
	if err := q.publishAt(ctx, &d, at); err != nil {
		t.Fatal(err)
	}
	q.Close()

	q = openTest(t, testConfig(dir))
	var rec recorder
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 1, func(ctx context.Context, j *Job) {
			rec.add(j.Delivery())
			_ = j.Done()
		})
	})
	eventually(t, "the scheduled retry", func() bool { return rec.len() == 1 })
	if s := rec.all()[0]; s.at.Before(at) || s.d.Attempt != 2 {
		t.Fatalf("got attempt %d at %v, want attempt 2 not before %v", s.d.Attempt, s.at, at)
	}
}
