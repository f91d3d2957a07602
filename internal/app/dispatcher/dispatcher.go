// Package dispatcher assembles the `hookline dispatcher` process: the queue (embedded
// NATS JetStream or an external cluster), the registry of endpoints and subscriptions, the
// delivery engine, status reporting and the HTTP API (publishing and admin), and runs
// them until stopped.
package dispatcher

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/catalog"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/server"
	"github.com/hookline/hookline/internal/ssrf"
	"github.com/hookline/hookline/internal/status"
	"github.com/hookline/hookline/internal/testsend"
	"github.com/hookline/hookline/internal/tracing"
	"github.com/hookline/hookline/internal/ui"
)

// Config is the dispatcher's configuration, from its flags.
type Config struct {
	Listen string // publishing and admin API
	// TLSCertFile and TLSKeyFile, when set, have the API serve HTTPS with this
	// certificate, reloaded when the files change (a mounted Secret).
	TLSCertFile, TLSKeyFile string
	MetricsListen           string // Prometheus metrics; empty disables
	Queue                   queue.Config
	Namespaces              []string
	// Auth is "kubernetes" (TokenReview + SubjectAccessReview) or "none" (local use only).
	Auth string
	// TokenAudience, when set, is the audience publishers' tokens must be
	// issued for (projected ServiceAccount tokens).
	TokenAudience string
	// MaxConcurrentReviews bounds the TokenReviews and SubjectAccessReviews
	// in flight.
	MaxConcurrentReviews int
	MaxBodyBytes         int64
	// Limits bound slow and greedy clients on every listener.
	Limits server.Limits
	// MaxJSONDepth bounds the nesting of an event's data.
	MaxJSONDepth int
	// AllowUnlabelledSecrets turns off the rule that a Secret whose value is
	// sent to an endpoint must carry hookline.io/endpoint-secret: "true".
	AllowUnlabelledSecrets bool
	AllowCIDRs             []string // destinations allowed despite the SSRF guard
	DenyCIDRs              []string // more destinations to refuse (cluster networks)
	// EgressProxy is the installation's HTTP proxy (--egress-proxy); empty connects
	// directly. EgressNoProxy lists destinations that bypass it, in the NO_PROXY
	// format; EgressProxyAllowPrivate exempts the proxy's own address from the SSRF
	// guard.
	EgressProxy             string
	EgressNoProxy           string
	EgressProxyAllowPrivate bool
	Workers                 int
	// SuspendedHold is how long deliveries of a suspended subscription, and
	// ordered ones to an endpoint that cannot take them, are put back for
	// (engine.Options.SuspendedHold); zero means engine.DefaultSuspendedHold.
	SuspendedHold time.Duration
	// StatusInterval is the least time between two status writes of one endpoint or
	// subscription; zero means status.DefaultWriteInterval.
	StatusInterval time.Duration
	// LeaseNamespace holds the Lease that elects the one replica writing status. Empty
	// means the namespace the pod runs in; outside a pod, no Lease is taken and this
	// process writes status, which is right only when it is the only dispatcher.
	LeaseNamespace string
	Logger         logr.Logger
	Clock          clock.PassiveClock
	// Ready, when set, is closed once the dispatcher serves and delivers.
	Ready chan<- struct{}
	// Listening, when set, receives the API's address once it listens (for port 0).
	Listening func(api, metrics net.Addr)
	// UIListen, when set, is where the dispatcher serves the dashboard (the pages of
	// hookline ui) for users an authenticating proxy in front of it has signed in: each
	// request must carry the user's bearer token, and the pages act as that user.
	UIListen string
	// UIListening, when set, receives the dashboard's address once it listens.
	UIListening func(net.Addr)
}

// Validate checks the configuration, naming the flag at fault.
func (c *Config) Validate() error {
	switch c.Auth {
	case "kubernetes", "none":
	default:
		return fmt.Errorf("--auth=%q: choose kubernetes (publishers authenticate with their ServiceAccount token) or none (local use only)", c.Auth)
	}
	if c.Listen == "" {
		return errors.New("--listen is required, e.g. :8080")
	}
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("--max-body-bytes=%d must be positive", c.MaxBodyBytes)
	}
	if c.UIListen != "" && c.Auth != "kubernetes" {
		return errors.New("--ui-listen needs --auth=kubernetes: the dashboard's calls to the admin API must be checked against each user's RBAC")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together: set both to serve HTTPS, or neither")
	}
	if c.MaxJSONDepth < 0 {
		return fmt.Errorf("--max-json-depth=%d must be positive", c.MaxJSONDepth)
	}
	if c.SuspendedHold != 0 && (c.SuspendedHold < time.Second || c.SuspendedHold > time.Hour) {
		return fmt.Errorf("--suspended-hold=%s must be between 1s and 1h (default %s)", c.SuspendedHold, engine.DefaultSuspendedHold)
	}
	if _, err := c.egressProxy(); err != nil {
		return err
	}
	return nil
}

