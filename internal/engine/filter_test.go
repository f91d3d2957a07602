package engine

import (
	"net/http"
	"strings"
	"testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// TestFilterErrorIsADeadLetter: an event the filter fails on is not dropped
// silently: it is a dead letter with reason FilterError, counted as dead,
// and the failure is kept for the Subscription's condition.
func TestFilterErrorIsADeadLetter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) { w.WriteHeader(http.StatusNoContent) })
	f.endpoint("erp", rc)
	// Events without data.customer make the filter fail.
	f.subscription("vip", "erp", func(s *hooklinev1.Subscription) {
		s.Generation = 7
		s.Spec.Filter = `data.customer.tier == "vip"`
	})
	f.start(testOptions())
	f.publish("e1") // {"id":"e1","amount":42}: no customer

	eventually(t, "the dead letter", func() bool { return len(f.dead("vip")) == 1 })
	d := f.dead("vip")[0]
	if d.Delivery.Event.ID != "e1" || !strings.HasPrefix(d.Last.Reason, "FilterError: ") || !strings.Contains(d.Last.Reason, "customer") {
		t.Errorf("dead letter %+v, want e1 with a FilterError naming the missing field", d)
	}
	s := f.subscriptionStats("vip")
	if s.Dead != 1 || s.LastFilterError == nil || s.LastFilterError.EventID != "e1" || s.LastFilterError.Generation != 7 {
		t.Errorf("subscription figures %+v, want one dead and the filter failure of generation 7", s)
	}
	if n := rc.count(); n != 0 {
		t.Errorf("%d requests for an event the filter could not judge", n)
	}
	if got := metricValue(f.eng.m.filterErrors.WithLabelValues(ns, "vip")); got != 1 {
		t.Errorf("filter errors metric %v, want 1", got)
	}
}
