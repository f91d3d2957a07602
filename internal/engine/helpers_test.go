package engine

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/queue/queuetest"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/signing"
	"github.com/hookline/hookline/internal/ssrf"
)

const ns = "team-a"

func openQueue(t testing.TB) *queue.Queue {
	t.Helper()
	return queuetest.Open(t, nil)
}

// fixture is one dispatcher: an embedded queue, a static registry built from
// the objects the test declares, and the engine.
type fixture struct {
	t       testing.TB
	q       *queue.Queue
	objs    registry.StaticObjects
	secrets map[string]string // endpoint → its signing secret
	reg     *registry.Registry
	eng     *Engine
	signals signalLog
	metrics *prometheus.Registry
}

func newFixture(t testing.TB) *fixture {
	return &fixture{t: t, q: openQueue(t), secrets: map[string]string{}, metrics: prometheus.NewRegistry()}
}

// endpoint declares a WebhookEndpoint with a generated signing key.
func (f *fixture) endpoint(name string, rc *receiver, mods ...func(*hooklinev1.WebhookEndpoint)) {
	ep := hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-ep-" + name), Generation: 1},
		Spec:       hooklinev1.WebhookEndpointSpec{URL: rc.URL + "/hook", AllowInsecureHTTP: true},
	}
	if rc.TLS != nil {
		pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.Certificate().Raw})
		ca := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-ca", Labels: map[string]string{hooklinev1.LabelEndpointSecret: "true"}}, Data: map[string][]byte{"ca.crt": pemCA}}
		f.objs.Secrets = append(f.objs.Secrets, ca)
		ep.Spec.TLS = &hooklinev1.EndpointTLS{CA: &hooklinev1.SecretKeyRef{Name: ca.Name, Key: "ca.crt"}}
	}
	for _, m := range mods {
		m(&ep)
	}
	secret, err := signing.GenerateSecret()
	if err != nil {
		f.t.Fatal(err)
	}
	f.secrets[name] = secret
	rc.secret = secret
	ks := signing.KeySet{Current: signing.Key{ID: "k-" + name, Secret: secret, CreatedAt: time.Now().Add(-time.Hour)}}
	f.objs.Endpoints = append(f.objs.Endpoints, ep)
	f.objs.Secrets = append(f.objs.Secrets, registry.SigningSecret(ns, name, ks))
}

func limits(mod func(*hooklinev1.EndpointLimits)) func(*hooklinev1.WebhookEndpoint) {
	return func(ep *hooklinev1.WebhookEndpoint) {
		if ep.Spec.Limits == nil {
			ep.Spec.Limits = &hooklinev1.EndpointLimits{}
		}
		mod(ep.Spec.Limits)
	}
}

// subscription declares a Subscription to every event type.
func (f *fixture) subscription(name, endpoint string, mods ...func(*hooklinev1.Subscription)) {
	s := hooklinev1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-sub-" + name), Generation: 1},
		Spec: hooklinev1.SubscriptionSpec{
			EndpointRef: hooklinev1.EndpointRef{Name: endpoint},
			EventTypes:  []string{"*"},
		},
	}
	for _, m := range mods {
		m(&s)
	}
	f.objs.Subscriptions = append(f.objs.Subscriptions, s)
}

func policy(mod func(*hooklinev1.DeliveryPolicy)) func(*hooklinev1.Subscription) {
	return func(s *hooklinev1.Subscription) {
		if s.Spec.Delivery == nil {
			s.Spec.Delivery = &hooklinev1.DeliveryPolicy{}
		}
		mod(s.Spec.Delivery)
	}
}

// schedule sets a short retry schedule with one more attempt than steps.
func schedule(steps ...string) func(*hooklinev1.Subscription) {
	return policy(func(p *hooklinev1.DeliveryPolicy) {
		p.Schedule = nil
		for _, s := range steps {
			p.Schedule = append(p.Schedule, *dur(s))
		}
	})
}

// dur parses a Go duration for an API field.
func dur(s string) *hooklinev1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return hooklinev1.DurationOf(d)
}

