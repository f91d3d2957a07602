package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// bench holds what every phase shares: the receivers, the control plane, the payload.
type bench struct {
	cfg     config
	bin     string
	machine machine
	k       *cluster
	payload payload
	sink    *sink
	sinkSrv *server
	hang    *hanger
	hangSrv *server
	parked  *parkedResult // the parked pass, when it ran
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// run is one dispatcher process and the namespace it is measured in.
type run struct {
	durability string
	ns         string
	healthy    string // the healthy endpoint's path on the sink
	d          *dispatcherProc
	pub        *publisher
}

// phaseNote records the machine's state after a phase, for the details.
type phaseNote struct {
	Name string
	Took time.Duration
	Load string
	HWM  int64
	CPU  cpuShare
	// Conns is how many connections were opened to the healthy receiver.
	Conns int64
}

// runResult is everything measured on one dispatcher process.
type runResult struct {
	Durability  string
	Baseline    *baselineResult
	Throughput  *throughputResult
	Single      *throughputResult // single events, closed loop, one endpoint
	Fan10       *throughputResult // single events, closed loop, ten endpoints
	Floor       []*floorPass      // the storage layout without the dispatcher
	Latency     *latencyResult
	Isolation   *latencyResult
	Control     *latencyResult // the isolation phase with a second endpoint that answers
	Fanout      *fanoutResult
	PeakRSS     int64
	Phases      []phaseNote
	Counters    []string
	Lost, Dups  int
	DupSamples  []string
	Verified    int
	BadSig      int
	SigErr      string
	PublishErrs []string
	LoadEnd     string
	Err         error
}

// runDispatcher starts a dispatcher with a fresh data directory on a fresh namespace
// and runs the selected phases on it: throughput, single and latency always; fan-out-10,
// isolation and fan-out when full.
func (b *bench) runDispatcher(ctx context.Context, durability string, full bool) *runResult {
	res := &runResult{Durability: durability}
	res.Err = b.measure(ctx, durability, full, res)
	res.LoadEnd = loadAvg()
	if res.Err != nil {
		b.logf("durability=%s: %v", durability, res.Err)
	}
	return res
}

func (b *bench) measure(ctx context.Context, durability string, full bool, res *runResult) (err error) {
	ns, err := b.k.namespace(ctx, "bench-"+durability+"-")
	if err != nil {
		return err
	}
	r := &run{durability: durability, ns: ns, healthy: "/" + ns + "/healthy"}
	secret, err := b.k.createEndpoint(ctx, ns, endpointSpec{name: "healthy", url: b.sinkSrv.url(r.healthy), maxInFlight: int32(b.cfg.maxInFlight)})
	if err != nil {
		return err
	}
	b.sink.addRoute(r.healthy, secret)
	if err := b.k.createSubscription(ctx, subscription(ns, "healthy", "healthy", []string{"bench.probe", "bench.throughput", "bench.single", "bench.latency"}, "")); err != nil {
		return err
	}

	dir := filepath.Join(b.cfg.workDir, durability)
	b.logf("durability=%s: starting %s dispatcher (data and log in %s)", durability, b.bin, dir)
	if r.d, err = startDispatcher(ctx, b.bin, b.k.env.Kubeconfig, durability, dir, b.cfg.profileDir != ""); err != nil {
		return err
	}
	defer func() {
		if stopErr := r.d.stop(45 * time.Second); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	defer b.collect(r, res) // runs before the stop above
	if err := r.d.waitReady(ctx, b.cfg.setupTimeout); err != nil {
		return err
	}
	r.pub = newPublisher(r.d.api)
	defer r.pub.close()
	if err := b.waitRoute(ctx, r); err != nil {
		return err
	}

	return b.phases(ctx, r, res, full)
}

// phases runs the baseline and then the phases of one run that the flags ask for.
func (b *bench) phases(ctx context.Context, r *run, res *runResult, full bool) error {
	phase := func(name string, f func() error) error { return b.phase(ctx, r, res, name, f) }
	if err := phase("baseline", func() error {
		base, err := b.baseline(ctx, r, "base")
		res.Baseline = base
		if base != nil {
			b.logf("  %.0f req/s", base.Rate)
		}
		return err
	}); err != nil {
		return err
	}
	want := func(name string) bool {
		return b.cfg.phases[name] && (full || name == phaseThroughput || name == phaseSingle || name == phaseLatency)
	}
	if want(phaseThroughput) {
		t, err := b.throughputPhase(ctx, r, res, "throughput", "basetp", 1, func() *throughputResult { return b.throughput(ctx, r) })
		res.Throughput = t
		if err != nil {
			return err
		}
	}
	if want(phaseSingle) {
		n := b.cfg.singleEvents
		if r.durability == "always" && b.cfg.alwaysEvents > 0 {
			n = min(n, b.cfg.alwaysEvents)
		}
		t, err := b.throughputPhase(ctx, r, res, "single", "basesg", 1, func() *throughputResult {
			return b.singles(ctx, r, "one", "bench.single", r.healthy, n, b.cfg.singlePublishers, 1)
		})
		res.Single = t
		if err != nil {
			return err
		}
	}
	if want(phaseFan10) {
		const eventType = "bench.fan10"
		if err := b.setupFan10(ctx, r, eventType); err != nil {
			return err
		}
		t, err := b.throughputPhase(ctx, r, res, "fanout10", "basefo", fan10Endpoints, func() *throughputResult {
			return b.singles(ctx, r, "ten", eventType, fan10Path(r.ns), b.cfg.fan10Events, b.cfg.singlePublishers, fan10Endpoints)
		})
		res.Fan10 = t
		if err != nil {
			return err
		}
	}
	if want(phaseFloor) {
		if err := phase(phaseFloor, func() error {
			f, err := b.floor(ctx, r)
			res.Floor = f
			return err
		}); err != nil {
			return err
		}
	}
	if want(phaseLatency) {
		if err := phase("latency", func() error {
			l := b.latency(ctx, r, "lat")
			res.Latency = l
			res.Lost += l.Lost
			b.logf("  p50 %s p99 %s max %s", ms(l.P50), ms(l.P99), ms(l.Max))
			return publishErr(res, l.PublishErr)
		}); err != nil {
			return err
		}
	}
	if want(phaseIsolation) {
		var err error
		if res.Control, err = b.secondEndpointPhase(ctx, r, res, "control", answeringEndpoint, "ctl", "a second endpoint that answers"); err != nil {
			return err
		}
		if res.Isolation, err = b.secondEndpointPhase(ctx, r, res, "isolation", hangingEndpoint, "iso", "the hanging endpoint"); err != nil {
			return err
		}
	}
	if want(phaseFanout) {
		if err := phase("fan-out", func() error {
			f, err := b.fanout(ctx, r)
			if f != nil {
				res.Fanout = f
				res.Lost += f.Lost
				b.logf("  %d subscriptions: %v", f.Subs, f.Rounds)
			}
			return err
		}); err != nil {
			return err
		}
	}

	return nil
}

// throughputPhase measures the baseline again (events and route group, no
// '-'), as a phase of its own so its cores are listed, and then runs throughput
// phase name, whose ratios are taken against that baseline: the machine's load
// moves during a run, and the baseline just before a phase shares its load
// best. perEvent is how many deliveries each published event makes.
func (b *bench) throughputPhase(ctx context.Context, r *run, res *runResult, name, group string, perEvent int, measure func() *throughputResult) (*throughputResult, error) {
	var base *baselineResult
	if err := b.phase(ctx, r, res, "base-"+name, func() error {
		var err error
		base, err = b.baseline(ctx, r, group)
		if base != nil {
			b.logf("  %.0f req/s", base.Rate)
		}
		return err
	}); err != nil {
		return nil, err
	}
	var t *throughputResult
	err := b.phase(ctx, r, res, name, func() error {
		t = measure()
		t.Baseline = base
		res.Lost += t.Lost
		b.logf("  %d/%d delivered, %.0f/s", t.Delivered, t.Published*perEvent, t.Rate)
		return publishErr(res, t.PublishErr)
	})
	return t, err
}

// secondEndpointPhase runs phase name: the latency phase with endpoint (on the
// hanger's server, described by what) subscribed beside the healthy one.
func (b *bench) secondEndpointPhase(ctx context.Context, r *run, res *runResult, name, endpoint, group, what string) (*latencyResult, error) {
	var l *latencyResult
	err := b.phase(ctx, r, res, name, func() error {
		var err error
		l, err = b.secondEndpoint(ctx, r, endpoint, group)
		if l != nil {
			res.Lost += l.Lost
			b.logf("  healthy p99 %s with %s (%d requests to it)", ms(l.P99), what, l.HangRequests)
			if err == nil {
				err = publishErr(res, l.PublishErr)
			}
		}
		return err
	})
	return l, err
}

// collect reads what the receivers saw and how large the dispatcher grew, before it
// is stopped, also after a failed phase.
func (b *bench) collect(r *run, res *runResult) {
	var err error
	if res.PeakRSS, err = r.d.peakMemory(); err != nil {
		b.logf("reading the dispatcher's memory: %v", err)
	}
	if res.Counters, err = r.d.scrapeMetrics(); err != nil {
		b.logf("scraping the dispatcher's metrics: %v", err)
	}
	for _, path := range []string{r.healthy, "/" + r.ns + "/fanout", fan10Path(r.ns)} {
		s := b.sink.route(path)
		res.Dups += s.Dups
		res.DupSamples = append(res.DupSamples, s.DupSamples...)
		res.Verified += s.Verified
		res.BadSig += s.BadSig
		if s.SigErr != "" {
			res.SigErr = s.SigErr
		}
	}
}

func publishErr(res *runResult, msg string) error {
	if msg != "" {
		res.PublishErrs = append(res.PublishErrs, msg)
	}
	return nil
}

// waitRoute publishes probes until one reaches the healthy endpoint: then the
// dispatcher's view has the endpoint, its key and the subscription, and a measured
// event cannot be dropped for want of a match.
func (b *bench) waitRoute(ctx context.Context, r *run) error {
	deadline := time.Now().Add(b.cfg.setupTimeout)
	var buf []byte
	for k := 0; ; k++ {
		if b.sink.group(r.healthy, "probe").Count > 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no probe reached the healthy endpoint within %s; dispatcher log:\n%s", b.cfg.setupTimeout, r.d.logTail(20))
		}
		if err := r.d.crashed(); err != nil {
			return err
		}
		buf = b.payload.event(buf[:0], "bench.probe", eventID("probe", k), k, time.Now())
		if err := r.pub.one(ctx, r.ns, buf); err != nil {
			return err
		}
		for range 20 {
			if b.sink.group(r.healthy, "probe").Count > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// phase runs one measured phase of a run: it logs it, samples the dispatcher's CPU, memory
// and the sink's connections around f, writes a CPU profile when asked, and records the
// figures in res.
func (b *bench) phase(ctx context.Context, r *run, res *runResult, name string, f func() error) error {
	durability := r.durability
	b.logf("durability=%s: %s", durability, name)
	start := time.Now()
	before, conns := sampleCPU(r.d.cmd.Process.Pid), b.sinkSrv.conns.Load()
	refused := r.pub.refused.Load()
	defer func() {
		if n := r.pub.refused.Load() - refused; n > 0 {
			b.logf("  %d requests refused close to the dispatcher's memory limit and published again after their Retry-After", n)
		}
	}()
	profile := filepath.Join(b.cfg.profileDir, durability+"-"+name+".cpu.pprof")
	if err := r.d.startProfile(profile); err != nil {
		return err
	}
	err := f()
	if perr := r.d.stopProfile(); perr != nil && err == nil {
		err = perr
	}
	note := phaseNote{Name: name, Took: time.Since(start), Load: loadAvg(), CPU: shareBetween(before, sampleCPU(r.d.cmd.Process.Pid)), Conns: b.sinkSrv.conns.Load() - conns}
	note.HWM, _ = r.d.peakMemory()
	res.Phases = append(res.Phases, note)
	if crash := r.d.crashed(); crash != nil {
		return crash
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// Let the dispatcher finish acknowledging before the next phase starts.
	time.Sleep(2 * time.Second)
	return ctx.Err()
}
