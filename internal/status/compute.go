package status

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
)

// FieldOwner is the dispatcher's server-side apply field manager for status.
const FieldOwner = "hookline-dispatcher"

// ownedStatus is the part of a status the dispatcher owns and applies.
type ownedStatus struct {
	Conditions        []metav1.Condition         `json:"conditions"`
	Delivery          *hooklinev1.DeliveryStatus `json:"delivery,omitempty"`
	LastHandledEnable string                     `json:"lastHandledEnable,omitempty"`
}

// The dispatcher's conditions, in the order it writes them.
var (
	endpointConditions     = []string{hooklinev1.ConditionDelivering, hooklinev1.ConditionDegraded, hooklinev1.ConditionDisabled}
	subscriptionConditions = []string{hooklinev1.ConditionDelivering, hooklinev1.ConditionDegraded, ConditionFilterFailing, ConditionRecovering}
)

// ConditionFilterFailing is True on a Subscription whose filter, as it is now
// (this generation), failed to evaluate on an event; such events are dead
// letters with reason FilterError. It is absent otherwise: editing the
// filter removes it.
const (
	ConditionFilterFailing = "FilterFailing"
	ReasonFilterError      = "FilterError"
)

// filterCondition is the FilterFailing condition of a subscription, and
// whether it has one.
func filterCondition(sub *hooklinev1.Subscription, c *engine.Counts) (metav1.Condition, bool) {
	if c == nil || c.LastFilterError == nil || c.LastFilterError.Generation != sub.Generation {
		return metav1.Condition{}, false
	}
	f := c.LastFilterError
	return condition(ConditionFilterFailing, true, ReasonFilterError, truncate(fmt.Sprintf(
		"The filter failed on event %s at %s: %s. Such events are dead letters with reason FilterError; "+
			"fix the expression (guard optional fields with has()) and replay them.",
		f.EventID, stamp(f.Time), strings.TrimSuffix(f.Reason, ".")), 1024)), true
}

// owned extracts the dispatcher's part from a status as it is, to compare it
// with what would be applied.
func owned(conds []metav1.Condition, types []string, d *hooklinev1.DeliveryStatus, handled string) ownedStatus {
	o := ownedStatus{Delivery: d, LastHandledEnable: handled}
	for _, t := range types {
		if c := meta.FindStatusCondition(conds, t); c != nil {
			o.Conditions = append(o.Conditions, *c)
		}
	}
	return o
}

// sameStatus compares as the API server stores: times to the second.
func sameStatus(a, b ownedStatus) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// endpointHealth is what a subscription's status needs from its endpoint's.
type endpointHealth struct {
	disabled  bool
	circuit   engine.CircuitState
	nextProbe time.Time
	last      *engine.Failure
}

// endpointStatus computes an endpoint's part of status from the merged
// figures (nil when no process has any) and the queue's backlog.
func endpointStatus(ep *hooklinev1.WebhookEndpoint, st *engine.EndpointStats, backlog int64, now time.Time) (ownedStatus, endpointHealth) {
	var counts *engine.Counts
	h := endpointHealth{}
	if st != nil {
		counts = &st.Counts
		h.circuit, h.nextProbe, h.last = st.Circuit, st.NextProbe, st.LastFailure
	}
	value, _ := enableRequest(ep)
	disabled := disabledCondition(ep, st)
	h.disabled = disabled.Status == metav1.ConditionTrue
	delivering, degraded := deliveryConditions(counts, h, "")
	cur := ep.Status.Conditions
	return ownedStatus{
		Conditions: []metav1.Condition{
			transition(cur, delivering, now), transition(cur, degraded, now), transition(cur, disabled, now),
		},
		Delivery:          deliveryStatus(counts, backlog),
		LastHandledEnable: value,
	}, h
}

