package status

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/queue"
)

// The API tests run on a real kube-apiserver and etcd, started on first use
// so the pure tests need none.

var (
	envOnce sync.Once
	env     *controlplane.Env
	errEnv  error
	k8s     client.WithWatch
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}
	os.Exit(code)
}

func cluster(t *testing.T) {
	t.Helper()
	envOnce.Do(func() {
		if env, errEnv = controlplane.Start(controlplane.Options{}); errEnv != nil {
			return
		}
		scheme := runtime.NewScheme()
		_ = clientgoscheme.AddToScheme(scheme)
		_ = hooklinev1.AddToScheme(scheme)
		k8s, errEnv = client.NewWithWatch(env.Config, client.Options{Scheme: scheme})
	})
	if errEnv != nil {
		t.Fatalf("starting the control plane: %v", errEnv)
	}
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "status-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func createObjects(t *testing.T, ns string) (*hooklinev1.WebhookEndpoint, *hooklinev1.Subscription) {
	t.Helper()
	ctx := context.Background()
	ep := &hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"},
		Spec:       hooklinev1.WebhookEndpointSpec{URL: "https://example.com/hook"},
	}
	if err := k8s.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	sub := &hooklinev1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "invoices"},
		Spec: hooklinev1.SubscriptionSpec{
			EndpointRef: hooklinev1.EndpointRef{Name: "billing"},
			EventTypes:  []string{"invoice.*"},
		},
	}
	if err := k8s.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	return ep, sub
}

// fakeEngine stands for the delivery engine: the test sets its figures and
// sees its Enable and Disable calls.
type fakeEngine struct {
	process string

	mu       sync.Mutex
	snap     engine.Snapshot
	enabled  []string
	disabled []string
}

func (f *fakeEngine) Snapshot() engine.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snap
	s.Process, s.Started, s.Taken = f.process, t0, time.Now()
	s.Subscriptions = slices.Clone(s.Subscriptions)
	s.Endpoints = slices.Clone(s.Endpoints)
	return s
}

func (f *fakeEngine) update(fn func(s *engine.Snapshot)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.snap)
}

func (f *fakeEngine) Enable(ns, name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enabled = append(f.enabled, ns+"/"+name)
	was := false
	for i := range f.snap.Endpoints {
		if e := &f.snap.Endpoints[i]; e.Namespace == ns && e.Name == name && e.Disabled {
			e.Disabled, e.DisabledReason, e.DisabledSince, was = false, "", time.Time{}, true
		}
	}
	return was
}

func (f *fakeEngine) Disable(ns, name, reason string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.snap.Endpoints {
		if e := &f.snap.Endpoints[i]; e.Namespace == ns && e.Name == name {
			if e.Disabled {
				return false
			}
			e.Disabled, e.DisabledReason, e.DisabledSince = true, reason, time.Now()
			f.disabled = append(f.disabled, ns+"/"+name)
			return true
		}
	}
	f.snap.Endpoints = append(f.snap.Endpoints, engine.EndpointStats{Namespace: ns, Name: name,
		Disabled: true, DisabledReason: reason, DisabledSince: time.Now()})
	f.disabled = append(f.disabled, ns+"/"+name)
	return true
}

func (f *fakeEngine) calls() (enabled, disabled []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.enabled), slices.Clone(f.disabled)
}

// figures sets the engine's figures for the two test objects.
func (f *fakeEngine) figures(ep *hooklinev1.WebhookEndpoint, s *hooklinev1.Subscription, c engine.Counts, circuit engine.CircuitState) {
	ns := ep.Namespace
	f.update(func(snap *engine.Snapshot) {
		var disabled engine.EndpointStats
		for _, e := range snap.Endpoints {
			if e.Name == ep.Name {
				disabled = e
			}
		}
		snap.Subscriptions = []engine.SubscriptionStats{{Namespace: ns, Name: s.Name, UID: string(s.UID), Counts: c}}
		snap.Endpoints = []engine.EndpointStats{{Namespace: ns, Name: ep.Name, UID: string(ep.UID), Counts: c,
			Circuit: circuit, NextProbe: t0.Add(time.Hour),
			Disabled: disabled.Disabled, DisabledReason: disabled.DisabledReason, DisabledSince: disabled.DisabledSince}}
	})
}

type fakeBacklog struct{ b queue.Backlog }

func (f fakeBacklog) Backlog(context.Context) (queue.Backlog, error) { return f.b, nil }

