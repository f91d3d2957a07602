package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
)

// Routes is what the engine needs from the registry: *registry.Registry
// satisfies it. If it also has WaitForSync, Run waits for it first, because
// a delivery whose subscription the routes do not know is dropped (after
// Options.UnknownSubscriptionGrace, or at once if the routes have a
// Gone(types.UID) bool that says they saw it deleted).
type Routes interface {
	Matching(ns, eventType string) []*registry.Subscription
	Subscription(ns, name string) *registry.Subscription
	Endpoint(ns, name string) *registry.Endpoint
}

// DisabledEndpoint is an endpoint that was disabled before this process
// started; the operator keeps the set in the endpoints' status.
type DisabledEndpoint struct {
	Namespace string
	Name      string
	// UID, when set, limits the disable to that object: an endpoint deleted
	// and created again under the same name starts enabled.
	UID    types.UID
	Since  time.Time
	Reason string
}

// Options configure an Engine. Queue and Routes are required; zero values
// of the rest take the defaults.
type Options struct {
	Queue  *queue.Queue
	Routes Routes
	// Clock drives the engine's decisions: circuit cool-downs, the
	// auto-disable clock, retry and hold times, the times in stats. Retry and
	// hold times are handed to JetStream, which fires them on wall time, so
	// outside unit tests it must be a real clock.
	Clock    clock.PassiveClock
	Logger   logr.Logger
	Metrics  prometheus.Registerer
	Observer Observer

	// Workers take deliveries off the shared consumer. Sends run on
	// per-endpoint goroutines; a worker only waits to put a delivery back
	// (a publish) or, briefly, for room at a fast endpoint, so a few dozen
	// are plenty.
	Workers int
	// ProcessID tags this process's Snapshots; default the host name (the
	// pod name) and a random suffix.
	ProcessID string
	// Disabled are the endpoints disabled at start.
	Disabled []DisabledEndpoint
	Breaker  BreakerConfig

	// MaxPending bounds the unordered deliveries this process holds in
	// memory or in flight across all endpoints. Keep it well below the
	// queue's MaxAckPending divided by the number of replicas: past that,
	// the shared consumer stops handing out deliveries, to every endpoint.
	MaxPending int
	// BusyWait is how long a worker of the shared consumer may wait for
	// room in a healthy, fast endpoint's full queue before holding the
	// delivery (see enqueue).
	BusyWait time.Duration
	// BusyHold is the least a delivery to an endpoint whose in-memory queue
	// is full is put back for; the holds are then spaced at the pace the
	// endpoint takes deliveries, up to MaxBusyHold ahead.
	BusyHold    time.Duration
	MaxBusyHold time.Duration
	// SuspendedHold is how long deliveries of a suspended subscription, and
	// ordered deliveries to a suspended, not ready or missing endpoint, are
	// put back for; DisabledHold the same for ordered deliveries to a
	// disabled endpoint. Each hold is stretched by up to as much again at
	// random so a backlog does not come back all at once. Unordered
	// deliveries to such endpoints are parked instead (see unpark.go) and
	// come back when the endpoint is usable again.
	SuspendedHold time.Duration
	DisabledHold  time.Duration
	// UnparkCheck is how often the engine looks for parked deliveries of
	// endpoints that are usable, for the changes it does not see happen: a
	// restart, another replica's parking, an endpoint unsuspended or become
	// ready while nothing arrives for it.
	UnparkCheck time.Duration
	// LeaseRenewal is how long a delivery may wait in this process (for a
	// free slot or the rate limit) before its queue lease is extended. It
	// must be shorter than the queue's AckWait minus the longest timeout.
	LeaseRenewal time.Duration
	// DrainTimeout bounds how long Run lets sends in flight finish after its
	// context ends; then they are cancelled and put back.
	DrainTimeout time.Duration
	// SweepEvery is how often the engine drops what it and the queue keep
	// about deleted subscriptions and endpoints (sweep.go).
	SweepEvery time.Duration
	// UnknownSubscriptionGrace is how long after it was first handed out a
	// delivery whose subscription this process does not know is kept (held,
	// retried at growing intervals) before it is dropped, unless the routes
	// saw that subscription deleted. Another replica fanned it out because
	// its watch showed the subscription; this one's may lag behind.
	UnknownSubscriptionGrace time.Duration
}

