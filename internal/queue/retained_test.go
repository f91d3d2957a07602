package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func noMatch(context.Context, Event) ([]Delivery, error) { return nil, nil }

func retainedIDs(evs []RetainedEvent) []string {
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.Event.ID
	}
	return ids
}

// listAll pages through a listing with the given page size and returns the
// ids in the order the pages gave them.
func listAll(t *testing.T, q *Queue, eq EventQuery) []string {
	t.Helper()
	var ids []string
	for page := 0; ; page++ {
		evs, next, err := q.ListEvents(context.Background(), eq)
		if err != nil {
			t.Fatalf("ListEvents(%+v): %v", eq, err)
		}
		if len(evs) > eq.Limit {
			t.Fatalf("page of %d events, limit %d", len(evs), eq.Limit)
		}
		ids = append(ids, retainedIDs(evs)...)
		if next == 0 {
			return ids
		}
		if page > 100 {
			t.Fatal("listing does not end")
		}
		eq.Cursor = next
	}
}

// TestRetainedListing: every fanned-out event is retained, whether or not a
// subscription matched it, once however often its fan-out ran, and is listed
// by namespace and type in pages, oldest or newest first, and found by id.
func TestRetainedListing(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	var want, wantPaid []string
	for i := range 23 {
		ev := testEvent("team-a", fmt.Sprintf("e%02d", i))
		if i%3 == 0 {
			ev.Type = "order.created"
		} else {
			wantPaid = append(wantPaid, ev.ID)
		}
		want = append(want, ev.ID)
		publish(t, q, ev)
	}
	publish(t, q, testEvent("team-b", "b1"), testEvent("team-a-b", "x1"))
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, noMatch) })
	eventually(t, "25 retained events", func() bool { return streamMsgs(t, q, streamRetained) == 25 })

	if got := listAll(t, q, EventQuery{Namespace: "team-a", Limit: 5}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("oldest first in pages of 5:\n got %v\nwant %v", got, want)
	}
	if got := listAll(t, q, EventQuery{Namespace: "team-a", Limit: 100}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("oldest first in one page:\n got %v\nwant %v", got, want)
	}
	rev := make([]string, len(want))
	for i, id := range want {
		rev[len(want)-1-i] = id
	}
	for _, limit := range []int{1, 4, 100} {
		if got := listAll(t, q, EventQuery{Namespace: "team-a", Limit: limit, NewestFirst: true}); fmt.Sprint(got) != fmt.Sprint(rev) {
			t.Errorf("newest first in pages of %d:\n got %v\nwant %v", limit, got, rev)
		}
	}
	if got := listAll(t, q, EventQuery{Namespace: "team-a", Type: "invoice.paid", Limit: 4}); fmt.Sprint(got) != fmt.Sprint(wantPaid) {
		t.Errorf("type invoice.paid:\n got %v\nwant %v", got, wantPaid)
	}
	if got := listAll(t, q, EventQuery{Namespace: "team-b", Limit: 10}); fmt.Sprint(got) != "[b1]" {
		t.Errorf("team-b lists %v", got)
	}

	all, _, err := q.ListEvents(ctx, EventQuery{Namespace: "team-a", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	// A time window: events stored from the 5th to the 10th inclusive.
	window := EventQuery{Namespace: "team-a", Since: all[4].Stored, Until: all[9].Stored, Limit: 2}
	var inWindow, inWindowRev []string
	for _, e := range all {
		if !e.Stored.Before(window.Since) && !e.Stored.After(window.Until) {
			inWindow = append(inWindow, e.Event.ID)
			inWindowRev = append([]string{e.Event.ID}, inWindowRev...)
		}
	}
	if got := listAll(t, q, window); len(inWindow) < 6 || fmt.Sprint(got) != fmt.Sprint(inWindow) {
		t.Errorf("since/until oldest first:\n got %v\nwant %v", got, inWindow)
	}
	window.NewestFirst = true
	if got := listAll(t, q, window); fmt.Sprint(got) != fmt.Sprint(inWindowRev) {
		t.Errorf("since/until newest first:\n got %v\nwant %v", got, inWindowRev)
	}

	ev, err := q.GetEvent(ctx, "team-a", "e07")
	if err != nil || ev.Event.ID != "e07" || ev.Event.Type != "invoice.paid" || string(ev.Event.Data) != `{"id":"e07"}` || ev.Seq == 0 {
		t.Errorf("GetEvent e07 = %+v, %v", ev, err)
	}
	if _, err := q.GetEvent(ctx, "team-b", "e07"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetEvent of another namespace's event: %v, want ErrNotFound", err)
	}

	// A repeated fan-out (the event published again after its id left the
	// events' window is not one, but a crash between retaining and acking
	// is): the same message id is not retained twice.
	if _, err := q.publishRetained(q.publishAsync, &all[0].Event, nil); err != nil {
		t.Fatal(err)
	}
	fs, _ := q.publishRetained(q.publishAsync, &all[0].Event, nil)
	if err := await(ctx, fs); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, streamRetained); n != 25 {
		t.Errorf("%d retained events after a repeated fan-out, want 25", n)
	}

	if err := q.PurgeRetained(ctx, "team-a"); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, q, EventQuery{Namespace: "team-a", Limit: 10}); len(got) != 0 {
		t.Errorf("after purging team-a it lists %v", got)
	}
	if got := listAll(t, q, EventQuery{Namespace: "team-a-b", Limit: 10}); fmt.Sprint(got) != "[x1]" {
		t.Errorf("purging team-a took team-a-b's events: %v", got)
	}
}

// TestRetentionExpires: events leave the retained stream after the window.
func TestRetentionExpires(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.Retention = time.Second
	q := openTest(t, cfg)
	publish(t, q, testEvent("team-a", "old"))
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, noMatch) })
	eventually(t, "the event retained", func() bool { return streamMsgs(t, q, streamRetained) == 1 })
	ev, err := q.GetEvent(context.Background(), "team-a", "old")
	if err != nil || ev.Event.ID != "old" {
		t.Fatalf("GetEvent = %+v, %v", ev, err)
	}
	eventually(t, "the event to expire", func() bool {
		_, err := q.GetEvent(context.Background(), "team-a", "old")
		return errors.Is(err, ErrNotFound)
	})
	if got := listAll(t, q, EventQuery{Namespace: "team-a", Limit: 10}); len(got) != 0 {
		t.Errorf("expired events listed: %v", got)
	}
}

// TestRetentionOff: a negative window keeps nothing and says so.
func TestRetentionOff(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.Retention = -1
	q := openTest(t, cfg)
	publish(t, q, testEvent("team-a", "e1"))
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, noMatch) })
	eventually(t, "the event fanned out", func() bool { return streamMsgs(t, q, streamEvents) == 0 })
	if _, _, err := q.ListEvents(context.Background(), EventQuery{Namespace: "team-a", Limit: 1}); !errors.Is(err, ErrRetentionOff) {
		t.Errorf("ListEvents with retention off: %v", err)
	}
}
