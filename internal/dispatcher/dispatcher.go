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
	Logger       logr.Logger
	Clock        clock.PassiveClock
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

	pool := delivery.NewPool(delivery.PoolOptions{Clock: clk})
	defer pool.CloseIdleConnections()
	reg, err := registry.New(restCfg, registry.Options{
		Namespaces: cfg.Namespaces, Pool: pool, SSRF: policy, Clock: clk, Logger: log.WithName("registry"),
	})
	if err != nil {
		return fmt.Errorf("setting up the registry: %w", err)
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	engine, err := dispatch.New(dispatch.Options{
		Queue: q, Routes: reg, Clock: clk, Logger: log.WithName("engine"), Metrics: metrics, Workers: cfg.Workers,
	})
	if err != nil {
		return err
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
			apiLn.Close()
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
	g.Go(func() error {
		if err := reg.WaitForSync(ctx); err != nil {
			return err
		}
		return engine.Run(ctx)
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