// egressProxy is the installation's proxy from --egress-proxy and its companions; nil
// when there is none.
func (c *Config) egressProxy() (*delivery.Proxy, error) {
	if c.EgressProxy == "" {
		if c.EgressNoProxy != "" || c.EgressProxyAllowPrivate {
			return nil, errors.New("--egress-no-proxy and --egress-proxy-allow-private need --egress-proxy")
		}
		return nil, nil
	}
	u, err := delivery.ParseProxyURL(c.EgressProxy)
	if err != nil {
		return nil, fmt.Errorf("--egress-proxy: %w", err)
	}
	return &delivery.Proxy{URL: u, NoProxy: c.EgressNoProxy, Trusted: c.EgressProxyAllowPrivate}, nil
}

// Run runs the dispatcher until ctx ends. cfg connects to the Kubernetes API.
func Run(ctx context.Context, restCfg *rest.Config, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	stopTracing, err := tracing.Setup(ctx, "hookline-dispatcher")
	if err != nil {
		return err
	}
	if stopTracing != nil {
		cfg.Logger.Info("Tracing on: exporting spans over OTLP as the OTEL_* environment says")
		defer func() {
			flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := stopTracing(flush); err != nil {
				cfg.Logger.Error(err, "Flushing the last spans")
			}
		}()
	}
	d, err := assemble(ctx, restCfg, cfg)
	if err != nil {
		return err
	}
	defer d.close()
	lns, err := listen(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.TLSCertFile != "" {
		certs, err := server.NewCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, d.clk, d.log.WithName("tls"))
		if err != nil {
			lns.close()
			return err
		}
		lns.api = tls.NewListener(lns.api, certs.TLSConfig())
		if lns.ui != nil {
			lns.ui = tls.NewListener(lns.ui, certs.TLSConfig())
		}
	}
	if lns.ui != nil {
		if d.ui, err = dashboard(restCfg, cfg, d.api, lns.ui.Addr(), d.log); err != nil {
			lns.close()
			return err
		}
	}
	return d.run(ctx, lns)
}

// dispatcher is one dispatcher process's parts, assembled and not yet running.
type dispatcher struct {
	cfg      Config
	log      logr.Logger
	clk      clock.PassiveClock
	q        *queue.Queue
	pool     *delivery.Pool
	reg      *registry.Registry
	catalog  *catalog.Catalog
	reporter *status.Reporter
	metrics  *prometheus.Registry
	api      http.Handler
	// ui is the dashboard (--ui-listen), nil when off.
	ui http.Handler
	// eng is set once runEngine has built the engine; recoveries need it.
	eng atomic.Pointer[engine.Engine]
}