// Defaults of Options.
const (
	DefaultMaxPending    = 4096
	DefaultBusyWait      = 500 * time.Millisecond
	DefaultBusyHold      = 2 * time.Second
	DefaultMaxBusyHold   = time.Minute
	DefaultSuspendedHold = time.Minute
	DefaultDisabledHold  = 5 * time.Minute
	DefaultUnparkCheck   = 10 * time.Second
	DefaultLeaseRenewal  = 10 * time.Second
	DefaultDrainTimeout  = 20 * time.Second
	DefaultSweepEvery    = time.Minute
	// DefaultUnknownSubscriptionGrace is far longer than a watch normally
	// lags (well under a second) and short next to a retry schedule.
	DefaultUnknownSubscriptionGrace = 30 * time.Second
)

// Engine delivers what the queue holds: it fans events out to subscriptions
// and sends each delivery to its endpoint, with per-endpoint limits, a
// circuit breaker per endpoint and auto-disable.
type Engine struct {
	opts    Options
	q       *queue.Queue
	routes  Routes
	clock   clock.PassiveClock
	log     logr.Logger
	obs     Observer
	m       *metrics
	process string
	started time.Time

	endpoints sync.Map // objKey → *endpointState
	subs      sync.Map // objKey → *subState
	lanes     sync.Map // objKey → laneSet: ordered lanes ensured by this process
	ensuring  sync.Map // objKey → struct{}: lanes ensureLaneLater is retrying
	// unknownSince: subscription UID → when this process was first handed a
	// delivery of it without knowing it (handler.go).
	unknownSince sync.Map
	// relocating holds the queue.ParkedKeys whose backlog this process is
	// moving to the subscription's current endpoint.
	relocating sync.Map
	// pending counts unordered deliveries taken off the shared consumer and
	// not yet resolved.
	pending atomic.Int64
	// sharePace is the mean pace of the healthy endpoints that had
	// unordered deliveries pending, as keepLeases last measured it on a
	// tick that found any (fairWaitPace); 0 until then.
	sharePace atomic.Int64
	// measure asks keepLeases to measure sharePace now (fairWaitPace,
	// before the first tick has).
	measure chan struct{}
	// deliveries is the shared consumer Run opened, which tells the
	// fan-out which endpoints this replica owns (parkAtFanout); nil before.
	deliveries atomic.Pointer[queue.Deliveries]

	running atomic.Bool
	// consuming: the fan-out and delivery consumers are open (CheckReady).
	consuming atomic.Bool
	// Set by Run before any delivery is handled. stop ends with Run's
	// context; sendCtx only after DrainTimeout more.
	stop    context.Context
	sendCtx context.Context
	sends   sync.WaitGroup
	// senders runs the unordered sends (senders.go).
	senders senders

	// life runs the goroutines that park and unpark (unpark.go): ctx is
	// Run's while it runs, nil otherwise, and Run waits for wg.
	life struct {
		mu  sync.Mutex
		ctx context.Context
		wg  sync.WaitGroup
	}
	// unparkSlots bounds the endpoints this process unparks at once.
	unparkSlots chan struct{}
}

type objKey struct{ ns, name string }

