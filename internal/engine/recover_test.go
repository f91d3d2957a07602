package engine

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
)

// TestRecoverDeliveredAndDead: a recovery sends every retained event the
// subscription matches again, those delivered and those that died, under
// the webhook-id of their first delivery; it leaves out other types, shows
// its progress in the subscription's figures, and the same request id
// returns the same recovery instead of sending again.
func TestRecoverDeliveredAndDead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var healed atomic.Bool
	rc := newReceiver(t, true, func(w http.ResponseWriter, r request) {
		if r.id() == "e3" && !healed.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp", schedule("1s"), func(s *hooklinev1.Subscription) {
		s.Spec.EventTypes = []string{"invoice.*"}
	})
	eng := f.start(testOptions())
	f.publish("e1", "e2", "e3")
	order := event("o1")
	order.Type = "order.created"
	if _, err := f.q.PublishEvent(context.Background(), order); err != nil {
		t.Fatal(err)
	}
	eventually(t, "e3 dead", func() bool { return len(f.dead("invoices")) == 1 })
	before := rc.byID()
	if len(before["e1"]) != 1 || len(before["e2"]) != 1 || len(before["e3"]) != 2 || len(before["o1"]) != 0 {
		t.Fatalf("before the recovery the receiver saw %d e1, %d e2, %d e3, %d o1", len(before["e1"]), len(before["e2"]), len(before["e3"]), len(before["o1"]))
	}
	healed.Store(true)

	sub := f.subscriptionID("invoices")
	ctx := context.Background()
	r, err := eng.Recover(ctx, sub, "req-1", time.Time{})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if r.ID != "req-1" || r.Subscription != sub {
		t.Errorf("Recover returned %+v", r)
	}
	eventually(t, "e1, e2 and e3 recovered", func() bool {
		got := rc.byID()
		return len(got["e1"]) == 2 && len(got["e2"]) == 2 && len(got["e3"]) == 3
	})
	sameWebhookIDs(t, rc, sub)
	eventually(t, "the recovery complete in the figures", func() bool {
		p := f.subscriptionStats("invoices").Recovery
		return p != nil && p.Phase == queue.RecoveryComplete
	})
	if p := f.subscriptionStats("invoices").Recovery; p.ID != "req-1" || p.Queued != 3 || p.Scanned != 4 {
		t.Errorf("recovery progress %+v, want 3 queued of 4 read", p)
	}

	again, err := eng.Recover(ctx, sub, "req-1", time.Time{})
	if err != nil || again.Phase != queue.RecoveryComplete || again.Queued != 3 || !again.StartedAt.Equal(r.StartedAt) {
		t.Errorf("the same request again: %+v, %v; want the finished recovery", again, err)
	}

	// Since a time after every event: nothing to send.
	late, err := eng.Recover(ctx, sub, "req-2", time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the empty recovery complete", func() bool {
		r, ok, err := f.q.LoadRecovery(ctx, sub, "req-2")
		late = r
		return err == nil && ok && r.Phase == queue.RecoveryComplete
	})
	if late.Queued != 0 {
		t.Errorf("a recovery since after the last event queued %d", late.Queued)
	}

	resumeFailedRecovery(t, f, eng, rc, sub)

	if _, err := eng.Recover(ctx, queue.SubscriptionID{Namespace: ns, Name: "invoices", UID: "another"}, "req-3", time.Time{}); err == nil {
		t.Error("a recovery of another object of the name was accepted")
	}
}

// TestMergeKeepsLatestRecovery: figures of several processes show the
// recovery updated last, whichever process ran it.
func TestMergeKeepsLatestRecovery(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	older := &RecoveryProgress{ID: "a", Phase: queue.RecoveryComplete, UpdatedAt: t0}
	newer := &RecoveryProgress{ID: "b", Phase: queue.RecoveryRunning, UpdatedAt: t0.Add(time.Second)}
	for _, c := range []struct {
		a, b Counts
		want *RecoveryProgress
	}{
		{Counts{}, Counts{}, nil},
		{Counts{Recovery: older}, Counts{}, older},
		{Counts{}, Counts{Recovery: newer}, newer},
		{Counts{Recovery: older}, Counts{Recovery: newer}, newer},
		{Counts{Recovery: newer}, Counts{Recovery: older}, newer},
	} {
		if got := c.a.merge(c.b).Recovery; got != c.want {
			t.Errorf("merge(%v, %v).Recovery = %v, want %v", c.a.Recovery, c.b.Recovery, got, c.want)
		}
	}
}

// sameWebhookIDs checks every request rc got is signed and carries the
// webhook-id of the event's first delivery through sub.
func sameWebhookIDs(t *testing.T, rc *receiver, sub queue.SubscriptionID) {
	t.Helper()
	for id, reqs := range rc.byID() {
		want := delivery.WebhookIDOf(ns, id, string(sub.UID))
		for _, req := range reqs {
			rc.verify(t, req)
			if req.webhookID() != want {
				t.Errorf("%s request %d has webhook-id %s, want %s like its first delivery", id, req.n, req.webhookID(), want)
			}
		}
	}
}

// resumeFailedRecovery: a failed recovery is resumed after its cursor by the
// same request.
func resumeFailedRecovery(t *testing.T, f *fixture, eng *Engine, rc *receiver, sub queue.SubscriptionID) {
	t.Helper()
	ctx := context.Background()
	// Only e3 and o1 come after the cursor (e2), and only e3 matches.
	evs, _, err := f.q.ListEvents(ctx, queue.EventQuery{Namespace: ns, Limit: 10})
	if err != nil || len(evs) != 4 {
		t.Fatalf("retained events: %d, %v", len(evs), err)
	}
	var cursor uint64
	for _, ev := range evs {
		if ev.Event.ID == "e2" {
			cursor = ev.Seq
		}
	}
	last, err := f.q.LastRetained(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failed := queue.Recovery{ID: "req-4", Subscription: sub, UpTo: last, Cursor: cursor, Scanned: 2, Queued: 2,
		Phase: queue.RecoveryFailed, Message: "interrupted", StartedAt: time.Now(), UpdatedAt: time.Now()}
	if err := f.q.SaveRecovery(ctx, &failed); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Recover(ctx, sub, "req-4", time.Time{}); err != nil {
		t.Fatal(err)
	}
	var resumed queue.Recovery
	eventually(t, "the resumed recovery complete", func() bool {
		r, ok, err := f.q.LoadRecovery(ctx, sub, "req-4")
		resumed = r
		return err == nil && ok && r.Phase == queue.RecoveryComplete
	})
	if resumed.Queued != 3 || resumed.Scanned != 4 {
		t.Errorf("resumed recovery: %d queued of %d read, want 3 of 4 (2 before it failed, e3 after)", resumed.Queued, resumed.Scanned)
	}
	eventually(t, "e3 a fourth time", func() bool { return len(rc.byID()["e3"]) == 4 })
	if got := rc.byID(); len(got["e1"]) != 2 || len(got["e2"]) != 2 {
		t.Errorf("the resumed recovery sent e1 %d and e2 %d times in all, want 2 each", len(got["e1"]), len(got["e2"]))
	}

}
