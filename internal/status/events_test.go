package status

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
)

func TestEventsAreRateLimited(t *testing.T) {
	cluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	ep, sub := createObjects(t, ns)

	objs, err := newObjects(env.Config, []string{ns})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = objs.cache.Start(ctx) }()
	if !objs.cache.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	clk := clocktesting.NewFakeClock(t0)
	sink := &countingSink{ClientSink: ClientSink{Client: kubernetes.NewForConfigOrDie(env.Config)}}
	ev := newEvents(sink, clk, time.Minute, "dispatcher-0", testr.New(t))
	ev.uid = func(kind objKind, ns, name string) string { return objs.uid(ctx, kind, ns, name) }
	tick := make(chan time.Time)
	go ev.run(ctx, tick)
	flush := func() { tick <- clk.Now() }
	waitEvents := func(n int) {
		t.Helper()
		eventually(t, 30*time.Second, func() (bool, string) {
			got := len(listEvents(t, ns))
			return got == n && sink.n.Load() == int64(n), fmt.Sprintf("%d Events stored, %d sent, want %d", got, sink.n.Load(), n)
		})
	}

	// A storm of dead deliveries within a minute: one Event at once...
	for i := range 50 {
		ev.Observe(engine.Signal{Kind: engine.SignalDeliveryDead, Time: clk.Now(), Namespace: ns, Endpoint: "billing",
			Subscription: "invoices", EventID: fmt.Sprintf("evt_%d", i), StatusCode: 500,
			Reason: fmt.Sprintf("Delivery of event evt_%d failed for good after 3 attempts: HTTP 500 Internal Server Error.", i)})
		clk.Step(time.Second)
	}
	flush() // within the minute: nothing more
	waitEvents(1)
	first := listEvents(t, ns)[0]
	if first.Reason != EventDeliveryDead || first.Type != "Warning" || first.Regarding.Kind != "Subscription" ||
		first.Regarding.Name != "invoices" || first.Regarding.UID != sub.UID ||
		first.Related == nil || first.Related.Name != "billing" || first.Related.UID != ep.UID ||
		!strings.Contains(first.Note, "evt_0") || first.ReportingController != ReportingController {
		t.Fatalf("first Event %+v", first)
	}

	// ...and one summing up the rest when the minute is over.
	clk.Step(10 * time.Second)
	flush()
	waitEvents(2)
	summary := listEvents(t, ns)[1]
	if !strings.Contains(summary.Note, "49 more DeliveryDead in the last 1m0s; the latest: Delivery of event evt_49") {
		t.Fatalf("summary note %q", summary.Note)
	}
	// A quiet minute after that records nothing.
	clk.Step(2 * time.Minute)
	flush()

	// Circuits: opened and closed once each; half-open moves are no news;
	// reopening within the minute is summed up later.
	for _, c := range [][2]engine.CircuitState{
		{engine.CircuitClosed, engine.CircuitOpen},
		{engine.CircuitOpen, engine.CircuitHalfOpen},
		{engine.CircuitHalfOpen, engine.CircuitOpen},
		{engine.CircuitOpen, engine.CircuitHalfOpen},
		{engine.CircuitHalfOpen, engine.CircuitClosed},
		{engine.CircuitClosed, engine.CircuitOpen},
	} {
		ev.Observe(engine.Signal{Kind: engine.SignalCircuitChanged, Time: clk.Now(), Namespace: ns, Endpoint: "billing",
			PreviousCircuit: c[0], Circuit: c[1], Reason: fmt.Sprintf("from %s to %s", c[0], c[1])})
	}
	// Enables and disables that follow status are not news either.
	ev.silence(ns, "billing", func() {
		ev.Observe(engine.Signal{Kind: engine.SignalEndpointDisabled, Time: clk.Now(), Namespace: ns, Endpoint: "billing", Reason: gone410})
	})
	ev.Observe(engine.Signal{Kind: engine.SignalEndpointDisabled, Time: clk.Now(), Namespace: ns, Endpoint: "billing", Reason: gone410})
	waitEvents(5)
	clk.Step(time.Minute)
	flush()
	waitEvents(6)

	byReason := map[string][]string{}
	for _, e := range listEvents(t, ns) {
		byReason[e.Reason] = append(byReason[e.Reason], e.Note)
	}
	summed := slices.ContainsFunc(byReason[EventCircuitOpened], func(n string) bool {
		return strings.HasPrefix(n, "1 more CircuitOpened in the last 1m0s; the latest: from Closed to Open")
	})
	if len(byReason[EventCircuitOpened]) != 2 || !summed ||
		len(byReason[EventCircuitClosed]) != 1 || len(byReason[EventEndpointDisabled]) != 1 {
		t.Fatalf("Events by reason: %v", byReason)
	}
	if d := byReason[EventEndpointDisabled][0]; !strings.Contains(d, "kubectl annotate webhookendpoint billing -n "+ns+" "+hooklinev1.AnnotationEnable+"=") {
		t.Fatalf("EndpointDisabled note does not say how to re-enable: %q", d)
	}
}
