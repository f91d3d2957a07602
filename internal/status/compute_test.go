package status

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func endpointObj(annotations map[string]string, st hooklinev1.WebhookEndpointStatus) *hooklinev1.WebhookEndpoint {
	return &hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing", UID: "uid-ep", Annotations: annotations},
		Status:     st,
	}
}

func cond(typ string, status metav1.ConditionStatus, reason, msg string, ltt time.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(ltt)}
}

func findCond(t *testing.T, conds []metav1.Condition, typ string) metav1.Condition {
	t.Helper()
	for _, c := range conds {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("no %s condition in %+v", typ, conds)
	return metav1.Condition{}
}

func TestDeliveryConditions(t *testing.T) {
	fail := &engine.Failure{Time: at(20), StatusCode: 503, Reason: "HTTP 503 Service Unavailable"}
	tests := []struct {
		name                 string
		counts               *engine.Counts
		ep                   endpointHealth
		endpoint             string
		delivering, degraded metav1.ConditionStatus
		reason               string
		msgHas               string
	}{
		{"nothing yet", nil, endpointHealth{}, "", "False", "False", hooklinev1.ReasonNoDeliveries, "No delivery"},
		{"zero counts", &engine.Counts{}, endpointHealth{}, "", "False", "False", hooklinev1.ReasonNoDeliveries, "No delivery"},
		{"last succeeded", &engine.Counts{Delivered: 3, Failed: 1, LastDeliveryTime: at(30), LastFailure: fail}, endpointHealth{}, "",
			"True", "False", hooklinev1.ReasonDelivering, "succeeded"},
		{"last failed", &engine.Counts{Delivered: 3, Failed: 2, ConsecutiveFailures: 2, LastDeliveryTime: at(10), LastFailure: fail}, endpointHealth{}, "",
			"False", "True", hooklinev1.ReasonDeliveryFailing, "HTTP 503 Service Unavailable"},
		{"streak of another replica interrupted, but the last outcome failed",
			&engine.Counts{Delivered: 3, Failed: 2, LastDeliveryTime: at(10), LastFailure: fail}, endpointHealth{}, "",
			"False", "True", hooklinev1.ReasonDeliveryFailing, "HTTP 503"},
		{"circuit open", &engine.Counts{Failed: 5, ConsecutiveFailures: 5, LastFailure: fail},
			endpointHealth{circuit: engine.CircuitOpen, nextProbe: at(60), last: fail}, "",
			"False", "True", hooklinev1.ReasonCircuitOpen, "2026-11-26T12:01:00Z"},
		{"subscription of an open circuit", &engine.Counts{Delivered: 1, LastDeliveryTime: at(1)},
			endpointHealth{circuit: engine.CircuitOpen, nextProbe: at(60), last: fail}, "billing",
			"False", "True", hooklinev1.ReasonCircuitOpen, `Endpoint "billing" failed repeatedly`},
		{"half-open is not open", &engine.Counts{Delivered: 1, LastDeliveryTime: at(1)},
			endpointHealth{circuit: engine.CircuitHalfOpen}, "", "True", "False", hooklinev1.ReasonDelivering, ""},
		{"disabled", &engine.Counts{Delivered: 1, LastDeliveryTime: at(1)}, endpointHealth{disabled: true, circuit: engine.CircuitOpen}, "",
			"False", "True", hooklinev1.ReasonEndpointDisabled, "re-enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dl, dg := deliveryConditions(tt.counts, tt.ep, tt.endpoint)
			if dl.Status != tt.delivering || dg.Status != tt.degraded || dl.Reason != tt.reason || dg.Reason != tt.reason {
				t.Fatalf("Delivering=%s/%s Degraded=%s/%s, want %s/%s %s/%s", dl.Status, dl.Reason, dg.Status, dg.Reason,
					tt.delivering, tt.reason, tt.degraded, tt.reason)
			}
			if !strings.Contains(dl.Message, tt.msgHas) || dl.Message != dg.Message {
				t.Fatalf("message %q, want it to contain %q", dl.Message, tt.msgHas)
			}
			if dl.Type != hooklinev1.ConditionDelivering || dg.Type != hooklinev1.ConditionDegraded {
				t.Fatalf("types %s, %s", dl.Type, dg.Type)
			}
		})
	}
}

