package readiness

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/match"
)

// TestSubscriptionFilterOverBudget: a filter over the one cost budget is
// refused the way the operator reports it (the dispatcher's registry uses
// the same compiler): Ready=False, Stalled, a message naming spec.filter,
// the budget and the fix. One that fits the budget is accepted.
func TestSubscriptionFilterOverBudget(t *testing.T) {
	_, err := match.CompileFilter(`data.a.map(i, i).exists(p, p == 1) || data.a.map(i, i).exists(p, p == 2) || data.a.exists(p, p == 3)`)
	if err == nil {
		t.Fatal("a filter over the budget compiled")
	}
	got := Subscription(SubscriptionInput{EndpointName: "b", EndpointFound: true, EndpointReady: true, FilterError: err})
	if got.Status != metav1.ConditionFalse || got.Reason != hooklinev1.ReasonInvalidFilter || !got.Stalled {
		t.Errorf("got %+v, want Ready=False InvalidFilter, stalled", got)
	}
	for _, want := range []string{"spec.filter", "filter budget of 10000000", "avoid nesting loops over data"} {
		if !strings.Contains(got.Message, want) {
			t.Errorf("message %q does not say %q", got.Message, want)
		}
	}
	if _, err := match.CompileFilter(`data.a.map(i, i).exists(p, p == 1) || data.a.map(i, i).exists(p, p == 2)`); err != nil {
		t.Errorf("a filter within the budget was refused: %v", err)
	}
}