// assemble opens the queue and builds every part around it: the registry of
// endpoints and subscriptions, status reporting and the HTTP API. The engine
// is built later, in runEngine, because it starts from what status says is
// disabled.
func assemble(ctx context.Context, restCfg *rest.Config, cfg Config) (_ *dispatcher, err error) {
	d := &dispatcher{cfg: cfg, log: cfg.Logger, clk: cfg.Clock}
	if d.clk == nil {
		d.clk = clock.RealClock{}
	}
	policy, err := ssrf.ParsePolicy(cfg.AllowCIDRs, cfg.DenyCIDRs)
	if err != nil {
		return nil, fmt.Errorf("--allow-cidr/--deny-cidr: %w", err)
	}
	proxy, err := cfg.egressProxy()
	if err != nil {
		return nil, err
	}
	if d.q, err = queue.Open(ctx, cfg.Queue, d.log.WithName("queue")); err != nil {
		return nil, fmt.Errorf("opening the queue: %w", err)
	}
	defer func() {
		if err != nil {
			d.close()
		}
	}()

	// An endpoint may have up to 1,000 requests in flight (limits.maxInFlight); fewer idle
	// connections than that would make every burst dial (and, over HTTPS, handshake) again.
	d.pool = delivery.NewPool(delivery.PoolOptions{Clock: d.clk, MaxIdleConnsPerHost: 1000})
	d.reg, err = registry.New(restCfg, registry.Options{
		Namespaces: cfg.Namespaces, Pool: d.pool, SSRF: policy, Clock: d.clk, Logger: d.log.WithName("registry"),
		AllowUnlabelledSecrets: cfg.AllowUnlabelledSecrets, Proxy: proxy,
	})
	if err != nil {
		return nil, fmt.Errorf("setting up the registry: %w", err)
	}

	if d.catalog, err = catalog.New(restCfg, cfg.Namespaces, d.log.WithName("catalog")); err != nil {
		return nil, fmt.Errorf("setting up the event catalog: %w", err)
	}

	d.metrics = prometheus.NewRegistry()
	d.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if d.reporter, err = newReporter(restCfg, cfg, d.q, d.clk, d.metrics, d.log); err != nil {
		return nil, fmt.Errorf("setting up status reporting: %w", err)
	}

	authz, err := authorizer(restCfg, cfg)
	if err != nil {
		return nil, err
	}
	d.api, err = server.NewHandler(server.Options{
		Publisher:  newPublisher(d.q, d.metrics),
		Deliveries: d.q,
		Events:     d.q,
		Recoverer:  recoverer{d},
		SubscriptionUID: func(ns, name string) (string, bool) {
			if s := d.reg.Subscription(ns, name); s != nil {
				return string(s.UID), true
			}
			return "", false
		},
		Schemas:      d.catalog,
		Tests:        &testsend.Sender{Endpoints: d.reg, Catalog: d.catalog, Log: d.q, Clock: d.clk},
		Authorizer:   authz,
		MaxBodyBytes: cfg.MaxBodyBytes,
		MaxJSONDepth: cfg.MaxJSONDepth,
		Limits:       cfg.Limits,
		Namespaces:   cfg.Namespaces,
		ReadyChecks: []server.Check{
			{Name: "registry", Ready: d.reg.CheckReady},
			{Name: "catalog", Ready: d.catalog.CheckReady},
			{Name: "engine", Ready: d.engineReady},
		},
		Clock:  d.clk,
		Logger: d.log.WithName("api"),
	})
	if err != nil {
		return nil, err
	}
	d.api = tracing.Middleware(d.api)
	return d, nil
}

func (d *dispatcher) close() {
	if d.pool != nil {
		d.pool.CloseIdleConnections()
	}
	d.q.Close()
}

// newReporter sets up status reporting: the Lease holder among the replicas
// writes status.
func newReporter(restCfg *rest.Config, cfg Config, q *queue.Queue, clk clock.PassiveClock, reg prometheus.Registerer, log logr.Logger) (*status.Reporter, error) {
	opts := status.Options{
		Config: restCfg, Conn: q.Conn(), Replicas: cfg.Queue.Replicas, Backlog: q,
		Namespaces: cfg.Namespaces, WriteInterval: cfg.StatusInterval, Logger: log.WithName("status"), Metrics: reg,
	}
	if c, ok := clk.(clock.WithTicker); ok {
		opts.Clock = c
	}
	if ns := leaseNamespace(cfg.LeaseNamespace); ns != "" {
		opts.Lease = &status.Lease{Namespace: ns}
	} else {
		log.Info("Not running in a pod and no lease namespace given: this process writes status without a Lease; run only one dispatcher like this")
	}
	return status.New(opts)
}

// listeners are the dispatcher's sockets: the API's, and the metrics' and the
// dashboard's (nil when disabled).
type listeners struct{ api, metrics, ui net.Listener }

