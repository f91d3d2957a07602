package queue

import (
	"context"
	"testing"
)

func TestPublishDeduplicates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	q := openTest(t, testConfig(dir))

	first, err := q.PublishEvent(ctx, testEvent("team-a", "evt_1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || first.Seq == 0 {
		t.Fatalf("first publish: %+v", first)
	}
	again, err := q.PublishEvent(ctx, testEvent("team-a", "evt_1"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Seq != first.Seq {
		t.Fatalf("repeat: %+v, want a duplicate of seq %d", again, first.Seq)
	}
	// Ids are per namespace.
	other, err := q.PublishEvent(ctx, testEvent("team-b", "evt_1"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Duplicate {
		t.Fatal("the same id in another namespace was taken for a duplicate")
	}
	if _, err := q.PublishEvent(ctx, Event{Namespace: "x"}); err == nil {
		t.Fatal("PublishEvent accepted an event without id")
	}

	// The server rebuilds its window from the stored events on restart.
	q.Close()
	q = openTest(t, testConfig(dir))
	res, err := q.PublishEvents(ctx, []Event{testEvent("team-a", "evt_1"), testEvent("team-a", "evt_2")})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate || res[0].Seq != first.Seq {
		t.Fatalf("repeat after restart: %+v, want a duplicate of seq %d", res[0], first.Seq)
	}
	if res[1].Duplicate {
		t.Fatalf("new event after restart taken for a duplicate: %+v", res[1])
	}
	if n := streamMsgs(t, q, streamEvents); n != 3 {
		t.Fatalf("events stream holds %d, want 3", n)
	}
}
