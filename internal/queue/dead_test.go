package queue

import (
	"context"
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
		dead, err = q.ListDead(ctx, "team-a", "billing", 10)
		return err == nil && len(dead) == 3
	})
	for _, d := range dead {
		if d.Last.StatusCode != 503 || d.Last.Reason != "Service Unavailable" || d.Last.Time.IsZero() || d.Delivery.Endpoint != "erp" {
			t.Errorf("dead delivery %+v", d)
		}
	}
	if two, err := q.ListDead(ctx, "team-a", "billing", 2); err != nil || len(two) != 2 || two[0].Delivery.Event.ID != dead[0].Delivery.Event.ID {
		t.Errorf("ListDead with limit 2: %d, %v", len(two), err)
	}

	// Nothing died before the first death.
	n, err := q.Replay(ctx, "team-a", "billing", time.Time{}, dead[0].DiedAt.Add(-time.Millisecond))
	if err != nil || n != 0 {
		t.Fatalf("Replay of an empty range: %d, %v", n, err)
	}
	n, err = q.Replay(ctx, "team-a", "billing", dead[0].DiedAt, time.Time{})
	if err != nil || n != 3 {
		t.Fatalf("Replay: %d, %v; want 3", n, err)
	}
	eventually(t, "replayed deliveries", func() bool { return replayed.len() == 3 })
	for _, s := range replayed.all() {
		if s.d.Attempt != 1 {
			t.Errorf("replayed %s as attempt %d, want 1", s.d.Event.ID, s.d.Attempt)
		}
	}
	if left, err := q.ListDead(ctx, "team-a", "billing", 10); err != nil || len(left) != 0 {
		t.Fatalf("dead letters after replay: %d, %v", len(left), err)
	}

	if err := q.PurgeSubscription(ctx, "team-a", "billing"); err != nil {
		t.Fatal(err)
	}
}
