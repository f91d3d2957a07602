// Package dispatcher assembles the `hookline dispatcher` process: the queue (embedded
// NATS JetStream or an external cluster), the registry of endpoints and subscriptions, the
// delivery engine, the publishing API and the admin API, and runs them until stopped.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/dispatch"
	"github.com/hookline/hookline/internal/ingest"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/ssrf"
	"github.com/hookline/hookline/internal/status"
)

// Config is the dispatcher's configuration, from its flags.
type Config struct {
	Listen        string // publishing and admin API
	MetricsListen string // Prometheus metrics; empty disables
	Queue         queue.Config
	Namespaces    []string
	// Auth is "kubernetes" (TokenReview + SubjectAccessReview) or "none" (local use only).
	Auth         string
	MaxBodyBytes int64
	AllowCIDRs   []string // destinations allowed despite the SSRF guard
	DenyCIDRs    []string // more destinations to refuse (cluster networks)
	Workers      int
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
	return nil
}

// Run runs the dispatcher until ctx ends. cfg connects to the Kubernetes API.
func Run(ctx context.Context, restCfg *rest.Config, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	policy, err := ssrf.ParsePolicy(cfg.AllowCIDRs, cfg.DenyCIDRs)
	if err != nil {
		return fmt.Errorf("--allow-cidr/--deny-cidr: %w", err)
	}

	q, err := queue.Open(ctx, cfg.Queue, log.WithName("queue"))
	if err != nil {
		return fmt.Errorf("opening the queue: %w", err)
	}
	defer q.Close()

	// An endpoint may have up to 1,000 requests in flight (limits.maxInFlight); fewer idle
	// connections than that would make every burst dial (and, over HTTPS, handshake) again.
	pool := delivery.NewPool(delivery.PoolOptions{Clock: clk, MaxIdleConnsPerHost: 1000})
	defer pool.CloseIdleConnections()
	reg, err := registry.New(restCfg, registry.Options{
		Namespaces: cfg.Namespaces, Pool: pool, SSRF: policy, Clock: clk, Logger: log.WithName("registry"),
	})
	if err != nil {
		return fmt.Errorf("setting up the registry: %w", err)
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	statusOpts := status.Options{
		Config: restCfg, Conn: q.Conn(), Replicas: cfg.Queue.Replicas, Backlog: q,
		Namespaces: cfg.Namespaces, WriteInterval: cfg.StatusInterval, Logger: log.WithName("status"),
	}
	if c, ok := clk.(clock.WithTicker); ok {
		statusOpts.Clock = c
	}
	if ns := leaseNamespace(cfg.LeaseNamespace); ns != "" {
		statusOpts.Lease = &status.Lease{Namespace: ns}
	} else {
		log.Info("Not running in a pod and no lease namespace given: this process writes status without a Lease; run only one dispatcher like this")
	}
	reporter, err := status.New(statusOpts)
	if err != nil {
		return fmt.Errorf("setting up status reporting: %w", err)
	}

	authz, adminAuthz, err := authorizers(restCfg, cfg.Auth)
	if err != nil {
		return err
	}
	api, err := ingest.NewHandler(ingest.Options{
		Publisher:    publisher{q},
		Authorizer:   authz,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Namespaces:   cfg.Namespaces,
		ReadyChecks: []ingest.Check{
			{Name: "registry", Ready: reg.CheckReady},
		},
		Clock:  clk,
		Logger: log.WithName("api"),
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/namespaces/{ns}/subscriptions/", dispatch.NewAdminHandler(q, adminAuthz))
	mux.Handle("/", api)

	apiLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen=%s: %w", cfg.Listen, err)
	}
	var metricsLn net.Listener
	if cfg.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			_ = apiLn.Close()
			return fmt.Errorf("--metrics-listen=%s: %w", cfg.MetricsListen, err)
		}
	}
	if cfg.Listening != nil {
		var m net.Addr
		if metricsLn != nil {
			m = metricsLn.Addr()
		}
		cfg.Listening(apiLn.Addr(), m)
	}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reg.Start(ctx) })
	g.Go(func() error { return reporter.Start(ctx) })
	g.Go(func() error {
		// The engine starts with the endpoints that status says are disabled, so a
		// restart does not re-enable them.
		if err := reporter.WaitForSync(ctx); err != nil {
			return err
		}
		disabled, err := reporter.Disabled(ctx)
		if err != nil {
			return fmt.Errorf("reading disabled endpoints: %w", err)
		}
		engine, err := dispatch.New(dispatch.Options{
			Queue: q, Routes: reg, Clock: clk, Logger: log.WithName("engine"), Metrics: metrics, Workers: cfg.Workers,
			Observer: reporter.Observer(), Disabled: disabled,
		})
		if err != nil {
			return err
		}
		// Status is reported until the engine has stopped; a problem with it is logged,
		// never a reason to stop delivering.
		reportCtx, stopReporting := context.WithCancel(ctx)
		reported := make(chan struct{})
		go func() {
			defer close(reported)
			if err := reporter.Run(reportCtx, engine); err != nil {
				log.Error(err, "Delivery status is not reported")
			}
		}()
		err = reg.WaitForSync(ctx)
		if err == nil {
			err = engine.Run(ctx)
		}
		stopReporting()
		<-reported
		// The last report, marked final, counts what the engine did while draining.
		final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := reporter.Close(final); cerr != nil {
			log.Error(cerr, "Reporting the last delivery figures")
		}
		return err
	})
	g.Go(func() error { return serve(ctx, apiLn, mux) })
	if metricsLn != nil {
		g.Go(func() error {
			return serve(ctx, metricsLn, promhttp.HandlerFor(metrics, promhttp.HandlerOpts{Registry: metrics}))
		})
	}
	if cfg.Ready != nil {
		g.Go(func() error {
			if err := reg.WaitForSync(ctx); err == nil {
				close(cfg.Ready)
			}
			return nil
		})
	}
	log.Info("dispatcher running", "listen", apiLn.Addr().String(), "queue", queueMode(cfg.Queue), "auth", cfg.Auth)
	return g.Wait()
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
	return "external:" + c.URL
}