func TestDisabledCondition(t *testing.T) {
	disabledTrue := cond(hooklinev1.ConditionDisabled, "True", hooklinev1.ReasonEndpointGone,
		"The receiver answered 410 Gone; deliveries are held until the endpoint is re-enabled."+reEnableHint+"kubectl ...", at(0))
	enabledAfter := cond(hooklinev1.ConditionDisabled, "False", hooklinev1.ReasonEnabled, "Re-enabled by hookline.io/enable=v1; ...", at(5))
	gone := &engine.EndpointStats{Disabled: true, DisabledReason: "The receiver answered 410 Gone; deliveries are held until the endpoint is re-enabled."}
	tests := []struct {
		name        string
		annotations map[string]string
		status      hooklinev1.WebhookEndpointStatus
		stats       *engine.EndpointStats
		want        metav1.ConditionStatus
		reason      string
		handled     string
	}{
		{"never disabled", nil, hooklinev1.WebhookEndpointStatus{}, nil, "False", hooklinev1.ReasonEnabled, ""},
		{"a process disabled it", nil, hooklinev1.WebhookEndpointStatus{}, gone, "True", hooklinev1.ReasonEndpointGone, ""},
		{"sticky without figures", nil, hooklinev1.WebhookEndpointStatus{Conditions: []metav1.Condition{disabledTrue}}, nil,
			"True", hooklinev1.ReasonEndpointGone, ""},
		{"new enable value clears it", map[string]string{hooklinev1.AnnotationEnable: "v1"},
			hooklinev1.WebhookEndpointStatus{Conditions: []metav1.Condition{disabledTrue}}, nil, "False", hooklinev1.ReasonEnabled, "v1"},
		{"handled value does nothing", map[string]string{hooklinev1.AnnotationEnable: "v1"},
			hooklinev1.WebhookEndpointStatus{Conditions: []metav1.Condition{disabledTrue}, LastHandledEnable: "v1"}, nil,
			"True", hooklinev1.ReasonEndpointGone, "v1"},
		{"disabled again after the enable", map[string]string{hooklinev1.AnnotationEnable: "v1"},
			hooklinev1.WebhookEndpointStatus{Conditions: []metav1.Condition{enabledAfter}, LastHandledEnable: "v1"},
			&engine.EndpointStats{Disabled: true, DisabledReason: "Every delivery has failed for more than 1h0m0s (since x); last: HTTP 500."},
			"True", hooklinev1.ReasonFailingTooLong, "v1"},
		{"removed annotation keeps the handled value", nil,
			hooklinev1.WebhookEndpointStatus{Conditions: []metav1.Condition{enabledAfter}, LastHandledEnable: "v1"}, nil,
			"False", hooklinev1.ReasonEnabled, "v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := endpointObj(tt.annotations, tt.status)
			st, h := endpointStatus(ep, tt.stats, 0, at(100))
			c := findCond(t, st.Conditions, hooklinev1.ConditionDisabled)
			if c.Status != tt.want || c.Reason != tt.reason || st.LastHandledEnable != tt.handled {
				t.Fatalf("Disabled=%s/%s handled %q, want %s/%s %q (%s)", c.Status, c.Reason, st.LastHandledEnable,
					tt.want, tt.reason, tt.handled, c.Message)
			}
			if h.disabled != (tt.want == "True") {
				t.Fatalf("health disabled=%v", h.disabled)
			}
			if c.Status == "True" && !strings.Contains(c.Message, "kubectl annotate webhookendpoint billing -n team-a hookline.io/enable=") &&
				!strings.Contains(c.Message, "kubectl ...") {
				t.Fatalf("message does not say how to re-enable: %q", c.Message)
			}
		})
	}
}

