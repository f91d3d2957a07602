package status

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
)

func TestFilterCondition(t *testing.T) {
	at := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	sub := &hooklinev1.Subscription{ObjectMeta: metav1.ObjectMeta{Name: "invoices", Generation: 3}}
	failed := func(gen int64) *engine.Counts {
		return &engine.Counts{Dead: 1, LastFilterError: &engine.FilterFailure{
			Time: at, Generation: gen, EventID: "e7", Reason: "no such key: amount"}}
	}
	tests := []struct {
		name   string
		counts *engine.Counts
		want   bool
	}{
		{"no figures", nil, false},
		{"no filter error", &engine.Counts{Delivered: 4}, false},
		{"the current filter failed", failed(3), true},
		{"a filter since edited failed", failed(2), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := filterCondition(sub, tt.counts)
			if ok != tt.want {
				t.Fatalf("condition %v present=%v, want %v", c, ok, tt.want)
			}
			if !ok {
				return
			}
			if c.Type != ConditionFilterFailing || c.Status != metav1.ConditionTrue || c.Reason != ReasonFilterError ||
				!strings.Contains(c.Message, "event e7") || !strings.Contains(c.Message, "no such key: amount") ||
				!strings.Contains(c.Message, "2026-11-26T20:00:00Z") {
				t.Errorf("condition %+v", c)
			}
		})
	}
	// The condition is written with the dispatcher's others, and goes once
	// the filter is edited.
	st := &engine.SubscriptionStats{Counts: *failed(3)}
	got := subscriptionStatus(sub, st, endpointHealth{}, 0, at)
	if c := meta.FindStatusCondition(got.Conditions, ConditionFilterFailing); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("conditions %+v, want FilterFailing", got.Conditions)
	}
	sub.Generation = 4
	if got := subscriptionStatus(sub, st, endpointHealth{}, 0, at); meta.FindStatusCondition(got.Conditions, ConditionFilterFailing) != nil {
		t.Errorf("conditions %+v after the filter was edited, want no FilterFailing", got.Conditions)
	}
}
