package status

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/queue"
)

func TestRecoveryCondition(t *testing.T) {
	if _, ok := recoveryCondition(nil); ok {
		t.Error("a condition without figures")
	}
	if _, ok := recoveryCondition(&engine.Counts{}); ok {
		t.Error("a condition without a recovery")
	}
	for _, c := range []struct {
		p      engine.RecoveryProgress
		status metav1.ConditionStatus
		reason string
		says   []string
	}{
		{engine.RecoveryProgress{ID: "r1", Phase: queue.RecoveryRunning, Since: at(0), Scanned: 300, Queued: 120},
			metav1.ConditionTrue, ReasonRecovering, []string{`"r1"`, "2026-11-26T12:00:00Z", "120 matched and queued of 300"}},
		{engine.RecoveryProgress{ID: "r1", Phase: queue.RecoveryComplete, Scanned: 300, Queued: 120, FinishedAt: at(60)},
			metav1.ConditionFalse, ReasonRecoveryComplete, []string{"queued 120", "the start of retention", "2026-11-26T12:01:00Z"}},
		{engine.RecoveryProgress{ID: "r1", Phase: queue.RecoveryFailed, Queued: 5, Message: "the subscription was deleted during the recovery"},
			metav1.ConditionFalse, ReasonRecoveryFailed, []string{"after queueing 5", "deleted", "same Idempotency-Key"}},
	} {
		got, ok := recoveryCondition(&engine.Counts{Recovery: &c.p})
		if !ok || got.Type != ConditionRecovering || got.Status != c.status || got.Reason != c.reason {
			t.Errorf("%s: %+v", c.p.Phase, got)
		}
		for _, s := range c.says {
			if !strings.Contains(got.Message, s) {
				t.Errorf("%s: message %q does not say %q", c.p.Phase, got.Message, s)
			}
		}
	}
}
