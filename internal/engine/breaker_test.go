package engine

import (
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	h := health{cfg: BreakerConfig{Threshold: 3, MinCooldown: 5 * time.Second, MaxCooldown: 20 * time.Second}.withDefaults()}

	type step struct {
		at int
		op string // fail, probe-fail, ok, neutral, admit, peek
		// after the step
		state CircuitState
		// for admit and peek
		adm   admission
		until int // -1: zero time
	}
	steps := []step{
		{at: 0, op: "fail", state: CircuitClosed},
		{at: 0, op: "fail", state: CircuitClosed},
		{at: 0, op: "admit", state: CircuitClosed, adm: admitSend, until: -1},
		// The third failure in a row opens the circuit for MinCooldown.
		{at: 1, op: "fail", state: CircuitOpen},
		{at: 2, op: "peek", state: CircuitOpen, adm: admitHold, until: 6},
		{at: 3, op: "admit", state: CircuitOpen, adm: admitHold, until: 6},
		// A request started before the circuit opened fails late: no change.
		{at: 4, op: "fail", state: CircuitOpen},
		{at: 5, op: "admit", state: CircuitOpen, adm: admitHold, until: 6},
		// The cool-down ends: one probe, the rest wait for it.
		{at: 6, op: "admit", state: CircuitHalfOpen, adm: admitProbe, until: -1},
		{at: 6, op: "admit", state: CircuitHalfOpen, adm: admitHold, until: 11},
		{at: 6, op: "peek", state: CircuitHalfOpen, adm: admitHold, until: 11},
		// The probe fails: the cool-down doubles.
		{at: 7, op: "probe-fail", state: CircuitOpen},
		{at: 16, op: "admit", state: CircuitOpen, adm: admitHold, until: 17},
		{at: 17, op: "admit", state: CircuitHalfOpen, adm: admitProbe, until: -1},
		// A probe that says nothing (the message was bad) lets the next one
		// probe.
		{at: 17, op: "neutral", state: CircuitHalfOpen},
		{at: 17, op: "admit", state: CircuitHalfOpen, adm: admitProbe, until: -1},
		{at: 18, op: "probe-fail", state: CircuitOpen}, // cool-down 20s, the cap
		{at: 38, op: "admit", state: CircuitHalfOpen, adm: admitProbe, until: -1},
		{at: 39, op: "probe-fail", state: CircuitOpen}, // still 20s
		{at: 58, op: "peek", state: CircuitOpen, adm: admitHold, until: 59},
		{at: 59, op: "admit", state: CircuitHalfOpen, adm: admitProbe, until: -1},
		// Success closes, and the next opening starts at MinCooldown again.
		{at: 60, op: "ok", state: CircuitClosed},
		{at: 60, op: "peek", state: CircuitClosed, adm: admitSend, until: -1},
		{at: 61, op: "fail", state: CircuitClosed},
		{at: 61, op: "fail", state: CircuitClosed},
		{at: 61, op: "fail", state: CircuitOpen},
		{at: 65, op: "admit", state: CircuitOpen, adm: admitHold, until: 66},
	}
	for i, s := range steps {
		now := at(s.at)
		var adm admission
		var until time.Time
		switch s.op {
		case "fail":
			h.failure(now, false)
		case "probe-fail":
			h.failure(now, true)
		case "ok":
			h.success()
		case "neutral":
			h.neutral(true)
		case "admit":
			adm, until = h.admit(now)
		case "peek":
			var hold bool
			if hold, until = h.peek(now); hold {
				adm = admitHold
			}
		}
		if h.state != s.state {
			t.Fatalf("step %d (%s at %ds): state %s, want %s", i, s.op, s.at, h.state, s.state)
		}
		if s.op != "admit" && s.op != "peek" {
			continue
		}
		want := time.Time{}
		if s.until >= 0 {
			want = at(s.until)
		}
		if adm != s.adm || !until.Equal(want) {
			t.Fatalf("step %d (%s at %ds): admission %d until %v, want %d until %v", i, s.op, s.at, adm, until, s.adm, want)
		}
	}
}