// subscriptionStatus computes a subscription's part of status; ep describes
// its endpoint (zero when the endpoint is unknown).
func subscriptionStatus(sub *hooklinev1.Subscription, st *engine.SubscriptionStats, ep endpointHealth, backlog int64, now time.Time) ownedStatus {
	var counts *engine.Counts
	if st != nil {
		counts = &st.Counts
	}
	delivering, degraded := deliveryConditions(counts, ep, sub.Spec.EndpointRef.Name)
	cur := sub.Status.Conditions
	conds := []metav1.Condition{transition(cur, delivering, now), transition(cur, degraded, now)}
	if c, ok := filterCondition(sub, counts); ok {
		conds = append(conds, transition(cur, c, now))
	}
	if c, ok := recoveryCondition(counts); ok {
		conds = append(conds, transition(cur, c, now))
	}
	return ownedStatus{Conditions: conds, Delivery: deliveryStatus(counts, backlog)}
}

// transition keeps a condition's lastTransitionTime while its status stays.
func transition(cur []metav1.Condition, c metav1.Condition, now time.Time) metav1.Condition {
	if old := meta.FindStatusCondition(cur, c.Type); old != nil && old.Status == c.Status {
		c.LastTransitionTime = old.LastTransitionTime
	} else {
		c.LastTransitionTime = metav1.NewTime(now.UTC().Truncate(time.Second))
	}
	return c
}

func condition(typ string, status bool, reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg}
}

// deliveryConditions are Delivering and Degraded. endpoint names the
// subscription's endpoint, empty for an endpoint's own status.
func deliveryConditions(c *engine.Counts, ep endpointHealth, endpoint string) (delivering, degraded metav1.Condition) {
	both := func(deliveringOK bool, reason, msg string) (metav1.Condition, metav1.Condition) {
		return condition(hooklinev1.ConditionDelivering, deliveringOK, reason, msg),
			condition(hooklinev1.ConditionDegraded, !deliveringOK && reason != hooklinev1.ReasonNoDeliveries, reason, msg)
	}
	subject := "The endpoint"
	if endpoint != "" {
		subject = fmt.Sprintf("Endpoint %q", endpoint)
	}
	switch {
	case ep.disabled:
		return both(false, hooklinev1.ReasonEndpointDisabled,
			subject+" is disabled; deliveries are held until it is re-enabled (see its Disabled condition).")
	case ep.circuit == engine.CircuitOpen:
		last := ""
		if ep.last != nil {
			last = fmt.Sprintf(" (last: %s)", ep.last.Reason)
		}
		probe := "soon"
		if !ep.nextProbe.IsZero() {
			probe = "at " + stamp(ep.nextProbe)
		}
		return both(false, hooklinev1.ReasonCircuitOpen, fmt.Sprintf(
			"%s failed repeatedly%s; deliveries are held without using up their retries until a probe delivery succeeds. The next probe is %s.",
			subject, last, probe))
	case c == nil || c.Delivered == 0 && c.Failed == 0:
		return both(false, hooklinev1.ReasonNoDeliveries, "No delivery has been attempted yet.")
	case failing(c):
		msg := "The last attempt failed"
		if c.LastFailure != nil {
			msg += ": " + c.LastFailure.Reason
		}
		return both(false, hooklinev1.ReasonDeliveryFailing, strings.TrimSuffix(msg, ".")+".")
	default:
		return both(true, hooklinev1.ReasonDelivering, "The last delivery succeeded.")
	}
}

// failing: the last outcome was a failure. Across replicas the failure
// streak counts only streaks that began after the latest success, so the
// last failure's time is checked too.
func failing(c *engine.Counts) bool {
	if c.ConsecutiveFailures > 0 {
		return true
	}
	return c.LastFailure != nil && c.LastFailure.Time.After(c.LastDeliveryTime)
}

