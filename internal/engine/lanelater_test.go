package engine

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// An ordered subscription whose lane cannot be created when its events fan
// out still has their deliveries stored, in order, and the events are
// acknowledged rather than NAKed (a NAKed event would come back behind later
// ones, out of order); the engine creates the lane as soon as it can, and
// the deliveries go out in order. The lane's creation is refused by the
// server for real: the deliveries stream is at its limit on consumers that the test lifts later.
func TestOrderedLaneCreatedLater(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, _ request) { w.WriteHeader(http.StatusNoContent) })
	f.endpoint("ledger", rc)
	f.subscription("ledger-sync", "ledger", policy(func(p *hooklinev1.DeliveryPolicy) {
		p.Ordering = hooklinev1.OrderingOrdered
	}))
	ctx := context.Background()
	js, err := jetstream.New(f.q.Conn())
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := js.Stream(ctx, "HL_DELIVERIES")
	if err != nil {
		t.Fatal(err)
	}
	const subject = "hl.ord.team-a.ledger-sync"
	e := f.start(testOptions())
	eventually(t, "the engine ready", func() bool { return e.CheckReady(ctx) == nil })
	// The stream takes no more consumers, so the lane's cannot be created.
	limit := func(n int) {
		t.Helper()
		info, err := deliveries.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.Config
		cfg.MaxConsumers = n
		if n == 0 {
			cfg.MaxConsumers = info.State.Consumers
		}
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	limit(0)
	const n = 10
	f.publish(ids(n)...)

	eventually(t, "the deliveries stored without their lane, and the events acknowledged", func() bool {
		info, err := deliveries.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil || info.State.Subjects[subject] != n {
			return false
		}
		events, err := js.Stream(ctx, "HL_EVENTS")
		if err != nil {
			return false
		}
		ei, err := events.Info(ctx)
		return err == nil && ei.State.Msgs == 0
	})
	if got := rc.count(); got != 0 {
		t.Fatalf("%d deliveries went out through a lane that is not there", got)
	}
	limit(-1)
	eventually(t, "every delivery once the lane is created", func() bool { return rc.count() == n })
	var got []string
	for _, r := range rc.requests() {
		got = append(got, r.id())
	}
	if strings.Join(got, " ") != strings.Join(ids(n), " ") {
		t.Errorf("received\n%s\nwant\n%s", strings.Join(got, " "), strings.Join(ids(n), " "))
	}
}