func (l listeners) close() {
	for _, ln := range []net.Listener{l.api, l.metrics, l.ui} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// listen opens the API's and the metrics' sockets, and reports their addresses
// to cfg.Listening.
func listen(ctx context.Context, cfg Config) (listeners, error) {
	var l listeners
	var lc net.ListenConfig
	var err error
	if l.api, err = lc.Listen(ctx, "tcp", cfg.Listen); err != nil {
		return l, fmt.Errorf("--listen=%s: %w", cfg.Listen, err)
	}
	if cfg.MetricsListen != "" {
		if l.metrics, err = lc.Listen(ctx, "tcp", cfg.MetricsListen); err != nil {
			_ = l.api.Close()
			return l, fmt.Errorf("--metrics-listen=%s: %w", cfg.MetricsListen, err)
		}
	}
	if cfg.UIListen != "" {
		if l.ui, err = lc.Listen(ctx, "tcp", cfg.UIListen); err != nil {
			l.close()
			return l, fmt.Errorf("--ui-listen=%s: %w", cfg.UIListen, err)
		}
		if cfg.UIListening != nil {
			cfg.UIListening(l.ui.Addr())
		}
	}
	if cfg.Listening != nil {
		var m net.Addr
		if l.metrics != nil {
			m = l.metrics.Addr()
		}
		cfg.Listening(l.api.Addr(), m)
	}
	return l, nil
}

// run starts every part and serves until ctx ends or a part fails.
func (d *dispatcher) run(ctx context.Context, lns listeners) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.reg.Start(ctx) })
	g.Go(func() error { return d.catalog.Start(ctx) })
	g.Go(func() error { return d.reporter.Start(ctx) })
	g.Go(func() error { return d.runEngine(ctx) })
	g.Go(func() error { return serve(ctx, lns.api, d.api, d.cfg.Limits) })
	if lns.metrics != nil {
		g.Go(func() error {
			return serve(ctx, lns.metrics, promhttp.HandlerFor(d.metrics, promhttp.HandlerOpts{Registry: d.metrics}), d.cfg.Limits)
		})
	}
	if lns.ui != nil {
		g.Go(func() error { return serve(ctx, lns.ui, d.ui, d.cfg.Limits) })
		d.log.Info("Serving the dashboard for users signed in by an authenticating proxy", "listen", lns.ui.Addr().String())
	}
	if d.cfg.Ready != nil {
		g.Go(func() error {
			if err := d.reg.WaitForSync(ctx); err == nil && d.catalog.WaitForSync(ctx) == nil {
				close(d.cfg.Ready)
			}
			return nil
		})
	}
	d.log.Info("dispatcher running", "listen", lns.api.Addr().String(), "https", d.cfg.TLSCertFile != "", "queue", queueMode(d.cfg.Queue), "auth", d.cfg.Auth)
	return g.Wait()
}

// engineReady is ready once the delivery engine consumes the queue: a replica
// rolled in is counted ready only when it delivers too.
func (d *dispatcher) engineReady(ctx context.Context) error {
	eng := d.eng.Load()
	if eng == nil {
		return errors.New("the delivery engine has not started: it waits for delivery status and the registry to sync")
	}
	return eng.CheckReady(ctx)
}

// runEngine builds the delivery engine once status and the registry are synced,
// runs it until ctx ends, and reports its figures until it has drained.
func (d *dispatcher) runEngine(ctx context.Context) error {
	// The engine starts with the endpoints that status says are disabled, so a
	// restart does not re-enable them.
	if err := d.reporter.WaitForSync(ctx); err != nil {
		return err
	}
	disabled, err := d.reporter.Disabled(ctx)
	if err != nil {
		return fmt.Errorf("reading disabled endpoints: %w", err)
	}
	eng, err := engine.New(engine.Options{
		Queue: d.q, Routes: d.reg, Clock: d.clk, Logger: d.log.WithName("engine"), Metrics: d.metrics, Workers: d.cfg.Workers,
		Observer: d.reporter.Observer(), Disabled: disabled, SuspendedHold: d.cfg.SuspendedHold,
	})
	if err != nil {
		return err
	}
	d.eng.Store(eng)
	// Status is reported until the engine has stopped; a problem with it is logged,
	// never a reason to stop delivering.
	reportCtx, stopReporting := context.WithCancel(ctx)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		if err := d.reporter.Run(reportCtx, eng); err != nil {
			d.log.Error(err, "Delivery status is not reported")
		}
	}()
	err = d.reg.WaitForSync(ctx)
	if err == nil {
		err = eng.Run(ctx)
	}
	stopReporting()
	<-reported
	// The last report, marked final, counts what the engine did while draining.
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if cerr := d.reporter.Close(final); cerr != nil {
		d.log.Error(cerr, "Reporting the last delivery figures")
	}
	return err
}

