package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestKeyedLanes: deliveries of many keys spread over four keyed lanes,
// without key hashes, as an earlier release stored them. A key whose
// deliveries keep failing holds its own lane, and so the keys hashed to that
// lane, and no other: every other key arrives complete and in publish order.
// (With key hashes it holds only itself: TestKeyParking.) RemoveOrdered then removes every lane and what waits on
// it.
func TestKeyedLanes(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	const lanes, keys, perKey = 4, 12, 6
	keyOf := func(id string) string { k, _, _ := strings.Cut(id, "-"); return k }
	var evs []Event
	for seq := range perKey {
		for k := range keys {
			evs = append(evs, testEvent("team-a", fmt.Sprintf("k%02d-%d", k, seq)))
		}
	}
	publish(t, q, evs...)
	if err := q.EnsureKeyed(ctx, "team-a", "per.customer", "crm", lanes); err != nil {
		t.Fatal(err)
	}
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			return []Delivery{{Subscription: "per.customer", SubscriptionUID: "u1", Ordered: true, Lane: KeyLane(keyOf(ev.ID), lanes)}}, nil
		})
	})
	const failing = "k00"
	failLane := KeyLane(failing, lanes)
	var rec recorder
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 1, func(_ context.Context, j *Job) {
			d := j.Delivery()
			if want := KeyLane(keyOf(d.Event.ID), lanes); d.Lane != want {
				t.Errorf("%s came on lane %d, want %d", d.Event.ID, d.Lane, want)
			}
			if keyOf(d.Event.ID) == failing {
				_ = j.RetryAt(time.Now().Add(100 * time.Millisecond))
				return
			}
			rec.add(d)
			_ = j.Done()
		})
	})
	var free, held int
	for k := range keys {
		if KeyLane(fmt.Sprintf("k%02d", k), lanes) == failLane {
			held++
		} else {
			free++
		}
	}
	if free == 0 || held < 2 {
		t.Fatalf("the keys hash to too few lanes for this test: %d free, %d on the failing lane", free, held)
	}
	eventually(t, "every key off the failing lane", func() bool { return rec.len() >= free*perKey })

	next := map[string]int{}
	for _, s := range rec.all() {
		k := keyOf(s.d.Event.ID)
		if KeyLane(k, lanes) == failLane {
			t.Errorf("%s was delivered although it is behind the failing key on lane %d", s.d.Event.ID, failLane)
		}
		if want := fmt.Sprintf("%s-%d", k, next[k]); s.d.Event.ID != want {
			t.Errorf("key %s: got %s, want %s", k, s.d.Event.ID, want)
		}
		next[k]++
	}
	b, err := q.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := b.Ordered[SubscriptionKey{"team-a", "per.customer"}]; n != uint64(held*perKey) {
		t.Errorf("ordered backlog %d, want the %d deliveries of the failing lane", n, held*perKey)
	}

	if err := q.RemoveOrdered(ctx, "team-a", "per.customer"); err != nil {
		t.Fatal(err)
	}
	for lane := 1; lane <= lanes; lane++ {
		if _, err := q.deliveries.Consumer(ctx, laneConsumerName("team-a", "per.customer", lane)); err != jetstream.ErrConsumerNotFound {
			t.Errorf("consumer of lane %d after RemoveOrdered: %v", lane, err)
		}
	}
	if b, err = q.Backlog(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.Ordered[SubscriptionKey{"team-a", "per.customer"}]; n != 0 {
		t.Errorf("ordered backlog %d after RemoveOrdered", n)
	}
	_, kept, err := q.Kept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 0 {
		t.Errorf("lanes kept after RemoveOrdered: %v", kept)
	}
}

func TestSplitOrdered(t *testing.T) {
	tests := []struct {
		subject string
		ns, sub string
		lane    int
		err     bool
	}{
		{subject: laneSubjectOf("team-a", "ledger.sync", 0), ns: "team-a", sub: "ledger.sync"},
		{subject: laneSubjectOf("team-a", "ledger.sync", 7), ns: "team-a", sub: "ledger.sync", lane: 7},
		{subject: laneSubjectOf("team-a", "s", 256), ns: "team-a", sub: "s", lane: 256},
		{subject: keyParkSubject(&Delivery{Event: Event{Namespace: "team-a"}, Subscription: "ledger.sync", Lane: 7, KeyHash: 42}), ns: "team-a", sub: "ledger.sync", lane: 7},
		{subject: "hl.ord.team-a.s.7.2a", err: true},
		{subject: "hl.ord.team-a.s.7.zz00000000000000", err: true},
		{subject: "hl.ord.team-a.s.x", err: true},
		{subject: "hl.ord.team-a.s.0", err: true},
		{subject: "hl.ord.team-a", err: true},
		{subject: "hl.dlv.team-a.s", err: true},
	}
	for _, tt := range tests {
		ns, sub, lane, err := splitOrdered(tt.subject)
		if (err != nil) != tt.err || ns != tt.ns || sub != tt.sub || lane != tt.lane {
			t.Errorf("splitOrdered(%q) = %q, %q, %d, %v", tt.subject, ns, sub, lane, err)
		}
	}
}

// KeyLane is part of the stored layout: a key must keep its lane across
// versions, or its next deliveries would overtake those already queued.
func TestKeyLaneIsStable(t *testing.T) {
	got := []int{KeyLane("", 16), KeyLane("cus_42", 16), KeyLane("cus_43", 16), KeyLane("cus_42", 256), KeyLane("cus_42", 1)}
	want := []int{6, 2, 15, 226, 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("KeyLane = %v, want %v", got, want)
	}
	for _, lanes := range []int{1, 2, 16, MaxKeyLanes} {
		for i := range 1000 {
			if l := KeyLane(fmt.Sprint(i), lanes); l < 1 || l > lanes {
				t.Fatalf("KeyLane(%d, %d) = %d, out of range", i, lanes, l)
			}
		}
	}
	if a, b := laneConsumerName("a", "b", 0), laneConsumerName("a", "b", 3); a != orderedConsumerName("a", "b") || b != a+"__k3" {
		t.Errorf("lane consumer names %q, %q", a, b)
	}
}
