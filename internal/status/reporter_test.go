package status

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/queue"
)

const gone410 = "The receiver answered 410 Gone; deliveries are held until the endpoint is re-enabled."

func TestReporterWritesDeliveryStatus(t *testing.T) {
	cluster(t)
	ns := newNamespace(t)
	ep, sub := createObjects(t, ns)
	q := openQueue(t)
	eng := &fakeEngine{process: "p1"}
	delivered := time.Now().Add(-time.Minute)
	eng.figures(ep, sub, engine.Counts{Delivered: 3, LastDeliveryTime: delivered}, engine.CircuitClosed)
	backlog := fakeBacklog{queue.Backlog{
		Endpoints: map[queue.EndpointKey]uint64{{Namespace: ns, Endpoint: "billing"}: 2},
		Ordered:   map[queue.SubscriptionKey]uint64{{Namespace: ns, Subscription: "invoices"}: 1},
	}}
	startReporter(t, q, Options{Namespaces: []string{ns}, ReportEvery: 100 * time.Millisecond,
		WriteInterval: 200 * time.Millisecond, Backlog: backlog}, eng)

	eventually(t, 30*time.Second, func() (bool, string) {
		e, s := billing(t, ns), invoices(t, ns)
		ok := e.Status.Delivery != nil && e.Status.Delivery.Delivered == 3 && e.Status.Delivery.Backlog == 3 &&
			condOf(e.Status.Conditions, hooklinev1.ConditionDelivering).Status == "True" &&
			condOf(e.Status.Conditions, hooklinev1.ConditionDegraded).Status == "False" &&
			condOf(e.Status.Conditions, hooklinev1.ConditionDisabled).Reason == hooklinev1.ReasonEnabled &&
			s.Status.Delivery != nil && s.Status.Delivery.Delivered == 3 && s.Status.Delivery.Backlog == 1 &&
			condOf(s.Status.Conditions, hooklinev1.ConditionDelivering).Reason == hooklinev1.ReasonDelivering
		return ok, fmt.Sprintf("endpoint %+v %s; subscription %+v %s", e.Status.Delivery, describeConds(e.Status.Conditions),
			s.Status.Delivery, describeConds(s.Status.Conditions))
	})
	e := billing(t, ns)
	if got := e.Status.Delivery.LastDeliveryTime; got == nil || !got.Time.Equal(delivered.UTC().Truncate(time.Second)) {
		t.Fatalf("lastDeliveryTime %v, want %v", got, delivered)
	}
	if c := condOf(invoices(t, ns).Status.Conditions, hooklinev1.ConditionDisabled); c.Type != "" {
		t.Fatalf("a subscription got a Disabled condition: %+v", c)
	}
	managed := false
	for _, m := range e.ManagedFields {
		if m.Manager == FieldOwner && m.Subresource == "status" && m.Operation == metav1.ManagedFieldsOperationApply {
			managed = true
		}
	}
	if !managed {
		t.Fatalf("status not applied by %s: %+v", FieldOwner, e.ManagedFields)
	}

	// Failing: Degraded with the last failure, never a response body.
	eng.figures(ep, sub, engine.Counts{Delivered: 3, Failed: 2, ConsecutiveFailures: 2, LastDeliveryTime: delivered,
		LastFailure: &engine.Failure{Time: time.Now(), StatusCode: 503, Reason: "HTTP 503 Service Unavailable"}}, engine.CircuitClosed)
	eventually(t, 30*time.Second, func() (bool, string) {
		e := billing(t, ns)
		d := condOf(e.Status.Conditions, hooklinev1.ConditionDegraded)
		ok := d.Status == "True" && d.Reason == hooklinev1.ReasonDeliveryFailing && strings.Contains(d.Message, "HTTP 503") &&
			condOf(e.Status.Conditions, hooklinev1.ConditionDelivering).Status == "False" &&
			e.Status.Delivery.ConsecutiveFailures == 2 && e.Status.Delivery.LastFailure != nil &&
			e.Status.Delivery.LastFailure.StatusCode == 503
		return ok, describeConds(e.Status.Conditions)
	})

	// The circuit opens: held until the next probe, on the endpoint and its
	// subscriptions.
	eng.figures(ep, sub, engine.Counts{Delivered: 3, Failed: 5, ConsecutiveFailures: 5, LastDeliveryTime: delivered,
		LastFailure: &engine.Failure{Time: time.Now(), StatusCode: 503, Reason: "HTTP 503 Service Unavailable"}}, engine.CircuitOpen)
	eventually(t, 30*time.Second, func() (bool, string) {
		e, s := billing(t, ns), invoices(t, ns)
		d, sd := condOf(e.Status.Conditions, hooklinev1.ConditionDegraded), condOf(s.Status.Conditions, hooklinev1.ConditionDegraded)
		ok := d.Reason == hooklinev1.ReasonCircuitOpen && strings.Contains(d.Message, stamp(t0.Add(time.Hour))) &&
			sd.Reason == hooklinev1.ReasonCircuitOpen && strings.Contains(sd.Message, `Endpoint "billing"`)
		return ok, describeConds(e.Status.Conditions) + " | " + describeConds(s.Status.Conditions)
	})

	// The engine disables the endpoint (410 Gone).
	eng.update(func(s *engine.Snapshot) {
		s.Endpoints[0].Disabled, s.Endpoints[0].DisabledReason, s.Endpoints[0].DisabledSince = true, gone410, time.Now()
	})
	eventually(t, 30*time.Second, func() (bool, string) {
		e, s := billing(t, ns), invoices(t, ns)
		d := condOf(e.Status.Conditions, hooklinev1.ConditionDisabled)
		ok := d.Status == "True" && d.Reason == hooklinev1.ReasonEndpointGone &&
			strings.Contains(d.Message, "kubectl annotate webhookendpoint billing -n "+ns+" hookline.io/enable=") &&
			condOf(s.Status.Conditions, hooklinev1.ConditionDegraded).Reason == hooklinev1.ReasonEndpointDisabled
		return ok, describeConds(e.Status.Conditions) + " | " + describeConds(s.Status.Conditions)
	})
}