func deliveryStatus(c *engine.Counts, backlog int64) *hooklinev1.DeliveryStatus {
	d := hooklinev1.DeliveryStatus{Backlog: backlog}
	if c != nil {
		d.Delivered, d.Failed, d.Dead = toInt64(c.Delivered), toInt64(c.Failed), toInt64(c.Dead)
		d.ConsecutiveFailures = c.ConsecutiveFailures
		if !c.LastDeliveryTime.IsZero() {
			t := metav1.NewTime(c.LastDeliveryTime.UTC().Truncate(time.Second))
			d.LastDeliveryTime = &t
		}
		if f := c.LastFailure; f != nil {
			d.LastFailure = &hooklinev1.DeliveryFailure{
				Time:       metav1.NewTime(f.Time.UTC().Truncate(time.Second)),
				StatusCode: int32(min(max(f.StatusCode, 0), math.MaxInt32)),
				Reason:     truncate(f.Reason, 1024),
			}
		}
	}
	if d == (hooklinev1.DeliveryStatus{}) {
		return nil
	}
	return &d
}

func toInt64(v uint64) int64 { return int64(min(v, math.MaxInt64)) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func stamp(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// enableRequest returns the hookline.io/enable value in force for ep and
// whether it is a new request, not yet recorded in status.
func enableRequest(ep *hooklinev1.WebhookEndpoint) (value string, fresh bool) {
	ann, handled := ep.Annotations[hooklinev1.AnnotationEnable], ep.Status.LastHandledEnable
	if ann != "" && ann != handled {
		return ann, true
	}
	return handled, false
}

// reEnableHint ends the Disabled condition's message; disableSentence strips it
// to recover the engine's own words.
const reEnableHint = " To re-enable it: "

// disabledCondition is sticky: a disable shown in status stays until a new
// hookline.io/enable value. st must count only disables of processes that
// applied the value in force (see mergeReports).
func disabledCondition(ep *hooklinev1.WebhookEndpoint, st *engine.EndpointStats) metav1.Condition {
	value, fresh := enableRequest(ep)
	cur := meta.FindStatusCondition(ep.Status.Conditions, hooklinev1.ConditionDisabled)
	switch {
	case st != nil && st.Disabled:
		sentence := strings.TrimSpace(st.DisabledReason)
		if sentence == "" {
			sentence = "The endpoint was disabled; deliveries are held until it is re-enabled."
		}
		return condition(hooklinev1.ConditionDisabled, true, disableReason(sentence), fmt.Sprintf(
			"%s%skubectl annotate webhookendpoint %s -n %s %s=<new value> --overwrite",
			sentence, reEnableHint, ep.Name, ep.Namespace, hooklinev1.AnnotationEnable))
	case !fresh && cur != nil && cur.Status == metav1.ConditionTrue:
		return *cur
	case fresh:
		return condition(hooklinev1.ConditionDisabled, false, hooklinev1.ReasonEnabled, fmt.Sprintf(
			"Re-enabled by %s=%s; held deliveries are sent again as they come back from the queue (within about 10 minutes).",
			hooklinev1.AnnotationEnable, value))
	case cur != nil && cur.Status == metav1.ConditionFalse && cur.Reason == hooklinev1.ReasonEnabled:
		return *cur
	default:
		return condition(hooklinev1.ConditionDisabled, false, hooklinev1.ReasonEnabled, "The endpoint is enabled.")
	}
}

// disableSentence is the engine's reason for a disable shown in status.
func disableSentence(msg string) string {
	s, _, _ := strings.Cut(msg, reEnableHint)
	return s
}

// disableReason classifies the engine's sentence.
//
// The engine reports why it disabled an endpoint in words only; these
// matches follow internal/engine's sentences (handler.go, settle).
func disableReason(sentence string) string {
	switch {
	case strings.Contains(sentence, "has failed for more than"):
		return hooklinev1.ReasonFailingTooLong
	case strings.Contains(sentence, "webhook-delivery: disable"):
		return hooklinev1.ReasonReceiverRequested
	case strings.Contains(sentence, "410 Gone"):
		return hooklinev1.ReasonEndpointGone
	}
	return hooklinev1.ReasonEndpointDisabled
}
