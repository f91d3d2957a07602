package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDeadListAndReplay(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	publish(t, q, testEvent("team-a", "e1"), testEvent("team-a", "e2"), testEvent("team-a", "e3"))
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })

	var replayed recorder
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 4, func(ctx context.Context, j *Job) {
			d := j.Delivery()
			var err error
			if d.Replay == 0 {
				err = j.Dead(DeadInfo{StatusCode: 503, Reason: "Service Unavailable"})
			} else {
				replayed.add(d)
				err = j.Done()
			}
			if err != nil {
				t.Errorf("resolving: %v", err)
			}
		})
	})
	var dead []DeadDelivery
	eventually(t, "three dead deliveries", func() bool {
		var err error
		dead, err = q.ListDead(ctx, sid("team-a", "billing"), 10)
		return err == nil && len(dead) == 3
	})
	for _, d := range dead {
		if d.Last.StatusCode != 503 || d.Last.Reason != "Service Unavailable" || d.Last.Time.IsZero() || d.Delivery.Endpoint != "erp" {
			t.Errorf("dead delivery %+v", d)
		}
	}
	if two, err := q.ListDead(ctx, sid("team-a", "billing"), 2); err != nil || len(two) != 2 || two[0].Delivery.Event.ID != dead[0].Delivery.Event.ID {
		t.Errorf("ListDead with limit 2: %d, %v", len(two), err)
	}

	// Nothing died before the first death.
	n, err := q.Replay(ctx, sid("team-a", "billing"), time.Time{}, dead[0].DiedAt.Add(-time.Millisecond))
	if err != nil || n != 0 {
		t.Fatalf("Replay of an empty range: %d, %v", n, err)
	}
	n, err = q.Replay(ctx, sid("team-a", "billing"), dead[0].DiedAt, time.Time{})
	if err != nil || n != 3 {
		t.Fatalf("Replay: %d, %v; want 3", n, err)
	}
	eventually(t, "replayed deliveries", func() bool { return replayed.len() == 3 })
	for _, s := range replayed.all() {
		if s.d.Attempt != 1 {
			t.Errorf("replayed %s as attempt %d, want 1", s.d.Event.ID, s.d.Attempt)
		}
	}
	if left, err := q.ListDead(ctx, sid("team-a", "billing"), 10); err != nil || len(left) != 0 {
		t.Fatalf("dead letters after replay: %d, %v", len(left), err)
	}

	if err := q.Forget(ctx, sid("team-a", "billing")); err != nil {
		t.Fatal(err)
	}
}

// TestResendOne: one dead delivery goes back by its seq, only through its
// own subscription object, and another object of the same name sees none.
func TestResendOne(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	publish(t, q, testEvent("team-a", "e1"), testEvent("team-a", "e2"))
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })
	var resent recorder
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 2, func(ctx context.Context, j *Job) {
			var err error
			if j.Delivery().Replay == 0 {
				err = j.Dead(DeadInfo{StatusCode: 500, Reason: "Internal Server Error"})
			} else {
				resent.add(j.Delivery())
				err = j.Done()
			}
			if err != nil {
				t.Errorf("resolving: %v", err)
			}
		})
	})
	billing := sid("team-a", "billing")
	var dead []DeadDelivery
	eventually(t, "two dead deliveries", func() bool {
		var err error
		dead, err = q.ListDead(ctx, billing, 10)
		return err == nil && len(dead) == 2
	})
	recreated := SubscriptionID{Namespace: "team-a", Name: "billing", UID: "uid-billing-2"}
	if other, err := q.ListDead(ctx, recreated, 10); err != nil || len(other) != 0 {
		t.Errorf("a new object of the same name lists %d dead deliveries, %v; want none", len(other), err)
	}
	for _, wrong := range []struct {
		sub SubscriptionID
		seq uint64
	}{{recreated, dead[0].Seq}, {sid("team-a", "shipping"), dead[0].Seq}, {billing, dead[1].Seq + 1000}} {
		if err := q.Resend(ctx, wrong.sub, wrong.seq); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resend(%v, %d) = %v, want ErrNotFound", wrong.sub, wrong.seq, err)
		}
	}
	if err := q.Resend(ctx, billing, dead[1].Seq); err != nil {
		t.Fatalf("Resend: %v", err)
	}
	eventually(t, "the resent delivery", func() bool { return resent.len() == 1 })
	if got := resent.all()[0].d; got.Event.ID != dead[1].Delivery.Event.ID || got.Attempt != 1 || got.Replay != dead[1].Seq {
		t.Errorf("resent %+v, want %s as attempt 1 replayed from %d", got, dead[1].Delivery.Event.ID, dead[1].Seq)
	}
	left, err := q.ListDead(ctx, billing, 10)
	if err != nil || len(left) != 1 || left[0].Seq != dead[0].Seq {
		t.Errorf("dead letters after resending one: %+v, %v; want only %d", left, err, dead[0].Seq)
	}
	if err := q.Resend(ctx, billing, dead[1].Seq); !errors.Is(err, ErrNotFound) {
		t.Errorf("resending twice: %v, want ErrNotFound", err)
	}
}
