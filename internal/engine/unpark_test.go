package engine

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/queue/queuetest"
	"github.com/hookline/hookline/internal/registry"
)

func (f *fixture) parked(endpoint string) uint64 {
	f.t.Helper()
	p, err := f.q.Parked(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return p[queue.EndpointKey{Namespace: ns, Endpoint: endpoint}]
}

// successes counts, per webhook-id, the requests a receiver answered with a
// 2xx.
type successes struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *successes) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[id]++
}

func (s *successes) get() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.n))
	for k, v := range s.n {
		out[k] = v
	}
	return out
}

// downReceiver answers 500 while down is set, and 204 after, counting its
// successes by webhook-id; it starts down.
func downReceiver(t *testing.T) (rc *receiver, down *atomic.Bool, ok *successes) {
	t.Helper()
	down, ok = new(atomic.Bool), new(successes)
	down.Store(true)
	rc = newReceiver(t, false, func(w http.ResponseWriter, r request) {
		if down.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ok.add(r.id())
		w.WriteHeader(http.StatusNoContent)
	})
	return rc, down, ok
}

// TestParkedBacklogDeliveredAfterRecovery: while the endpoint is down its
// deliveries are parked, probes are taken from them, and once a probe
// succeeds the whole backlog is delivered, each delivery with the attempt
// number its real failures gave it.
func TestParkedBacklogDeliveredAfterRecovery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc, down, ok := downReceiver(t)
	f.endpoint("erp", rc, limits(func(l *hooklinev1.EndpointLimits) {
		inflight := int32(2)
		l.MaxInFlight = &inflight
	}))
	f.subscription("invoices", "erp", schedule("1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"))
	opts := testOptions()
	opts.Breaker = BreakerConfig{Threshold: 3, MinCooldown: time.Second, MaxCooldown: 2 * time.Second}
	eng := f.start(opts)
	const n = 60
	f.publish(ids(n)...)

	eventually(t, "the backlog to be parked", func() bool { return f.parked("erp") >= n-2 })
	if st := f.endpointStats("erp"); st.Circuit == CircuitClosed {
		t.Fatalf("circuit %s while the endpoint is down", st.Circuit)
	}
	// Probes come from the parked deliveries while the endpoint is down.
	eventually(t, "a probe taken from the parked deliveries", func() bool {
		return metricValue(eng.m.unparks.WithLabelValues(ns, "erp")) >= 1
	})
	failed := rc.count()
	down.Store(false)

	eventually(t, "every delivery", func() bool { return len(ok.get()) == n })
	eventually(t, "the figures", func() bool { return f.subscriptionStats("invoices").Delivered == n })
	for id, c := range ok.get() {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
	if p := f.parked("erp"); p != 0 {
		t.Errorf("%d still parked", p)
	}
	if st := f.endpointStats("erp"); st.Circuit != CircuitClosed || st.Failed < uint64(failed) {
		t.Errorf("endpoint %+v after recovery", st)
	}
	// Attempts are spent by failed requests only: over all deliveries, the
	// attempts before each success add up to the failures.
	as := f.attempts("invoices")
	spent, fails := 0, 0
	for _, a := range as {
		if a.StatusCode == http.StatusNoContent {
			spent += a.Attempt - 1
		} else {
			fails++
		}
	}
	if len(as) != rc.count() || spent != fails {
		t.Errorf("attempt log of %d (%d requests): %d failures but %d attempts spent before successes: %s",
			len(as), rc.count(), fails, spent, attemptNumbers(as))
	}
	if n := len(f.dead("invoices")); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	if p := metricValue(eng.m.parks.WithLabelValues(ns, "erp", holdCircuitOpen)); p < n-2 {
		t.Errorf("%v circuit_open parks, want the backlog", p)
	}
}

// TestDisabledEndpointParksUntilEnable: nothing goes to a disabled endpoint,
// and Enable brings its whole backlog back as it was.
func TestDisabledEndpointParksUntilEnable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var ok successes
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		ok.add(r.id())
		w.WriteHeader(http.StatusNoContent)
	})
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp")
	opts := testOptions()
	opts.Disabled = []DisabledEndpoint{{Namespace: ns, Name: "erp", UID: "uid-ep-erp", Since: time.Now(), Reason: "Gone."}}
	eng := f.start(opts)
	const n = 50
	f.publish(ids(n)...)

	eventually(t, "the backlog to be parked", func() bool { return f.parked("erp") == n })
	// The periodic check does not unpark a disabled endpoint.
	time.Sleep(2 * opts.UnparkCheck)
	if c := rc.count(); c != 0 || f.parked("erp") != n {
		t.Fatalf("%d requests and %d parked while disabled", c, f.parked("erp"))
	}
	if !eng.Enable(ns, "erp") {
		t.Fatal("Enable reported the endpoint was not disabled")
	}
	eventually(t, "every delivery after Enable", func() bool { return len(ok.get()) == n })
	eventually(t, "the attempt log", func() bool { return len(f.attempts("invoices")) == n })
	for _, a := range f.attempts("invoices") {
		if a.Attempt != 1 {
			t.Fatalf("attempt log %s, want only attempt 1: parking spends no attempt", attemptNumbers(f.attempts("invoices")))
		}
	}
	if p := f.parked("erp"); p != 0 {
		t.Errorf("%d still parked", p)
	}
	// Counted once the round ends.
	eventually(t, "the unparked count", func() bool { return metricValue(eng.m.unparks.WithLabelValues(ns, "erp")) == n })
}

