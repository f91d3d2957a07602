package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/queue/queuetest"
)

// oldDelivery is a delivery of subscription sub (object uid) to endpoint shop.
func oldDelivery(id, sub, uid string) queue.Delivery {
	return queue.Delivery{
		Event:        queue.Event{Namespace: "team-a", ID: id, Type: "order.created", Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Data: []byte(`{}`)},
		Subscription: sub, SubscriptionUID: uid, Endpoint: "shop", Attempt: 4,
	}
}

// oldSubjects lists the subjects of the old layout still holding messages.
func oldSubjects(t *testing.T, q *queue.Queue) []string {
	t.Helper()
	js, err := jetstream.New(q.Conn())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for stream, filter := range map[string]string{"HL_DELIVERIES": "hl.park.*.*", "HL_DEAD": "hl.dead.*.*", "HL_ATTEMPTS": "hl.att.*.*"} {
		s, err := js.Stream(context.Background(), stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(filter))
		if err != nil {
			t.Fatal(err)
		}
		for subj := range info.State.Subjects {
			out = append(out, subj)
		}
	}
	sort.Strings(out)
	return out
}

// TestMigrateOldSubjectLayout: dead letters, parked deliveries and attempt
// logs stored under the old subject layout (no subscription in parking
// subjects, no UID in dead-letter and attempt subjects) are moved to the new
// one when the queue is opened, in order, once, also when a run is killed
// between a copy and its delete; an attempt log whose subscription's UID
// nothing names stays where it was.
func TestMigrateOldSubjectLayout(t *testing.T) {
	dir := t.TempDir()
	open := func() *queue.Queue {
		return queuetest.Open(t, func(c *queue.Config) { c.DataDir = dir })
	}
	ctx := context.Background()
	q := open()
	js, err := jetstream.New(q.Conn())
	if err != nil {
		t.Fatal(err)
	}
	died := time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)
	for _, m := range []struct {
		subject string
		data    []byte
	}{
		{"hl.dead.team-a.orders", queue.OldLayoutDead(oldDelivery("d1", "orders", "uid-1"), queue.DeadInfo{StatusCode: 503, Reason: "HTTP 503", Time: died})},
		{"hl.park.team-a.shop", queue.OldLayoutParked(oldDelivery("p1", "orders", "uid-1"))},
		{"hl.dead.team-a.my_2ehook", queue.OldLayoutDead(oldDelivery("d2", "my.hook", "uid-2"), queue.DeadInfo{StatusCode: 500, Reason: "HTTP 500", Time: died})},
		{"hl.att.team-a.orders", queue.OldLayoutAttempts(queue.Attempt{Time: died, Attempt: 1, StatusCode: 503}, queue.Attempt{Time: died, Attempt: 2, StatusCode: 503})},
		{"hl.dead.team-a.orders", queue.OldLayoutDead(oldDelivery("d3", "orders", "uid-1"), queue.DeadInfo{StatusCode: 503, Reason: "HTTP 503", Time: died})},
		{"hl.park.team-a.shop", queue.OldLayoutParked(oldDelivery("p2", "billing", "uid-3"))},
		{"hl.park.team-a.shop", queue.OldLayoutParked(oldDelivery("p3", "orders", "uid-1"))},
		{"hl.att.team-a.ghost", queue.OldLayoutAttempts(queue.Attempt{Time: died, Attempt: 1, StatusCode: 500})},
	} {
		if _, err := js.Publish(ctx, m.subject, m.data); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()

	// Killed after the second copy, before deleting what it copied.
	copies := 0
	queue.SetMigrateHook(func() error {
		if copies++; copies == 2 {
			return errors.New("killed")
		}
		return nil
	})
	open().Close()
	queue.SetMigrateHook(nil)

	for run := range 2 {
		q = open()
		check := func(what string, got, want any) {
			t.Helper()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("run %d, %s: got %v, want %v", run, what, got, want)
			}
		}
		orders := queue.SubscriptionID{Namespace: "team-a", Name: "orders", UID: "uid-1"}
		dead, err := q.ListDead(ctx, orders, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range dead {
			ids = append(ids, d.Delivery.Event.ID)
			check("diedAt of "+d.Delivery.Event.ID, d.DiedAt.UTC(), died)
			check("reason of "+d.Delivery.Event.ID, d.Last.Reason, "HTTP 503")
		}
		check("dead letters of orders", ids, []string{"d1", "d3"})
		other, err := q.ListDead(ctx, queue.SubscriptionID{Namespace: "team-a", Name: "my.hook", UID: "uid-2"}, 10)
		if err != nil {
			t.Fatal(err)
		}
		check("dead letters of my.hook", len(other), 1)
		parked, err := q.ParkedSubscriptions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		check("parked", parked, map[queue.ParkedKey]uint64{
			{Namespace: "team-a", Endpoint: "shop", Subscription: "orders"}:  2,
			{Namespace: "team-a", Endpoint: "shop", Subscription: "billing"}: 1,
		})
		atts, err := q.RecentAttempts(ctx, orders, 10)
		if err != nil {
			t.Fatal(err)
		}
		check("attempts of orders", len(atts), 2)
		// The ghost's log names no UID anywhere: it stays, for max age.
		check("old subjects left", oldSubjects(t, q), []string{"hl.att.team-a.ghost"})
		q.Close()
	}
}