// writeLog records the modifications of one object seen by a watch.
type writeLog struct {
	mu     sync.Mutex
	writes []observedWrite
}

type observedWrite struct {
	delivered int64
	sentinel  bool
}

func watchWrites(t *testing.T, ctx context.Context, list client.ObjectList, ns string) *writeLog {
	t.Helper()
	w, err := k8s.Watch(ctx, list, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	l := &writeLog{}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if ev.Type != watch.Modified {
				continue
			}
			o := observedWrite{}
			switch obj := ev.Object.(type) {
			case *hooklinev1.WebhookEndpoint:
				o.sentinel = obj.Labels["sentinel"] != ""
				if obj.Status.Delivery != nil {
					o.delivered = obj.Status.Delivery.Delivered
				}
			case *hooklinev1.Subscription:
				o.sentinel = obj.Labels["sentinel"] != ""
				if obj.Status.Delivery != nil {
					o.delivered = obj.Status.Delivery.Delivered
				}
			default:
				continue
			}
			l.mu.Lock()
			l.writes = append(l.writes, o)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *writeLog) snapshot() []observedWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.writes)
}

func (l *writeLog) sawDelivered(n int64) bool {
	return slices.ContainsFunc(l.snapshot(), func(w observedWrite) bool { return w.delivered == n })
}