func loopback() ssrf.Policy {
	p, err := ssrf.ParsePolicy([]string{"127.0.0.0/8", "::1"}, nil)
	if err != nil {
		panic(err)
	}
	return p
}

// testOptions are short holds and a quick breaker, so tests see every
// state within seconds.
func testOptions() Options {
	return Options{
		Breaker:       BreakerConfig{Threshold: 5, MinCooldown: time.Second, MaxCooldown: 4 * time.Second},
		BusyHold:      time.Second,
		MaxBusyHold:   5 * time.Second,
		SuspendedHold: time.Second,
		DisabledHold:  time.Second,
		DrainTimeout:  time.Second,
		UnparkCheck:   time.Second,
		// Routes switched by a test have no record of deletions.
		UnknownSubscriptionGrace: 2 * time.Second,
	}
}

// start builds the registry and runs the engine until the test ends.
func (f *fixture) start(opts Options) *Engine {
	f.t.Helper()
	f.build()
	opts.Metrics = f.metrics
	opts.Observer = &f.signals
	var stop func() error
	f.eng, stop = f.run(opts)
	f.t.Cleanup(func() {
		if err := stop(); err != nil {
			f.t.Errorf("Run: %v", err)
		}
	})
	return f.eng
}

// startRoutes runs the engine with routes a test switches between (the
// fixture's queue, metrics and signals) until the test ends.
func (f *fixture) startRoutes(routes Routes, opts Options) *Engine {
	f.t.Helper()
	opts.Queue, opts.Routes, opts.Metrics, opts.Observer = f.q, routes, f.metrics, &f.signals
	eng, err := New(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("Run: %v", err)
		}
	})
	return eng
}

// build builds the static registry from the declared objects.
func (f *fixture) build() {
	f.t.Helper()
	reg, err := registry.NewStatic(f.objs, registry.Options{SSRF: loopback()})
	if err != nil {
		f.t.Fatalf("building the registry: %v", err)
	}
	f.t.Cleanup(reg.Close)
	for _, ep := range f.objs.Endpoints {
		if e := reg.Endpoint(ns, ep.Name); e == nil || !e.Ready {
			f.t.Fatalf("endpoint %s is not ready: %+v", ep.Name, e)
		}
	}
	f.reg = reg
}

// run runs another engine on the fixture's queue and registry; stop ends it
// and returns what Run returned. Stopping twice is harmless.
func (f *fixture) run(opts Options) (*Engine, func() error) {
	f.t.Helper()
	opts.Queue, opts.Routes = f.q, f.reg
	opts.Logger = testr.NewWithInterface(f.t, testr.Options{LogTimestamp: true})
	eng, err := New(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	var once sync.Once
	var runErr error
	return eng, func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
}

func event(id string) queue.Event {
	return queue.Event{
		Namespace: ns,
		ID:        id,
		Type:      "invoice.paid",
		Time:      time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC),
		Data:      json.RawMessage(fmt.Sprintf(`{"id":%q,"amount":42}`, id)),
	}
}

func (f *fixture) publish(ids ...string) {
	f.t.Helper()
	evs := make([]queue.Event, len(ids))
	for i, id := range ids {
		evs[i] = event(id)
	}
	if _, err := f.q.PublishEvents(context.Background(), evs); err != nil {
		f.t.Fatalf("publishing: %v", err)
	}
}

// subscriptionID is the current object of subscription name.
func (f *fixture) subscriptionID(name string) queue.SubscriptionID {
	f.t.Helper()
	s := f.reg.Subscription(ns, name)
	if s == nil {
		f.t.Fatalf("no subscription %s", name)
	}
	return queue.SubscriptionID{Namespace: ns, Name: name, UID: string(s.UID)}
}

func (f *fixture) attempts(sub string) []queue.Attempt {
	f.t.Helper()
	as, err := f.q.RecentAttempts(context.Background(), f.subscriptionID(sub), 100)
	if err != nil {
		f.t.Fatal(err)
	}
	return as
}

func (f *fixture) dead(sub string) []queue.DeadDelivery {
	f.t.Helper()
	ds, err := f.q.ListDead(context.Background(), f.subscriptionID(sub), 100)
	if err != nil {
		f.t.Fatal(err)
	}
	return ds
}

