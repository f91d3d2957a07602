package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/match"
	"github.com/hookline/hookline/internal/queue"
)

// TestFilterOverLargeEventIsADeadLetter: the filter's cost budget holds for
// events up to match.MaxEventSize. A larger one (a --max-body-bytes above
// it) is not evaluated with unbounded work, nor dropped silently: it is a
// FilterError dead letter saying the event is too large, while a
// subscription without a filter still gets it.
func TestFilterOverLargeEventIsADeadLetter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) { w.WriteHeader(http.StatusNoContent) })
	f.endpoint("erp", rc)
	f.subscription("filtered", "erp", func(s *hooklinev1.Subscription) {
		s.Spec.Filter = `data.items.exists(i, i == -1)`
	})
	f.subscription("all", "erp")
	f.start(testOptions())

	ev := event("big")
	data, err := json.Marshal(map[string]any{"items": make([]int, match.MaxEventSize/2)})
	if err != nil {
		t.Fatal(err)
	}
	ev.Data = data
	if _, err := f.q.PublishEvents(context.Background(), []queue.Event{ev}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the dead letter", func() bool { return len(f.dead("filtered")) == 1 })
	d := f.dead("filtered")[0]
	if !strings.HasPrefix(d.Last.Reason, "FilterError: ") || !strings.Contains(d.Last.Reason, "too large") {
		t.Errorf("dead letter reason %q, want a FilterError saying the event is too large", d.Last.Reason)
	}
	eventually(t, "the unfiltered delivery", func() bool { return rc.count() == 1 })
}