// New builds an engine; Run starts it.
func New(opts Options) (*Engine, error) {
	if opts.Queue == nil || opts.Routes == nil {
		return nil, errors.New("dispatch: Queue and Routes are required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Workers <= 0 {
		opts.Workers = max(32, 8*runtime.GOMAXPROCS(0))
	}
	if opts.ProcessID == "" {
		opts.ProcessID = processID()
	}
	opts.Breaker = opts.Breaker.withDefaults()
	setDefault(&opts.BusyWait, DefaultBusyWait)
	setDefault(&opts.BusyHold, DefaultBusyHold)
	setDefault(&opts.MaxBusyHold, max(DefaultMaxBusyHold, opts.BusyHold))
	setDefault(&opts.SuspendedHold, DefaultSuspendedHold)
	setDefault(&opts.DisabledHold, DefaultDisabledHold)
	setDefault(&opts.UnparkCheck, DefaultUnparkCheck)
	setDefault(&opts.LeaseRenewal, DefaultLeaseRenewal)
	setDefault(&opts.DrainTimeout, DefaultDrainTimeout)
	setDefault(&opts.SweepEvery, DefaultSweepEvery)
	setDefault(&opts.UnknownSubscriptionGrace, DefaultUnknownSubscriptionGrace)
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		measure: make(chan struct{}, 1),
		opts:    opts,
		q:       opts.Queue,
		routes:  opts.Routes,
		clock:   opts.Clock,
		log:     opts.Logger,
		obs:     opts.Observer,
		m:       m,
		process: opts.ProcessID,
		started: opts.Clock.Now(),

		unparkSlots: make(chan struct{}, maxUnparks),
	}
	e.senders = senders{send: func(w sendWork) { e.send(w.st, w.t) }, done: e.sends.Done, idleWait: senderIdle}
	for _, d := range opts.Disabled {
		st := e.endpoint(d.Namespace, d.Name)
		st.mu.Lock()
		st.disabled = &disabledInfo{since: d.Since, reason: d.Reason, uid: d.UID}
		st.mu.Unlock()
		st.disabledGauge.Set(1)
	}
	return e, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func processID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "dispatcher"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Run fans events out and delivers until ctx ends. Then it stops taking
// deliveries, puts back those waiting in memory, lets sends in flight finish
// for up to DrainTimeout, cancels the rest and puts them back, and returns.
// It returns early with an error if the queue cannot be consumed.
// CheckReady reports whether Run has opened the queue's consumers and not
// stopped: before that, events are accepted but nothing is delivered here.
func (e *Engine) CheckReady(context.Context) error {
	if !e.consuming.Load() {
		return errors.New("the delivery engine has not opened its queue consumers yet, or has stopped")
	}
	return nil
}

func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("dispatch: the engine is already running")
	}
	if w, ok := e.routes.(interface{ WaitForSync(context.Context) error }); ok {
		if err := w.WaitForSync(ctx); err != nil {
			return err
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	fanout, err := e.q.OpenFanout(runCtx)
	if err != nil {
		return stopped(ctx, fmt.Errorf("fanning out events: %w", err))
	}
	deliveries, err := e.q.OpenDeliveries(runCtx, min(max(4*e.opts.Workers, 256), 1024))
	if err != nil {
		return stopped(ctx, fmt.Errorf("running deliveries: %w", err))
	}
	e.deliveries.Store(deliveries)
	e.consuming.Store(true)
	defer e.consuming.Store(false)
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	e.stop, e.sendCtx = runCtx, sendCtx
	e.life.mu.Lock()
	e.life.ctx = runCtx
	e.life.mu.Unlock()

	drain := context.AfterFunc(runCtx, func() {
		t := time.AfterFunc(e.opts.DrainTimeout, cancelSends)
		context.AfterFunc(sendCtx, func() { t.Stop() })
	})
	defer drain()

	var consumers sync.WaitGroup
	consumers.Go(func() { e.fanOut(runCtx, fanout) })
	consumers.Go(func() { e.deliver(runCtx, deliveries) })
	go e.sweep(runCtx)
	go e.keepLeases(runCtx)
	go e.watchParked(runCtx, deliveries)

	consumers.Wait()
	// Ordered sends are done (their lanes stopped with the consumers); the
	// unordered ones finish or are cancelled after DrainTimeout.
	e.sends.Wait()
	e.senders.close()
	// Every delivery taken is resolved or put back: hand this replica's
	// endpoints to the others now rather than after the queue's PinnedTTL.
	e.handOver(ctx, deliveries)
	// Unparking stops between batches.
	cancel()
	e.life.mu.Lock()
	e.life.ctx = nil
	e.life.mu.Unlock()
	e.life.wg.Wait()
	return nil
}

// handOver unpins the delivery partitions this replica owns (queue.Deliveries.Release).
func (e *Engine) handOver(ctx context.Context, d *queue.Deliveries) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := d.Release(rctx); err != nil {
		e.log.Info("Could not hand this replica's endpoints over; other replicas take them after the queue's pinned TTL",
			"pinnedTTL", queue.PinnedTTL, "error", err.Error())
	}
}

// stopped is nil when ctx ended, since err is then only the cancellation's
// echo.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// keepLeases extends the leases of deliveries waiting in endpoint queues,
// trims queues of endpoints that slowed down, and takes probes of open
// circuits from the parked deliveries.
func (e *Engine) keepLeases(ctx context.Context) {
	t := time.NewTicker(min(time.Second, e.opts.LeaseRenewal/2))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.measure:
			if e.sharePace.Load() == 0 {
				e.measureShare()
			}
			continue
		case <-t.C:
		}
		now := e.clock.Now()
		var mean meanPace
		e.endpoints.Range(func(_, v any) bool {
			st := v.(*endpointState)
			e.maintain(st, now, &mean)
			e.probeParked(st, now)
			return true
		})
		mean.store(e)
	}
}
