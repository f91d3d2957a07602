package engine

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/hookline/hookline/internal/registry"
)

// laggingRoutes match events to the registry's subscriptions, as the replica
// that fans an event out does, but do not show those subscriptions to the
// delivering side until shown is set: another replica whose watch lags
// behind. gone lists the UIDs the routes saw deleted.
type laggingRoutes struct {
	*registry.Registry
	shown atomic.Bool
	gone  atomic.Bool
}

func (r *laggingRoutes) Subscription(ns, name string) *registry.Subscription {
	if !r.shown.Load() {
		return nil
	}
	return r.Registry.Subscription(ns, name)
}

func (r *laggingRoutes) Gone(types.UID) bool { return r.gone.Load() }

// TestUnknownSubscriptionIsNotDroppedAtOnce: a delivery whose subscription
// this process does not know yet is kept until it does (within the grace),
// not dropped; one whose subscription never shows up is dropped after the
// grace; and one whose subscription the routes saw deleted is dropped at
// once, without being held.
func TestUnknownSubscriptionIsNotDroppedAtOnce(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T, grace time.Duration) (*fixture, *receiver, *laggingRoutes, *Engine) {
		f := newFixture(t)
		rc := newReceiver(t, false, nil)
		f.endpoint("erp", rc)
		f.subscription("invoices", "erp")
		f.build()
		reg, err := registry.NewStatic(f.objs, registry.Options{SSRF: loopback()})
		if err != nil {
			t.Fatal(err)
		}
		routes := &laggingRoutes{Registry: reg}
		opts := testOptions()
		opts.UnknownSubscriptionGrace = grace
		return f, rc, routes, f.startRoutes(routes, opts)
	}
	dropped := func(eng *Engine) float64 {
		return metricValue(eng.m.deliveries.WithLabelValues(ns, "invoices", outcomeDropped))
	}
	held := func(eng *Engine) float64 {
		return metricValue(eng.m.holds.WithLabelValues(ns, "erp", holdUnknownSubscription))
	}

	t.Run("shown later", func(t *testing.T) {
		t.Parallel()
		f, rc, routes, eng := setup(t, 20*time.Second)
		f.publish(ids(20)...)
		eventually(t, "the deliveries held for their unknown subscription", func() bool { return held(eng) >= 20 })
		routes.shown.Store(true)
		eventually(t, "every delivery once the subscription shows", func() bool { return len(rc.byID()) == 20 })
		if n := dropped(eng); n != 0 {
			t.Errorf("%v deliveries dropped", n)
		}
	})
	t.Run("never shown", func(t *testing.T) {
		t.Parallel()
		const grace = 3 * time.Second
		f, rc, _, eng := setup(t, grace)
		start := time.Now()
		f.publish(ids(5)...)
		eventually(t, "the deliveries dropped after the grace", func() bool { return dropped(eng) == 5 })
		if since := time.Since(start); since < grace {
			t.Errorf("dropped %s after publishing, before the grace of %s ran out", since, grace)
		}
		if held(eng) == 0 || rc.count() != 0 {
			t.Errorf("held %v times, %d requests: want held first and nothing sent", held(eng), rc.count())
		}
		// The grace runs once per subscription: later deliveries of the
		// same unknown subscription are dropped at once.
		heldBefore := held(eng)
		f.publish("late-1", "late-2", "late-3")
		eventually(t, "the later deliveries dropped", func() bool { return dropped(eng) == 8 })
		if n := held(eng); n != heldBefore {
			t.Errorf("later deliveries were held %v times, want dropped without a hold", n-heldBefore)
		}
	})
	t.Run("seen deleted", func(t *testing.T) {
		t.Parallel()
		f, rc, routes, eng := setup(t, 20*time.Second)
		routes.gone.Store(true)
		f.publish(ids(5)...)
		eventually(t, "the deliveries dropped", func() bool { return dropped(eng) == 5 })
		if held(eng) != 0 || rc.count() != 0 {
			t.Errorf("held %v times, %d requests: want dropped at once", held(eng), rc.count())
		}
	})
}

// TestCheckReady: the engine is ready (the dispatcher's /readyz) only while
// it consumes the queue: not before Run, and not after it stopped.
func TestCheckReady(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, nil)
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp")
	f.build()
	eng, stop := f.run(testOptions())
	eventually(t, "ready once running", func() bool { return eng.CheckReady(context.Background()) == nil })
	f.publish("e1")
	eventually(t, "a delivery", func() bool { return rc.count() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := eng.CheckReady(context.Background()); err == nil || !strings.Contains(err.Error(), "has not opened its queue consumers") {
		t.Errorf("CheckReady after Run returned: %v", err)
	}

	unstarted, err := New(Options{Queue: f.q, Routes: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstarted.CheckReady(context.Background()); err == nil {
		t.Error("an engine never run is ready")
	}
}