func TestHealthAutoDisableClock(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	h := health{cfg: BreakerConfig{Threshold: 5}.withDefaults()}
	// Stray failures do not start the clock.
	for range 4 {
		h.failure(t0, false)
	}
	if h.failedFor(t0.Add(200*time.Hour), time.Hour) {
		t.Fatal("the clock started before repeated failures")
	}
	h.failure(t0.Add(time.Minute), false) // fifth: the circuit opens, the clock starts
	if h.failedFor(t0.Add(time.Minute+119*time.Hour), 120*time.Hour) {
		t.Fatal("disabled a day early")
	}
	if !h.failedFor(t0.Add(time.Minute+120*time.Hour), 120*time.Hour) {
		t.Fatal("not disabled after 120h of failures")
	}
	// A success stops the clock; probes keep failing, the clock does not
	// restart with each.
	h.success()
	if h.failedFor(t0.Add(500*time.Hour), time.Hour) {
		t.Fatal("the clock survived a success")
	}
}

func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	a := Snapshot{Process: "a", Started: at(0), Taken: at(100),
		Subscriptions: []SubscriptionStats{
			{Namespace: ns, Name: "s", UID: "u1", Counts: Counts{Delivered: 10, Failed: 3, Dead: 1, ConsecutiveFailures: 3, FailingSince: at(50), LastDeliveryTime: at(40), LastFailure: &Failure{Time: at(90), StatusCode: 500, Reason: "HTTP 500"}}},
			{Namespace: ns, Name: "old", UID: "u0", Counts: Counts{Delivered: 1}},
		},
		Endpoints: []EndpointStats{{Namespace: ns, Name: "e", Counts: Counts{Delivered: 10}, Circuit: CircuitOpen, NextProbe: at(120), InFlight: 1}},
	}
	b := Snapshot{Process: "b", Started: at(10), Taken: at(99),
		Subscriptions: []SubscriptionStats{
			{Namespace: ns, Name: "s", UID: "u1", Counts: Counts{Delivered: 5, Failed: 2, ConsecutiveFailures: 2, FailingSince: at(60), LastDeliveryTime: at(45), LastFailure: &Failure{Time: at(95), StatusCode: 503, Reason: "HTTP 503"}}},
		},
		Endpoints: []EndpointStats{{Namespace: ns, Name: "e", Counts: Counts{Delivered: 5}, Circuit: CircuitClosed, Disabled: true, DisabledSince: at(98), DisabledReason: "gone", Queued: 2}},
	}
	m := Merge(a, b)
	if len(m.Subscriptions) != 2 || len(m.Endpoints) != 1 || !m.Started.Equal(at(0)) || !m.Taken.Equal(at(100)) || m.Process != "" {
		t.Fatalf("merged %+v", m)
	}
	s := m.Subscriptions[1]
	if s.Name != "s" || s.Delivered != 15 || s.Failed != 5 || s.Dead != 1 || s.ConsecutiveFailures != 5 ||
		!s.FailingSince.Equal(at(50)) || !s.LastDeliveryTime.Equal(at(45)) || s.LastFailure.StatusCode != 503 {
		t.Errorf("merged subscription %+v", s)
	}
	e := m.Endpoints[0]
	if e.Delivered != 15 || e.Circuit != CircuitOpen || !e.NextProbe.Equal(at(120)) || !e.Disabled || e.DisabledReason != "gone" || e.InFlight != 1 || e.Queued != 2 {
		t.Errorf("merged endpoint %+v", e)
	}

	// A success after one process's streak began ends that streak.
	b.Subscriptions[0].LastDeliveryTime = at(55)
	if s := Merge(a, b).Subscriptions[1]; s.ConsecutiveFailures != 2 || !s.FailingSince.Equal(at(60)) {
		t.Errorf("streak across a later success: %d since %v, want 2 since %v", s.ConsecutiveFailures, s.FailingSince, at(60))
	}
	// Merging one snapshot changes nothing.
	if one := Merge(a); one.Subscriptions[1].Delivered != 10 || one.Subscriptions[1].ConsecutiveFailures != 3 {
		t.Errorf("Merge(a) = %+v", one.Subscriptions[1])
	}
}