func (f *fixture) endpointStats(name string) EndpointStats {
	for _, s := range f.eng.Snapshot().Endpoints {
		if s.Name == name {
			return s
		}
	}
	return EndpointStats{}
}

func (f *fixture) subscriptionStats(name string) SubscriptionStats {
	for _, s := range f.eng.Snapshot().Subscriptions {
		if s.Name == name {
			return s
		}
	}
	return SubscriptionStats{}
}

// signalLog records what the engine observed.
type signalLog struct {
	mu  sync.Mutex
	all []Signal
}

func (l *signalLog) Observe(s Signal) {
	l.mu.Lock()
	l.all = append(l.all, s)
	l.mu.Unlock()
}

func (l *signalLog) of(kind SignalKind) []Signal {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Signal
	for _, s := range l.all {
		if s.Kind == kind {
			out = append(out, s)
		}
	}
	return out
}

// eventually waits for cond, for outcomes only: it never asserts how fast.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	// Generous: under the race detector on a busy 2-core machine a few
	// hundred deliveries can take most of a minute. A bound, not a timing.
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// request is one delivery a receiver got.
type request struct {
	ctx    context.Context
	at     time.Time
	n      int
	header http.Header
	body   []byte
}

func (r request) webhookID() string { return r.header.Get("Webhook-Id") }

// id is the producer's id of the event, from the body: with one
// subscription per receiver, one id per delivery.
func (r request) id() string {
	if id := r.header.Get("Ce-Id"); id != "" {
		return id
	}
	var env struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(r.body, &env)
	return env.ID
}

// receiver is a loopback webhook receiver that answers as respond says (204
// when nil) and records every request.
type receiver struct {
	*httptest.Server
	secret  string
	respond func(w http.ResponseWriter, r request)

	mu          sync.Mutex
	got         []request
	inflight    atomic.Int64
	maxInflight atomic.Int64
}

func newReceiver(t testing.TB, tls bool, respond func(w http.ResponseWriter, r request)) *receiver {
	rc := &receiver{respond: respond}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(rc.handle))
	rc.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		rc.StartTLS()
	} else {
		rc.Start()
	}
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) handle(w http.ResponseWriter, r *http.Request) {
	n := rc.inflight.Add(1)
	defer rc.inflight.Add(-1)
	for {
		m := rc.maxInflight.Load()
		if n <= m || rc.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	req := request{ctx: r.Context(), at: time.Now(), n: len(rc.got) + 1, header: r.Header.Clone(), body: body}
	rc.got = append(rc.got, req)
	rc.mu.Unlock()
	if rc.respond == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.respond(w, req)
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.got...)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

// byID groups requests by event id, in arrival order (one event per
// subscription: one webhook-id).
func (rc *receiver) byID() map[string][]request {
	out := map[string][]request{}
	for _, r := range rc.requests() {
		out[r.id()] = append(out[r.id()], r)
	}
	return out
}

// verify checks a request's signature with the endpoint's secret, as a
// Standard Webhooks receiver would.
func (rc *receiver) verify(t testing.TB, r request) {
	t.Helper()
	if err := signing.Verify([]string{rc.secret}, r.header, r.body, r.at, 0); err != nil {
		t.Errorf("request %d (%s) does not verify: %v", r.n, r.id(), err)
	}
}

// ids returns n event ids in publishing order: e0000, e0001, ...
func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("e%04d", i)
	}
	return out
}

func attemptNumbers(as []queue.Attempt) string {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", a.Attempt, a.StatusCode)
	}
	return b.String()
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		panic(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	return 0
}

// idleConsumers are the consumers a queue keeps whatever its subscriptions:
// the fan-out, the legacy deliveries consumer and one per delivery
// partition, sorted as queueState sorts them.
func idleConsumers() []string {
	out := []string{"HL_DELIVERIES/deliveries", "HL_EVENTS/fanout"}
	for p := range queue.Partitions {
		out = append(out, fmt.Sprintf("HL_DELIVERIES/dlv__%d", p))
	}
	slices.Sort(out)
	return out
}