// switchRoutes serves one registry or another, for a change a static
// registry cannot make.
type switchRoutes struct {
	cur atomic.Pointer[registry.Registry]
}

func (s *switchRoutes) Matching(ns, eventType string) []*registry.Subscription {
	return s.cur.Load().Matching(ns, eventType)
}

func (s *switchRoutes) Subscription(ns, name string) *registry.Subscription {
	return s.cur.Load().Subscription(ns, name)
}

func (s *switchRoutes) Endpoint(ns, name string) *registry.Endpoint {
	return s.cur.Load().Endpoint(ns, name)
}

// TestSuspendedEndpointParksUntilUnsuspended: a suspended endpoint's
// deliveries are parked, and come back when the engine sees it unsuspended,
// with nothing arriving to tell it.
func TestSuspendedEndpointParksUntilUnsuspended(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var ok successes
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		ok.add(r.id())
		w.WriteHeader(http.StatusNoContent)
	})
	f.endpoint("erp", rc, func(ep *hooklinev1.WebhookEndpoint) { ep.Spec.Suspend = true })
	f.subscription("invoices", "erp")
	suspended, err := registry.NewStatic(f.objs, registry.Options{SSRF: loopback()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(suspended.Close)
	f.objs.Endpoints[0].Spec.Suspend = false
	f.build()
	routes := &switchRoutes{}
	routes.cur.Store(suspended)

	opts := testOptions()
	eng := f.startRoutes(routes, opts)
	const n = 30
	f.publish(ids(n)...)

	eventually(t, "the backlog to be parked", func() bool { return f.parked("erp") == n })
	if got := metricValue(eng.m.parks.WithLabelValues(ns, "erp", holdSuspended)); got != n {
		t.Errorf("%v parked as suspended, want %d", got, n)
	}
	time.Sleep(2 * opts.UnparkCheck)
	if c := rc.count(); c != 0 {
		t.Fatalf("%d requests while suspended", c)
	}
	routes.cur.Store(f.reg)
	eventually(t, "every delivery after unsuspending", func() bool { return len(ok.get()) == n })
	eventually(t, "the attempt log", func() bool { return len(f.attempts("invoices")) == n })
	for _, a := range f.attempts("invoices") {
		if a.Attempt != 1 {
			t.Fatalf("attempt log %s, want only attempt 1", attemptNumbers(f.attempts("invoices")))
		}
	}
}

// TestCrashWhileUnparkingLosesNothing closes the queue under an engine that
// is moving a parked backlog back at a rate-limited endpoint's pace, as a
// crash would, and then runs a new engine on the same store: every delivery
// arrives.
func TestCrashWhileUnparkingLosesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A short lease: deliveries the first engine had taken come back soon
	// after the restart.
	cfg := func(c *queue.Config) { c.DataDir, c.MaxRequestTimeout, c.AckWait = dir, time.Second, 2*time.Second }
	f := &fixture{t: t, secrets: map[string]string{}}
	f.q = queuetest.Open(t, cfg)
	var ok successes
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		ok.add(r.id())
		w.WriteHeader(http.StatusNoContent)
	})
	f.endpoint("erp", rc, limits(func(l *hooklinev1.EndpointLimits) {
		rate, burst := int32(100), int32(1)
		l.RateLimit, l.Burst = &rate, &burst
	}))
	f.subscription("invoices", "erp")
	f.build()
	opts := testOptions()
	opts.Disabled = []DisabledEndpoint{{Namespace: ns, Name: "erp", Since: time.Now(), Reason: "Gone."}}
	eng, stop := f.run(opts)
	const n = 600
	f.publish(ids(n)...)
	eventually(t, "the backlog to be parked", func() bool { return f.parked("erp") == n })

	eng.Enable(ns, "erp")
	eventually(t, "unparking under way", func() bool { c := len(ok.get()); return c >= 100 })
	f.q.Close() // the crash: batches in flight are not acknowledged
	_ = stop()
	first := len(ok.get())
	if first >= n {
		t.Fatalf("all %d delivered before the crash; the test needs a slower endpoint", first)
	}

	f.q = queuetest.Open(t, cfg)
	_, stop = f.run(testOptions())
	t.Cleanup(func() { _ = stop() })
	eventually(t, "every delivery after the restart", func() bool { return len(ok.get()) == n })
	dups := 0
	for _, c := range ok.get() {
		dups += c - 1
	}
	t.Logf("%d delivered before the crash, %d duplicates", first, dups)
	eventually(t, "nothing left", func() bool {
		b, err := f.q.Backlog(context.Background())
		return err == nil && b.Endpoints[queue.EndpointKey{Namespace: ns, Endpoint: "erp"}] == 0
	})
}
