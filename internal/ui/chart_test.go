package ui

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func TestDeliveryChart(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration, code int) Attempt {
		return Attempt{Time: now.Add(-ago), StatusCode: code, LatencySeconds: 0.01}
	}
	for _, c := range []struct {
		name     string
		attempts []Attempt
		ok, fail int
		// bucket index -> {ok, failed}
		buckets map[int][2]int
		summary string
	}{
		{name: "nothing", summary: "No attempts in the last 1h0m0s."},
		{
			name:     "ok and failed in their buckets",
			attempts: []Attempt{at(59*time.Minute, 204), at(58*time.Minute, 500), at(time.Minute, 200), at(0, 0)},
			ok:       2, fail: 2,
			buckets: map[int][2]int{0: {1, 1}, 11: {1, 1}},
			summary: "4 attempts in the last 1h0m0s: 2 succeeded, 2 failed (50% success).",
		},
		{
			name:     "outside the window left out",
			attempts: []Attempt{at(2*time.Hour, 200), at(-time.Minute, 200), at(30*time.Minute, 503)},
			fail:     1,
			buckets:  map[int][2]int{6: {0, 1}},
			summary:  "1 attempts in the last 1h0m0s: 0 succeeded, 1 failed (0% success).",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := deliveryChart(c.attempts, now, time.Hour, 12)
			if ch.OK != c.ok || ch.Failed != c.fail || ch.Summary != c.summary {
				t.Errorf("ok %d failed %d %q; want %d %d %q", ch.OK, ch.Failed, ch.Summary, c.ok, c.fail, c.summary)
			}
			for i, b := range ch.Buckets {
				want := c.buckets[i]
				if b.OK != want[0] || b.Failed != want[1] {
					t.Errorf("bucket %d: %d ok %d failed, want %v", i, b.OK, b.Failed, want)
				}
				if b.OKY+b.OKH != chartH || b.FailY+b.FailH != b.OKY {
					t.Errorf("bucket %d: bars do not stack from the bottom: %+v", i, b)
				}
			}
		})
	}
}

func TestLatencyPercentiles(t *testing.T) {
	var as []Attempt
	for i := 1; i <= 100; i++ {
		as = append(as, Attempt{StatusCode: 200, LatencySeconds: float64(i) / 1000})
	}
	as = append(as, Attempt{StatusCode: 0, LatencySeconds: 30}) // no answer: not a latency
	got := latencyPercentiles(as)
	want := Latency{N: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if (latencyPercentiles(nil) != Latency{}) {
		t.Error("no attempts should have no percentiles")
	}
}

func TestHealthOf(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: typ + " " + reason}
	}
	ready := cond(hooklinev1.ConditionReady, metav1.ConditionTrue, "Ready")
	for _, c := range []struct {
		conds     []metav1.Condition
		suspended bool
		want      string
	}{
		{nil, false, "Pending"},
		{[]metav1.Condition{ready}, true, "Suspended"},
		{[]metav1.Condition{ready, cond(hooklinev1.ConditionDisabled, metav1.ConditionTrue, "FailingTooLong")}, false, "Disabled"},
		{[]metav1.Condition{cond(hooklinev1.ConditionReady, metav1.ConditionFalse, "SecretNotFound")}, false, "Not ready"},
		{[]metav1.Condition{ready, cond(hooklinev1.ConditionDegraded, metav1.ConditionTrue, hooklinev1.ReasonCircuitOpen)}, false, "Circuit open"},
		{[]metav1.Condition{ready, cond(hooklinev1.ConditionDegraded, metav1.ConditionTrue, hooklinev1.ReasonDeliveryFailing)}, false, "Failing"},
		{[]metav1.Condition{ready, cond(hooklinev1.ConditionDelivering, metav1.ConditionTrue, "Delivering")}, false, "Delivering"},
		{[]metav1.Condition{ready}, false, "Ready"},
	} {
		if got := healthOf(c.conds, c.suspended); got.Label != c.want {
			t.Errorf("%v suspended=%v: %q, want %q", c.conds, c.suspended, got.Label, c.want)
		}
	}
}

func TestExcerptCutsOnARune(t *testing.T) {
	s := strings.Repeat("é", 10) // 20 bytes
	if got := excerpt(s, 5); got != "éé …" {
		t.Errorf("excerpt = %q", got)
	}
	if got := excerpt("short", 10); got != "short" {
		t.Errorf("excerpt = %q", got)
	}
}
