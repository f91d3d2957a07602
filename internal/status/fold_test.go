package status

import (
	"testing"
	"time"

	"github.com/hookline/hookline/internal/engine"
)

func snap(process string, taken time.Time, delivered uint64) engine.Snapshot {
	return engine.Snapshot{
		Process: process, Started: at(0), Taken: taken,
		Subscriptions: []engine.SubscriptionStats{{Namespace: "team-a", Name: "invoices", UID: "uid-sub",
			Counts: engine.Counts{Delivered: delivered, LastDeliveryTime: taken}}},
		Endpoints: []engine.EndpointStats{{Namespace: "team-a", Name: "billing", UID: "uid-ep",
			Counts: engine.Counts{Delivered: delivered, LastDeliveryTime: taken}, Circuit: engine.CircuitOpen, NextProbe: taken.Add(time.Minute), InFlight: 1}},
	}
}

func everythingAlive(objKind, string, string, string) bool { return true }

func TestReportRoundTrip(t *testing.T) {
	s := snap("p1", at(5), 3)
	s.Endpoints[0].Disabled, s.Endpoints[0].DisabledReason = true, "gone"
	data, err := encodeReport(report{Final: true, Applied: map[string]string{"team-a/billing": "v1"}, Snapshot: s})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeReport(data)
	if err != nil {
		t.Fatal(err)
	}
	e := got.Snapshot.Endpoints[0]
	if !got.Final || got.Applied["team-a/billing"] != "v1" || got.Snapshot.Process != "p1" ||
		e.Circuit != engine.CircuitOpen || !e.Disabled || e.Delivered != 3 || !e.NextProbe.Equal(at(65)) ||
		got.Snapshot.Subscriptions[0].Delivered != 3 {
		t.Fatalf("round trip lost something: %+v", got)
	}
}

func TestFoldOnce(t *testing.T) {
	now := at(1000)
	live := entry{key: "p.a.0", rep: report{Snapshot: snap("a", now.Add(-time.Second), 10)}}
	stale := entry{key: "p.b.0", rep: report{Snapshot: snap("b", now.Add(-2*time.Minute), 5)}}
	final := entry{key: "p.c.0", rep: report{Final: true, Snapshot: snap("c", now.Add(-time.Second), 7)}}

	f := fold(base{}, []entry{live, stale, final}, now, time.Minute, everythingAlive)
	if !f.changed || len(f.live) != 1 || f.live[0].key != "p.a.0" {
		t.Fatalf("fold: changed=%v live=%v", f.changed, f.live)
	}
	if got := f.base.Snapshot.Subscriptions[0].Delivered; got != 12 {
		t.Fatalf("base holds %d deliveries, want 5+7", got)
	}
	if ep := f.base.Snapshot.Endpoints[0]; ep.Circuit != engine.CircuitClosed || ep.InFlight != 0 {
		t.Fatalf("the base keeps a gone process's present: %+v", ep)
	}
	if len(f.remove) != 2 {
		t.Fatalf("remove %v", f.remove)
	}

	// A crash after the base was written and before the keys were deleted:
	// the next round sees the same entries and must not count them again.
	again := fold(f.base, []entry{live, stale, final}, now.Add(2*time.Second), time.Minute, everythingAlive)
	if again.changed {
		t.Fatal("keys already folded were folded again")
	}
	if len(again.remove) != 2 || len(again.live) != 1 {
		t.Fatalf("after the crash: remove %v live %d", again.remove, len(again.live))
	}
	merged := mergeReports(again.base.Snapshot, again.live, index{}, now, 6*time.Second)
	if got := merged.Subscriptions[0].Delivered; got != 22 {
		t.Fatalf("merged %d deliveries, want 10+5+7", got)
	}

	// Once the keys are gone, the next fold forgets them.
	later := entry{key: "p.a.0", rep: report{Snapshot: snap("a", now.Add(-3*time.Minute), 10)}}
	last := fold(again.base, []entry{later}, now, time.Minute, everythingAlive)
	if len(last.base.Folded) != 1 || last.base.Folded[0].Key != "p.a.0" {
		t.Fatalf("folded keys %v, want only p.a.0", last.base.Folded)
	}
	if got := last.base.Snapshot.Subscriptions[0].Delivered; got != 22 {
		t.Fatalf("base %d, want 22", got)
	}
}

func TestFoldDropsFiguresOfDeletedObjects(t *testing.T) {
	now := at(1000)
	gone := entry{key: "p.b.0", rep: report{Final: true, Snapshot: snap("b", now, 5)}}
	onlyEndpoint := func(kind objKind, _, _, _ string) bool { return kind == kindEndpoint }
	f := fold(base{}, []entry{gone}, now, time.Minute, onlyEndpoint)
	if len(f.base.Snapshot.Subscriptions) != 0 || len(f.base.Snapshot.Endpoints) != 1 {
		t.Fatalf("base %+v", f.base.Snapshot)
	}
}

func TestMergeReports(t *testing.T) {
	now := at(1000)
	a := snap("a", now, 3)
	b := snap("b", now.Add(-time.Minute), 4) // too old to say anything about circuits
	b.Endpoints[0].UID = ""                  // the engine did not know the UID yet
	b.Endpoints[0].Disabled, b.Endpoints[0].DisabledReason = true, "gone"
	ix := index{
		endpoints: map[nsName]indexedEndpoint{{"team-a", "billing"}: {uid: "uid-ep", enable: "v2"}},
		subs:      map[nsName]string{{"team-a", "invoices"}: "uid-sub"},
	}
	entries := []entry{
		{key: "p.a.0", rep: report{Snapshot: a}},
		{key: "p.b.0", rep: report{Snapshot: b, Applied: map[string]string{"team-a/billing": "v1"}}},
	}
	m := mergeReports(engine.Snapshot{}, entries, ix, now, 6*time.Second)
	if len(m.Endpoints) != 1 {
		t.Fatalf("endpoints %+v, want the UID-less figures merged into uid-ep", m.Endpoints)
	}
	ep := m.Endpoints[0]
	if ep.Delivered != 7 || ep.InFlight != 1 || ep.Circuit != engine.CircuitOpen {
		t.Fatalf("merged endpoint %+v", ep)
	}
	if ep.Disabled {
		t.Fatal("a disable by a process that had not applied the enable value in force counted")
	}

	entries[1].rep.Applied["team-a/billing"] = "v2"
	if m := mergeReports(engine.Snapshot{}, entries, ix, now, 6*time.Second); !m.Endpoints[0].Disabled {
		t.Fatal("a disable after the enable value in force was applied did not count")
	}
}

func TestSubtract(t *testing.T) {
	done := snap("a", at(10), 5)
	now := snap("a", at(20), 8)
	got := subtract(now, &done)
	if got.Subscriptions[0].Delivered != 3 || got.Endpoints[0].Delivered != 3 || !got.Endpoints[0].LastDeliveryTime.Equal(at(20)) {
		t.Fatalf("subtract: %+v", got)
	}
	if now.Subscriptions[0].Delivered != 8 {
		t.Fatal("subtract changed its input")
	}
}