// leaseNamespace is the namespace of the status writer's Lease: the one given, else the
// pod's own.
func leaseNamespace(given string) string {
	if given != "" {
		return given
	}
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func queueMode(c queue.Config) string {
	if c.Embedded {
		return "embedded:" + c.DataDir
	}
	return "external:" + queue.RedactURL(c.URL)
}

// serve runs an HTTP server on ln until ctx ends, then shuts it down
// gracefully. Every listener has the same limits: timeouts, header size,
// requests in flight and connections per client address.
func serve(ctx context.Context, ln net.Listener, h http.Handler, limits server.Limits) error {
	limits = limits.WithDefaults()
	srv := server.NewHTTPServer(h, limits)
	ln = server.LimitListener(ln, limits.MaxConnsPerClient)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	}
}

// dashboard is the dashboard served behind an authenticating proxy: it acts as each
// request's user, reaching the API server with the user's token and this dispatcher's
// admin API in-process, where the same token is reviewed.
func dashboard(restCfg *rest.Config, cfg Config, api http.Handler, addr net.Addr, log logr.Logger) (http.Handler, error) {
	srv, err := ui.New(addr.String(), ui.Options{
		Proxied: true,
		Kube:    restCfg,
		Dispatcher: &ui.Dispatcher{URL: "http://this-dispatcher",
			HTTP: &http.Client{Transport: ui.InProcess{Handler: api}, Timeout: 30 * time.Second}},
		Namespaces: cfg.Namespaces,
		Log:        log.WithName("ui"),
	})
	if err != nil {
		return nil, fmt.Errorf("--ui-listen: %w", err)
	}
	return srv, nil
}

// authorizer decides who may use the API: Kubernetes RBAC, through TokenReview
// and SubjectAccessReview, or, for local use only, nobody is asked.
func authorizer(restCfg *rest.Config, cfg Config) (server.Authorizer, error) {
	if cfg.Auth == "none" {
		return server.AllowAll{}, nil
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	return server.NewKubernetesAuthorizer(cs, server.KubernetesAuthorizerOptions{
		Audience: cfg.TokenAudience, MaxConcurrentReviews: cfg.MaxConcurrentReviews,
	}), nil
}

// The queue's refusal close to the memory limit is answered as an overload:
// 503 with its own Retry-After.
var _ server.Overloaded = (*queue.MemoryHighError)(nil)

// publisher stores published events in the queue.
type publisher struct {
	q *queue.Queue
	// refused counts the events the queue refused close to the memory limit.
	refused prometheus.Counter
}

func newPublisher(q *queue.Queue, reg prometheus.Registerer) publisher {
	refused := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "hookline_events_refused_total",
		Help:        "Events refused with 503 and nothing stored because the dispatcher's heap was close to its memory limit (GOMEMLIMIT).",
		ConstLabels: prometheus.Labels{"reason": "memory"},
	})
	reg.MustRegister(refused)
	return publisher{q: q, refused: refused}
}

func (p publisher) count(err error, events int) {
	if errors.Is(err, queue.ErrMemoryHigh) {
		p.refused.Add(float64(events))
	}
}

func (p publisher) Publish(ctx context.Context, ev server.Event) (server.PublishResult, error) {
	qev := queueEvent(&ev)
	var end func(error)
	qev.TraceParent, end = tracing.Ingest(ctx, ev.Namespace, ev.ID, ev.Type)
	res, err := p.q.PublishEvent(ctx, qev)
	end(err)
	p.count(err, 1)
	return server.PublishResult{Duplicate: res.Duplicate}, err
}

// queueEvent is the event as the queue stores it, without a trace context yet.
func queueEvent(ev *server.Event) queue.Event {
	return queue.Event{Namespace: ev.Namespace, ID: ev.ID, Type: ev.Type, Time: ev.Time, Data: ev.Data}
}

func (p publisher) PublishBatch(ctx context.Context, evs []server.Event) ([]server.PublishResult, error) {
	qevs := make([]queue.Event, len(evs))
	ends := make([]func(error), len(evs))
	for i := range evs {
		qevs[i] = queueEvent(&evs[i])
		qevs[i].TraceParent, ends[i] = tracing.Ingest(ctx, evs[i].Namespace, evs[i].ID, evs[i].Type)
	}
	res, err := p.q.PublishEvents(ctx, qevs)
	for _, end := range ends {
		end(err)
	}
	p.count(err, len(evs))
	out := make([]server.PublishResult, len(res))
	for i, r := range res {
		out[i] = server.PublishResult{Duplicate: r.Duplicate}
	}
	return out, err
}
