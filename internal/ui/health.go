package ui

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Health is one object's state in a word, a class for its colour (ok, warn, bad, idle)
// and the sentence of the condition it comes from.
type Health struct {
	Label, Class, Detail string
}

// healthOf reads the conditions the way a person would: a suspended or disabled object
// says so first, then whether it is ready, then whether deliveries succeed.
func healthOf(conds []metav1.Condition, suspended bool) Health {
	if suspended {
		return Health{"Suspended", "warn", "spec.suspend is true: deliveries are held until it is unset."}
	}
	if c := meta.FindStatusCondition(conds, hooklinev1.ConditionDisabled); c != nil && c.Status == metav1.ConditionTrue {
		return Health{"Disabled", "bad", c.Message}
	}
	ready := meta.FindStatusCondition(conds, hooklinev1.ConditionReady)
	switch {
	case ready == nil:
		return Health{"Pending", "idle", "The operator has not reported on this object yet."}
	case ready.Status != metav1.ConditionTrue:
		return Health{"Not ready", "bad", ready.Message}
	}
	if c := meta.FindStatusCondition(conds, hooklinev1.ConditionDegraded); c != nil && c.Status == metav1.ConditionTrue {
		if c.Reason == hooklinev1.ReasonCircuitOpen {
			return Health{"Circuit open", "bad", c.Message}
		}
		return Health{"Failing", "bad", c.Message}
	}
	if c := meta.FindStatusCondition(conds, hooklinev1.ConditionDelivering); c != nil && c.Status == metav1.ConditionTrue {
		return Health{"Delivering", "ok", c.Message}
	}
	return Health{"Ready", "ok", "Ready; nothing delivered yet."}
}

// circuitOf says whether the endpoint's circuit is open, from the Degraded condition.
func circuitOf(conds []metav1.Condition) string {
	if c := meta.FindStatusCondition(conds, hooklinev1.ConditionDegraded); c != nil && c.Status == metav1.ConditionTrue && c.Reason == hooklinev1.ReasonCircuitOpen {
		return "open: deliveries are held until a probe succeeds"
	}
	return "closed"
}

func isDisabled(conds []metav1.Condition) bool {
	return meta.IsStatusConditionTrue(conds, hooklinev1.ConditionDisabled)
}