// serve runs an HTTP server on ln until ctx ends, then shuts it down gracefully.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	}
}

func authorizers(restCfg *rest.Config, mode string) (ingest.Authorizer, dispatch.Authorizer, error) {
	if mode == "none" {
		return ingest.AllowAll{}, func(*http.Request, string, string) error { return nil }, nil
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, err
	}
	k := ingest.NewKubernetesAuthorizer(cs, ingest.KubernetesAuthorizerOptions{})
	// Reading a subscription's attempt log or replaying its dead deliveries takes the same
	// right as publishing to its namespace.
	admin := func(r *http.Request, ns, _ string) error {
		d, err := k.Authorize(r.Context(), r, ns)
		switch {
		case err != nil:
			return err
		case !d.Authenticated:
			return fmt.Errorf("%w: %s", dispatch.ErrUnauthenticated, d.Reason)
		case !d.Allowed:
			return errors.New(d.Reason)
		}
		return nil
	}
	return k, admin, nil
}

// publisher stores published events in the queue.
type publisher struct{ q *queue.Queue }

func (p publisher) Publish(ctx context.Context, ev ingest.Event) (ingest.PublishResult, error) {
	res, err := p.q.PublishEvent(ctx, queue.Event(ev))
	return ingest.PublishResult{Duplicate: res.Duplicate}, err
}

func (p publisher) PublishBatch(ctx context.Context, evs []ingest.Event) ([]ingest.PublishResult, error) {
	qevs := make([]queue.Event, len(evs))
	for i, ev := range evs {
		qevs[i] = queue.Event(ev)
	}
	res, err := p.q.PublishEvents(ctx, qevs)
	out := make([]ingest.PublishResult, len(res))
	for i, r := range res {
		out[i] = ingest.PublishResult{Duplicate: r.Duplicate}
	}
	return out, err
}
