package status

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
)

// Options configure a Reporter. Config and Conn are required; zero values of
// the rest take the defaults.
type Options struct {
	// Config reaches the API server.
	Config *rest.Config
	// Conn is the queue's NATS connection (queue.Queue.Conn).
	Conn *nats.Conn
	// Replicas of the bucket on an external cluster, like the queue's streams.
	Replicas int
	// Backlog counts the deliveries waiting in the queue (*queue.Queue); nil
	// reports no backlog.
	Backlog Backlogger
	// Namespaces restricts the reporter to these namespaces; empty: all.
	Namespaces []string
	// Lease elects the one process that writes status. nil: this process
	// writes, which is right only for a single dispatcher.
	Lease *Lease

	// ReportEvery is how often this process reports its figures and, when
	// it holds the lease, how often the reports are merged.
	ReportEvery time.Duration
	// WriteInterval is the least time between two status writes of one
	// object.
	WriteInterval time.Duration
	// GoneAfter is how long a process may go without reporting before its
	// figures are folded into the base.
	GoneAfter time.Duration
	// EventWindow is the least time between two Events of the same reason
	// about the same object; what happens in between is summed up.
	EventWindow time.Duration

	// Instance names this process in Events; default the host name.
	Instance string
	// Events stores Events; default the events.k8s.io API through Config.
	Events EventSink
	Clock  clock.WithTicker
	Logger logr.Logger
	// Metrics registers the status writer's metrics (hookline_status_writes_total,
	// hookline_endpoint_backlog); nil keeps them unexported.
	Metrics prometheus.Registerer
}

// Defaults of Options.
const (
	DefaultReportEvery   = 2 * time.Second
	DefaultWriteInterval = 10 * time.Second
	DefaultGoneAfter     = time.Minute
	DefaultEventWindow   = time.Minute
)

// Reporter reports this process's delivery figures, follows the endpoints'
// status and enable annotation, records Events, and, while it holds the
// lease, writes status. See the package documentation.
type Reporter struct {
	opts    Options
	objs    *objects
	client  client.Client
	cs      kubernetes.Interface
	events  *events
	metrics *metrics
	sync    *syncer
	log     logr.Logger

	startOnce sync.Once
	disabled  []engine.DisabledEndpoint

	mu     sync.Mutex
	engine Engine
	pub    *publisher

	// afterTick, in tests, runs after each round of the status writer.
	afterTick func()
}

// New builds a reporter. Start runs its cache; Run, once the engine exists,
// does the rest.
func New(opts Options) (*Reporter, error) {
	if opts.Config == nil || opts.Conn == nil {
		return nil, errors.New("status: Config and Conn are required")
	}
	setDefault(&opts.ReportEvery, DefaultReportEvery)
	setDefault(&opts.WriteInterval, DefaultWriteInterval)
	setDefault(&opts.GoneAfter, DefaultGoneAfter)
	setDefault(&opts.EventWindow, DefaultEventWindow)
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Instance == "" {
		opts.Instance, _ = os.Hostname()
		if opts.Instance == "" {
			opts.Instance = "dispatcher"
		}
	}
	objs, err := newObjects(opts.Config, opts.Namespaces)
	if err != nil {
		return nil, err
	}
	// A client of its own, so status writes have their own rate limit and
	// never wait behind the registry's reads.
	cfg := rest.CopyConfig(opts.Config)
	scheme := runtime.NewScheme()
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the status client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the status client: %w", err)
	}
	if opts.Events == nil {
		opts.Events = ClientSink{Client: cs}
	}
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	ev := newEvents(opts.Events, opts.Clock, opts.EventWindow, opts.Instance, log.WithName("events"))
	ev.uid = func(kind objKind, ns, name string) string { return objs.uid(context.Background(), kind, ns, name) }
	return &Reporter{
		opts: opts, objs: objs, client: c, cs: cs, events: ev, metrics: m,
		sync: newSyncer(ev, log), log: log,
	}, nil
}

// Start runs the reporter's view of endpoints and subscriptions until ctx
// ends.
func (r *Reporter) Start(ctx context.Context) error {
	return r.objs.cache.Start(ctx)
}

// WaitForSync returns once the view holds every object the API had at start.
func (r *Reporter) WaitForSync(ctx context.Context) error {
	if !r.objs.cache.WaitForCacheSync(ctx) {
		return fmt.Errorf("waiting for the status cache to sync: %w", context.Cause(ctx))
	}
	return nil
}

// Disabled returns the endpoints whose status says they are disabled, for
// engine.Options.Disabled, so a restart does not re-enable them. Call it
// after WaitForSync.
func (r *Reporter) Disabled(ctx context.Context) ([]engine.DisabledEndpoint, error) {
	var err error
	r.startOnce.Do(func() {
		var eps []hooklinev1.WebhookEndpoint
		if eps, err = r.objs.endpoints(ctx); err == nil {
			r.disabled = r.sync.start(eps)
		}
	})
	return r.disabled, err
}

