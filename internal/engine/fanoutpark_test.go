package engine

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// TestFanoutParksForAnOpenCircuit: once an endpoint's circuit is open, the
// fan-out stores its new deliveries straight on the parking subject, one write
// each, instead of storing them for delivery only for the engine to take and
// park them (a second write and an ack). When the endpoint recovers, they are
// delivered once each like any parked backlog.
func TestFanoutParksForAnOpenCircuit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc, down, ok := downReceiver(t)
	f.endpoint("erp", rc, limits(func(l *hooklinev1.EndpointLimits) { l.MaxInFlight = ptr.To[int32](1) }))
	f.subscription("invoices", "erp", schedule("1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"))
	opts := testOptions()
	// A cool-down long enough that no probe moves a parked delivery back
	// while the fan-out's writes are counted; it still ends within the test.
	opts.Breaker = BreakerConfig{Threshold: 3, MinCooldown: 10 * time.Second, MaxCooldown: 10 * time.Second}
	tap := newJSTap(t, f.q.Conn())
	eng := f.start(opts)

	// Three deliveries open the circuit; their retries are parked by the
	// engine when they come back.
	f.publish("open-1", "open-2", "open-3")
	eventually(t, "the circuit to open and the first deliveries to be parked", func() bool {
		return f.endpointStats("erp").Circuit == CircuitOpen && f.parked("erp") == 3
	})
	unparksBefore := metricValue(eng.m.unparks.WithLabelValues(ns, "erp"))
	tap.settle(t)

	const n = 50
	evs := make([]string, n)
	for i := range evs {
		evs[i] = fmt.Sprintf("late-%02d", i)
	}
	f.publish(evs...)
	eventually(t, "the new deliveries to be parked", func() bool { return f.parked("erp") >= 3+n })
	writes := tap.settle(t)
	t.Logf("while the circuit is open, for %d events: %v", n, writes)
	// A probe may have moved a parked delivery back meanwhile: that move is
	// the only write for delivery allowed. Stored for delivery first, each
	// of the n would add one.
	moved := int(metricValue(eng.m.unparks.WithLabelValues(ns, "erp")) - unparksBefore)
	if got := writes["write hl.dlv"]; got > moved {
		t.Errorf("%d deliveries stored for delivery while the circuit was open (%d moved back by probes), want the fan-out to park them", got, moved)
	}
	if got := writes["write hl.park"]; got < n {
		t.Errorf("%d parking writes for %d events", got, n)
	}
	if p := metricValue(eng.m.parks.WithLabelValues(ns, "erp", holdCircuitOpen)); p < 3+n {
		t.Errorf("%v circuit_open parks counted, want at least %d", p, 3+n)
	}

	down.Store(false)
	eventually(t, "every delivery once the endpoint recovers", func() bool { return len(ok.get()) == 3+n })
	eventually(t, "an empty parking lot", func() bool { return f.parked("erp") == 0 })
	for id, c := range ok.get() {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
	if d := f.dead("invoices"); len(d) != 0 {
		t.Errorf("%d dead letters", len(d))
	}
}