func TestStatusWritesAreBounded(t *testing.T) {
	cluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	ep, sub := createObjects(t, ns)
	q := openQueue(t)
	eng := &fakeEngine{process: "p1"}
	const interval = time.Second
	r := startReporter(t, q, Options{Namespaces: []string{ns}, ReportEvery: 100 * time.Millisecond, WriteInterval: interval}, eng)

	// The first status (nothing delivered yet), then quiet.
	eventually(t, 30*time.Second, func() (bool, string) {
		e := billing(t, ns)
		return condOf(e.Status.Conditions, hooklinev1.ConditionDelivering).Reason == hooklinev1.ReasonNoDeliveries, describeConds(e.Status.Conditions)
	})
	r.waitTicks(t, 3)
	eps := watchWrites(t, ctx, &hooklinev1.WebhookEndpointList{}, ns)
	subs := watchWrites(t, ctx, &hooklinev1.SubscriptionList{}, ns)

	// Figures change every 50ms for 3s.
	start := time.Now()
	var n uint64
	for time.Since(start) < 3*time.Second {
		n++
		eng.figures(ep, sub, engine.Counts{Delivered: n, LastDeliveryTime: time.Now()}, engine.CircuitClosed)
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		return eps.sawDelivered(int64(n)) && subs.sawDelivered(int64(n)), fmt.Sprintf("waiting for %d deliveries in status", n)
	})
	elapsed := time.Since(start)
	bound := int(elapsed/interval) + 1
	for name, l := range map[string]*writeLog{"endpoint": eps, "subscription": subs} {
		w := len(l.snapshot())
		t.Logf("%s: %d status writes in %s for %d changes (bound %d)", name, w, elapsed.Round(time.Millisecond), n, bound)
		if w > bound {
			t.Errorf("%s written %d times in %s, more than once per %s (+1): %d", name, w, elapsed, interval, bound)
		}
		if w < 2 {
			t.Errorf("%s written %d times; the figures changed throughout", name, w)
		}
	}

	// Nothing changes: no writes, however many rounds. A label change after
	// the rounds marks the end of the watch's window.
	before := map[string]int{"endpoint": len(eps.snapshot()), "subscription": len(subs.snapshot())}
	r.waitTicks(t, 10)
	for _, obj := range []client.Object{billing(t, ns), invoices(t, ns)} {
		patch := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"sentinel":"1"}}}`))
		if err := k8s.Patch(ctx, obj, patch); err != nil {
			t.Fatal(err)
		}
	}
	for name, l := range map[string]*writeLog{"endpoint": eps, "subscription": subs} {
		eventually(t, 30*time.Second, func() (bool, string) {
			return slices.ContainsFunc(l.snapshot(), func(w observedWrite) bool { return w.sentinel }), "waiting for the label change"
		})
		writes := l.snapshot()
		idle := slices.IndexFunc(writes, func(w observedWrite) bool { return w.sentinel }) - before[name]
		if idle != 0 {
			t.Errorf("%s: %d status writes while nothing changed", name, idle)
		}
	}
}

func TestApplyLeavesOperatorReadyAlone(t *testing.T) {
	cluster(t)
	ns := newNamespace(t)
	ep, sub := createObjects(t, ns)
	applyReady(t, ep, "The endpoint is ready.")
	before := condOf(billing(t, ns).Status.Conditions, hooklinev1.ConditionReady)
	if before.Status != "True" {
		t.Fatalf("Ready not applied: %+v", before)
	}
	q := openQueue(t)
	eng := &fakeEngine{process: "p1"}
	eng.figures(ep, sub, engine.Counts{Delivered: 1, LastDeliveryTime: time.Now()}, engine.CircuitClosed)
	startReporter(t, q, Options{Namespaces: []string{ns}, ReportEvery: 100 * time.Millisecond, WriteInterval: 200 * time.Millisecond}, eng)

	eventually(t, 30*time.Second, func() (bool, string) {
		e := billing(t, ns)
		return condOf(e.Status.Conditions, hooklinev1.ConditionDelivering).Status == "True", describeConds(e.Status.Conditions)
	})
	e := billing(t, ns)
	if after := condOf(e.Status.Conditions, hooklinev1.ConditionReady); after != before {
		t.Fatalf("Ready changed by the dispatcher's apply:\nbefore %+v\nafter  %+v", before, after)
	}
	if e.Status.ObservedGeneration != ep.Generation {
		t.Fatalf("observedGeneration %d, want %d", e.Status.ObservedGeneration, ep.Generation)
	}

	// The operator applies again; the dispatcher's conditions stay, and the
	// dispatcher's next write leaves the operator's Ready as it is.
	applyReady(t, ep, "Still ready.")
	eng.figures(ep, sub, engine.Counts{Delivered: 1, Failed: 1, ConsecutiveFailures: 1, LastDeliveryTime: time.Now().Add(-time.Second),
		LastFailure: &engine.Failure{Time: time.Now(), StatusCode: 500, Reason: "HTTP 500 Internal Server Error"}}, engine.CircuitClosed)
	eventually(t, 30*time.Second, func() (bool, string) {
		e := billing(t, ns)
		return condOf(e.Status.Conditions, hooklinev1.ConditionDegraded).Status == "True", describeConds(e.Status.Conditions)
	})
	e = billing(t, ns)
	if r := condOf(e.Status.Conditions, hooklinev1.ConditionReady); r.Message != "Still ready." || r.Status != "True" {
		t.Fatalf("Ready after both wrote: %+v", r)
	}
	managers := map[string]bool{}
	for _, m := range e.ManagedFields {
		if m.Subresource == "status" {
			managers[m.Manager] = true
		}
	}
	if !managers[FieldOwner] || !managers["hookline-operator"] {
		t.Fatalf("status managers %v, want both", managers)
	}
}

func TestReEnableFlowsToEveryReplica(t *testing.T) {
	cluster(t)
	ctx := context.Background()
	ns := newNamespace(t)
	ep, sub := createObjects(t, ns)
	q := openQueue(t) // shared by both replicas, like an external NATS cluster
	lease := &Lease{Namespace: ns, Duration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 300 * time.Millisecond}
	opts := Options{Namespaces: []string{ns}, ReportEvery: 100 * time.Millisecond, WriteInterval: 200 * time.Millisecond, Lease: lease}

	// Replica one's engine disables the endpoint (410 Gone).
	one := &fakeEngine{process: "one"}
	one.figures(ep, sub, engine.Counts{Delivered: 1, LastDeliveryTime: time.Now()}, engine.CircuitClosed)
	one.update(func(s *engine.Snapshot) {
		s.Endpoints[0].Disabled, s.Endpoints[0].DisabledReason, s.Endpoints[0].DisabledSince = true, gone410, time.Now()
	})
	r1 := startReporter(t, q, opts, one)
	eventually(t, 30*time.Second, func() (bool, string) {
		e := billing(t, ns)
		return condOf(e.Status.Conditions, hooklinev1.ConditionDisabled).Status == "True", describeConds(e.Status.Conditions)
	})

	// Replica two starts with it disabled, and follows status.
	two := &fakeEngine{process: "two"}
	r2 := startReporter(t, q, opts, two)
	if len(r2.disabled) != 1 || r2.disabled[0].Name != "billing" || r2.disabled[0].UID != ep.UID || r2.disabled[0].Reason != gone410 {
		t.Fatalf("disabled at start: %+v", r2.disabled)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		_, d := two.calls()
		return slices.Contains(d, ns+"/billing"), fmt.Sprintf("replica two disabled %v", d)
	})

	// A person re-enables it.
	annotate := func(value string) {
		patch := client.RawPatch("application/merge-patch+json",
			fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, hooklinev1.AnnotationEnable, value))
		// A merge patch needs only the object's name: no read first.
		ep := &hooklinev1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"}}
		if err := k8s.Patch(ctx, ep, patch); err != nil {
			t.Fatal(err)
		}
	}
	annotate("ticket-1")
	eventually(t, 30*time.Second, func() (bool, string) {
		e1, _ := one.calls()
		e2, _ := two.calls()
		e := billing(t, ns)
		d := condOf(e.Status.Conditions, hooklinev1.ConditionDisabled)
		ok := slices.Contains(e1, ns+"/billing") && slices.Contains(e2, ns+"/billing") &&
			e.Status.LastHandledEnable == "ticket-1" && d.Status == "False" && d.Reason == hooklinev1.ReasonEnabled &&
			condOf(e.Status.Conditions, hooklinev1.ConditionDelivering).Status == "True"
		return ok, fmt.Sprintf("enabled %v %v; handled %q; %s", e1, e2, e.Status.LastHandledEnable, describeConds(e.Status.Conditions))
	})
	enabledEvents := func() int {
		n := 0
		for _, ev := range listEvents(t, ns) {
			if ev.Reason == EventEndpointEnabled && ev.Regarding.Name == "billing" && ev.Regarding.UID == ep.UID {
				n++
			}
		}
		return n
	}
	eventually(t, 30*time.Second, func() (bool, string) { return enabledEvents() == 1, "waiting for the EndpointEnabled Event" })

	// Disabled again later (auto-disable on replica one): it sticks, though
	// the annotation still holds the value that re-enabled it before, and
	// replica two follows.
	one.update(func(s *engine.Snapshot) {
		s.Endpoints[0].Disabled, s.Endpoints[0].DisabledSince = true, time.Now()
		s.Endpoints[0].DisabledReason = "Every delivery has failed for more than 1h0m0s (since 2026-11-26T12:00:00Z); last: HTTP 500 Internal Server Error."
	})
	eventually(t, 30*time.Second, func() (bool, string) {
		e := billing(t, ns)
		d := condOf(e.Status.Conditions, hooklinev1.ConditionDisabled)
		_, d2 := two.calls()
		return d.Status == "True" && d.Reason == hooklinev1.ReasonFailingTooLong && e.Status.LastHandledEnable == "ticket-1" && len(d2) == 2,
			fmt.Sprintf("%s; replica two disabled %v", describeConds(e.Status.Conditions), d2)
	})
	annotate("ticket-1") // the same value again: nothing to do
	annotate("")         // nor does removing it
	waitRounds(t, 5, r1, r2)
	for _, eng := range []*fakeEngine{one, two} {
		if e, _ := eng.calls(); len(e) != 1 {
			t.Fatalf("%s enabled %v, want once", eng.process, e)
		}
	}
	if d := condOf(billing(t, ns).Status.Conditions, hooklinev1.ConditionDisabled); d.Status != "True" {
		t.Fatalf("re-applying a handled value re-enabled the endpoint: %+v", d)
	}
	if n := enabledEvents(); n != 1 {
		t.Fatalf("%d EndpointEnabled Events, want 1", n)
	}
}

func TestOneWriterAndFinalReports(t *testing.T) {
	cluster(t)
	ctx := context.Background()
	ns := newNamespace(t)
	ep, sub := createObjects(t, ns)
	q := openQueue(t)
	lease := &Lease{Namespace: ns, Duration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 300 * time.Millisecond}
	opts := Options{Namespaces: []string{ns}, ReportEvery: 100 * time.Millisecond, WriteInterval: 200 * time.Millisecond, Lease: lease}
	engines := map[string]*fakeEngine{"a": {process: "a"}, "b": {process: "b"}}
	engines["a"].figures(ep, sub, engine.Counts{Delivered: 3, LastDeliveryTime: time.Now()}, engine.CircuitClosed)
	engines["b"].figures(ep, sub, engine.Counts{Delivered: 4, LastDeliveryTime: time.Now()}, engine.CircuitClosed)
	reporters := map[string]*running{"a": startReporter(t, q, opts, engines["a"]), "b": startReporter(t, q, opts, engines["b"])}

	deliveredIs := func(n int64) func() (bool, string) {
		return func() (bool, string) {
			e, s := billing(t, ns), invoices(t, ns)
			ok := e.Status.Delivery != nil && e.Status.Delivery.Delivered == n && s.Status.Delivery != nil && s.Status.Delivery.Delivered == n
			return ok, fmt.Sprintf("endpoint %+v, subscription %+v, want %d", e.Status.Delivery, s.Status.Delivery, n)
		}
	}
	eventually(t, 30*time.Second, deliveredIs(7))

	holder := func() string {
		var l coordinationv1.Lease
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: DefaultLeaseName}, &l); err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	leader := holder()
	other := map[string]string{"a": "b", "b": "a"}[leader]
	if other == "" {
		t.Fatalf("lease holder %q", leader)
	}
	if reporters[leader].ticks.Load() == 0 {
		t.Fatalf("the lease holder %s has not written", leader)
	}

	// The writer stops cleanly: its final report is folded, the other
	// process takes over, and nothing is lost or counted twice.
	reporters[leader].stop()
	eventually(t, 30*time.Second, func() (bool, string) { return holder() == other, "lease holder " + holder() })
	engines[other].update(func(s *engine.Snapshot) {
		s.Subscriptions[0].Delivered++
		s.Endpoints[0].Delivered++
	})
	eventually(t, 30*time.Second, deliveredIs(8))
	st, err := openStore(ctx, q.Conn(), 1)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() (bool, string) {
		keys := reportKeys(t, st)
		return len(keys) == 1 && keys[0] == reportKey(other, 0), fmt.Sprintf("keys %v", keys)
	})
	reporters[other].waitTicks(t, 5)
	if ok, what := deliveredIs(8)(); !ok {
		t.Fatal(what)
	}
}