// Observer turns the engine's signals into Events: pass it as
// engine.Options.Observer.
func (r *Reporter) Observer() engine.Observer { return r.events }

// Run reports, follows status and records Events until ctx ends; while this
// process holds the lease it also writes status. Call it after WaitForSync.
// It fails only if it cannot start; trouble with NATS or the API later is
// logged and retried.
func (r *Reporter) Run(ctx context.Context, eng Engine) error {
	r.mu.Lock()
	r.engine, r.sync.engine = eng, eng
	r.mu.Unlock()

	inf, err := r.objs.cache.GetInformer(ctx, &hooklinev1.WebhookEndpoint{})
	if err != nil {
		return fmt.Errorf("watching endpoints for status: %w", err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.observe(obj) },
		UpdateFunc: func(_, obj any) { r.observe(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if ep, ok := obj.(*hooklinev1.WebhookEndpoint); ok {
				r.sync.forget(ep.Namespace, ep.Name)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watching endpoints for status: %w", err)
	}
	defer func() { _ = inf.RemoveEventHandler(reg) }()

	var wg sync.WaitGroup
	defer wg.Wait()
	flush := r.opts.Clock.NewTicker(max(r.opts.EventWindow/4, time.Second))
	defer flush.Stop()
	wg.Go(func() { r.events.run(ctx, flush.C()) })

	st, err := r.openStore(ctx)
	if err != nil {
		return nil // ctx ended
	}
	wg.Go(func() { r.writeStatus(ctx, st, eng.Snapshot().Process) })

	t := r.opts.Clock.NewTicker(r.opts.ReportEvery)
	defer t.Stop()
	failing := retries{log: r.log, what: "Reporting delivery figures"}
	for {
		failing.note(ctx, r.publish(ctx, false))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

func (r *Reporter) observe(obj any) {
	if ep, ok := obj.(*hooklinev1.WebhookEndpoint); ok {
		r.sync.observe(ep)
	}
}

// openStore opens the bucket, retrying until ctx ends.
func (r *Reporter) openStore(ctx context.Context) (*store, error) {
	for {
		st, err := openStore(ctx, r.opts.Conn, r.opts.Replicas)
		if err == nil {
			r.mu.Lock()
			r.pub = &publisher{st: st}
			r.mu.Unlock()
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.log.Error(err, "Opening the delivery figures bucket; retrying")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.opts.Clock.After(r.opts.ReportEvery):
		}
	}
}

func (r *Reporter) publish(ctx context.Context, final bool) error {
	r.mu.Lock()
	pub, eng := r.pub, r.engine
	r.mu.Unlock()
	if pub == nil || eng == nil {
		return nil
	}
	applied := r.sync.appliedValues()
	return pub.publish(ctx, eng.Snapshot(), applied, final)
}

// Close reports this process's last figures, marked final so they are folded
// at once. Call it after the engine has stopped, so they are complete.
func (r *Reporter) Close(ctx context.Context) error {
	return r.publish(ctx, true)
}

// writeStatus writes status while this process holds the lease, or always
// without one.
func (r *Reporter) writeStatus(ctx context.Context, st *store, id string) {
	lead := func(ctx context.Context) { r.lead(ctx, st) }
	if r.opts.Lease == nil {
		lead(ctx)
		return
	}
	if err := elect(ctx, r.cs, *r.opts.Lease, id, r.log, lead); err != nil {
		r.log.Error(err, "Electing the status writer; this process will not write status")
	}
}

// lead is one term as the status writer.
func (r *Reporter) lead(ctx context.Context, st *store) {
	w := &writer{
		st: st, objs: r.objs, c: r.client, backlog: r.opts.Backlog, events: r.events, metrics: r.metrics,
		clock: r.opts.Clock, log: r.log.WithName("writer"),
		interval: r.opts.WriteInterval, goneAfter: r.opts.GoneAfter, present: 3 * r.opts.ReportEvery,
		reports: map[string]entry{}, lastWrite: map[objRef]time.Time{},
	}
	t := r.opts.Clock.NewTicker(r.opts.ReportEvery)
	defer t.Stop()
	failing := retries{log: w.log, what: "Writing delivery status"}
	for {
		failing.note(ctx, w.tick(ctx))
		if r.afterTick != nil {
			r.afterTick()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// retries logs a task retried every round: the first failure and every
// hundredth as errors, the others at V(1), and the recovery.
type retries struct {
	log  logr.Logger
	what string
	n    int
}

func (f *retries) note(ctx context.Context, err error) {
	switch {
	case ctx.Err() != nil:
	case err == nil && f.n > 0:
		f.log.Info(f.what+" works again", "failedRounds", f.n)
		f.n = 0
	case err == nil:
	case f.n%100 == 0:
		f.n++
		f.log.Error(err, f.what+" failed; retrying every round", "failedRounds", f.n)
	default:
		f.n++
		f.log.V(1).Info(f.what+" failed again", "error", err.Error(), "failedRounds", f.n)
	}
}
