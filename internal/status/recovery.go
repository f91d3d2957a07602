package status

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/queue"
)

// ConditionRecovering is True on a Subscription while a recovery (POST
// .../subscriptions/{name}/recover) stores its retained events for
// delivery again, with its progress in the message, and False with the
// outcome once it ended. It is absent when no recovery ran since the
// dispatcher started.
const (
	ConditionRecovering    = "Recovering"
	ReasonRecovering       = "Recovering"
	ReasonRecoveryComplete = "RecoveryComplete"
	ReasonRecoveryFailed   = "RecoveryFailed"
)

func recoveryCondition(c *engine.Counts) (metav1.Condition, bool) {
	if c == nil || c.Recovery == nil {
		return metav1.Condition{}, false
	}
	r := c.Recovery
	since := "the start of retention"
	if !r.Since.IsZero() {
		since = stamp(r.Since)
	}
	switch r.Phase {
	case queue.RecoveryRunning:
		return condition(ConditionRecovering, true, ReasonRecovering, fmt.Sprintf(
			"Recovery %q is sending retained events since %s again: %d matched and queued of %d read so far.",
			r.ID, since, r.Queued, r.Scanned)), true
	case queue.RecoveryComplete:
		return condition(ConditionRecovering, false, ReasonRecoveryComplete, fmt.Sprintf(
			"Recovery %q queued %d retained events since %s (of %d read) at %s; they are delivered at the endpoint's pace.",
			r.ID, r.Queued, since, r.Scanned, stamp(r.FinishedAt))), true
	default:
		return condition(ConditionRecovering, false, ReasonRecoveryFailed, truncate(fmt.Sprintf(
			"Recovery %q failed after queueing %d retained events: %s. Send the request again with the same Idempotency-Key to resume it.",
			r.ID, r.Queued, r.Message), 1024)), true
	}
}