// running is a reporter started the way the dispatcher starts it.
type running struct {
	*Reporter
	ticks    atomic.Int64
	disabled []engine.DisabledEndpoint
	stop     func()
}

func startReporter(t *testing.T, q *queue.Queue, opts Options, eng Engine) *running {
	t.Helper()
	return startReporterWith(t, q, opts, func([]engine.DisabledEndpoint, engine.Observer) Engine { return eng })
}

// startReporterWith builds the engine once the reporter knows the disabled
// endpoints and has an observer, as the dispatcher does.
func startReporterWith(t *testing.T, q *queue.Queue, opts Options, engine func([]engine.DisabledEndpoint, engine.Observer) Engine) *running {
	t.Helper()
	opts.Config, opts.Conn = env.Config, q.Conn()
	opts.Logger = testr.NewWithInterface(t, testr.Options{LogTimestamp: true})
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	rr := &running{Reporter: r}
	r.afterTick = func() { rr.ticks.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	cacheDone := make(chan struct{})
	go func() { _ = r.Start(ctx); close(cacheDone) }()
	if err := r.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if rr.disabled, err = r.Disabled(ctx); err != nil {
		t.Fatal(err)
	}
	eng := engine(rr.disabled, r.Observer())
	runDone := make(chan struct{})
	go func() {
		if err := r.Run(ctx, eng); err != nil {
			t.Errorf("Run: %v", err)
		}
		close(runDone)
	}()
	var once sync.Once
	rr.stop = func() {
		once.Do(func() {
			cancel()
			<-runDone
			_ = r.Close(context.Background())
			<-cacheDone
		})
	}
	t.Cleanup(rr.stop)
	return rr
}

// waitTicks waits until the status writer has done n more rounds.
func (r *running) waitTicks(t *testing.T, n int64) {
	t.Helper()
	target := r.ticks.Load() + n
	eventually(t, 30*time.Second, func() (bool, string) {
		return r.ticks.Load() >= target, fmt.Sprintf("%d rounds of %d", r.ticks.Load(), target)
	})
}

// waitRounds waits until the status writers have done n more rounds between
// them (only the lease holder writes).
func waitRounds(t *testing.T, n int64, rs ...*running) {
	t.Helper()
	total := func() int64 {
		var sum int64
		for _, r := range rs {
			sum += r.ticks.Load()
		}
		return sum
	}
	target := total() + n
	eventually(t, 30*time.Second, func() (bool, string) { return total() >= target, "waiting for status rounds" })
}

// eventually polls cond until it holds. It waits for something to happen,
// never asserts how long it took.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, what := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// billing reads the fixture's endpoint, billing, in ns.
func billing(t *testing.T, ns string) *hooklinev1.WebhookEndpoint {
	t.Helper()
	ep := &hooklinev1.WebhookEndpoint{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "billing"}, ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

// invoices reads the fixture's subscription, invoices, in ns.
func invoices(t *testing.T, ns string) *hooklinev1.Subscription {
	t.Helper()
	s := &hooklinev1.Subscription{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "invoices"}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func condOf(conds []metav1.Condition, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(conds, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func describeConds(conds []metav1.Condition) string {
	s := ""
	for _, c := range conds {
		s += fmt.Sprintf("%s=%s/%s %q; ", c.Type, c.Status, c.Reason, c.Message)
	}
	return s
}

// applyReady writes a Ready condition the way the operator does.
func applyReady(t *testing.T, ep *hooklinev1.WebhookEndpoint, msg string) {
	t.Helper()
	st := map[string]any{
		"observedGeneration": ep.Generation,
		"conditions": []any{map[string]any{
			"type": hooklinev1.ConditionReady, "status": "True", "reason": hooklinev1.ReasonReady, "message": msg,
			"lastTransitionTime": "2026-11-26T12:00:00Z",
		}},
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": st}}
	u.SetGroupVersionKind(endpointGVK)
	u.SetNamespace(ep.Namespace)
	u.SetName(ep.Name)
	if err := k8s.Status().Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner("hookline-operator"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

// countingSink stores Events in the API and counts them.
type countingSink struct {
	ClientSink
	n atomic.Int64
}

func (s *countingSink) CreateEvent(ctx context.Context, ev *eventsv1.Event) error {
	s.n.Add(1)
	return s.ClientSink.CreateEvent(ctx, ev)
}

func listEvents(t *testing.T, ns string) []eventsv1.Event {
	t.Helper()
	var l eventsv1.EventList
	if err := k8s.List(context.Background(), &l, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(l.Items, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
	return l.Items
}