func TestDisableReason(t *testing.T) {
	for sentence, want := range map[string]string{
		"The receiver answered 410 Gone; deliveries are held until the endpoint is re-enabled.":                               hooklinev1.ReasonEndpointGone,
		"The receiver asked to disable the endpoint (webhook-delivery: disable); deliveries are held until it is re-enabled.": hooklinev1.ReasonReceiverRequested,
		"Every delivery has failed for more than 120h0m0s (since 2026-11-26T12:00:00Z); last: HTTP 410 Gone.":                 hooklinev1.ReasonFailingTooLong,
		"disabled by hand": hooklinev1.ReasonEndpointDisabled,
	} {
		if got := disableReason(sentence); got != want {
			t.Errorf("disableReason(%q) = %s, want %s", sentence, got, want)
		}
		msg := sentence + reEnableHint + "kubectl annotate ..."
		if got := disableSentence(msg); got != sentence {
			t.Errorf("disableSentence(%q) = %q", msg, got)
		}
	}
}

func TestTransitionKeepsTimeWhileStatusStays(t *testing.T) {
	cur := []metav1.Condition{cond(hooklinev1.ConditionDelivering, "True", hooklinev1.ReasonDelivering, "old", at(0))}
	same := transition(cur, condition(hooklinev1.ConditionDelivering, true, hooklinev1.ReasonDelivering, "new message"), at(50))
	if !same.LastTransitionTime.Time.Equal(at(0)) {
		t.Fatalf("lastTransitionTime moved to %s without a change of status", same.LastTransitionTime)
	}
	flipped := transition(cur, condition(hooklinev1.ConditionDelivering, false, hooklinev1.ReasonDeliveryFailing, "x"), at(50).Add(300*time.Millisecond))
	if !flipped.LastTransitionTime.Time.Equal(at(50)) {
		t.Fatalf("lastTransitionTime %s, want %s truncated to the second", flipped.LastTransitionTime, at(50))
	}
}

func TestDeliveryStatus(t *testing.T) {
	if d := deliveryStatus(nil, 0); d != nil {
		t.Fatalf("no figures and no backlog: %+v, want nil", d)
	}
	if d := deliveryStatus(nil, 4); d == nil || d.Backlog != 4 {
		t.Fatalf("backlog only: %+v", d)
	}
	long := strings.Repeat("é", 600)
	d := deliveryStatus(&engine.Counts{
		Delivered: 7, Failed: 2, Dead: 1, ConsecutiveFailures: 2,
		LastDeliveryTime: at(3).Add(900 * time.Millisecond),
		LastFailure:      &engine.Failure{Time: at(9), StatusCode: 500, Reason: long},
	}, 0)
	if d.Delivered != 7 || d.Failed != 2 || d.Dead != 1 || d.ConsecutiveFailures != 2 || !d.LastDeliveryTime.Time.Equal(at(3)) {
		t.Fatalf("delivery status %+v", d)
	}
	if d.LastFailure.StatusCode != 500 || len(d.LastFailure.Reason) > 1024 || !strings.HasPrefix(long, d.LastFailure.Reason) {
		t.Fatalf("last failure %+v", d.LastFailure)
	}
}

func TestSameStatusComparesToTheSecond(t *testing.T) {
	c := engine.Counts{Delivered: 1, LastDeliveryTime: at(3).Add(400 * time.Millisecond)}
	ep := endpointObj(nil, hooklinev1.WebhookEndpointStatus{})
	desired, _ := endpointStatus(ep, &engine.EndpointStats{Counts: c}, 0, at(5).Add(700*time.Millisecond))
	// What the API server gives back: times to the second.
	stored := endpointObj(nil, hooklinev1.WebhookEndpointStatus{Conditions: desired.Conditions, Delivery: desired.Delivery})
	again, _ := endpointStatus(stored, &engine.EndpointStats{Counts: c}, 0, at(9))
	cur := owned(stored.Status.Conditions, endpointConditions, stored.Status.Delivery, stored.Status.LastHandledEnable)
	if !sameStatus(again, cur) {
		t.Fatalf("unchanged figures compare as changed:\n%+v\n%+v", again, cur)
	}
	more, _ := endpointStatus(stored, &engine.EndpointStats{Counts: engine.Counts{Delivered: 2, LastDeliveryTime: c.LastDeliveryTime}}, 0, at(9))
	if sameStatus(more, cur) {
		t.Fatal("a new delivery compares as unchanged")
	}
}
