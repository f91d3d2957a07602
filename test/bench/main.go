// Command bench is hookline's product benchmark, run by `make bench`: it starts a real
// control plane and the real `hookline dispatcher` binary, publishes through the
// dispatcher's API to receivers on loopback, and prints throughput against a same-run
// baseline, delivery latency, fan-out time, isolation from a hanging endpoint, peak
// memory, duplicates and losses, for --durability default and always.
//
// It is a measurement, not a test: a figure that misses its target is printed as MISS
// and the program still exits 0. It exits 1 only when the run cannot be trusted: the
// harness failed, the dispatcher crashed, an event was lost or delivered twice, or a
// signature did not verify.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hookline/hookline/internal/controlplane"
)

type config struct {
	hookline string
	workDir  string
	keep     bool
	// profileDir, when set, runs test/bench/profdispatcher instead of bin/hookline and
	// writes one CPU profile per phase there.
	profileDir string
	timeout    time.Duration

	payloadBytes     int
	maxInFlight      int
	baselineRequests int
	baselineWorkers  int

	events       int
	alwaysEvents int
	batch        int
	publishers   int

	// phases is the set -phases selected; the baseline always runs.
	phases           map[string]bool
	singleEvents     int
	singlePublishers int
	fan10Events      int
	floorDeliveries  int

	rate              int
	latencyDuration   time.Duration
	latencyPublishers int

	fanoutSubs   int
	fanoutRounds int

	parked       int
	parkedSubs   int
	parkedSettle time.Duration
	// parkedMemLimit is the GOMEMLIMIT of the parked pass's dispatcher, "" for none.
	parkedMemLimit string

	hangTimeout     time.Duration
	hangMaxInFlight int

	always bool
	// defaultPass runs the --durability default pass; false with -always
	// measures only the always pass.
	defaultPass  bool
	timeline     time.Duration
	verifyEvery  int
	drainTimeout time.Duration
	stallTimeout time.Duration
	setupTimeout time.Duration

	cluster clusterFlags
}

func parseFlags() (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.hookline, "hookline", "", "the hookline binary to run (default: bin/hookline in the repository)")
	fs.StringVar(&c.workDir, "work-dir", "", "where the dispatchers' data and logs go (default: a temporary directory, removed unless -keep)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory (dispatcher logs and data) after the run")
	fs.StringVar(&c.profileDir, "profile-dir", "", "run the dispatcher built from test/bench/profdispatcher and write a CPU profile of each phase here (figures then include profiling overhead)")
	fs.DurationVar(&c.timeout, "timeout", 40*time.Minute, "abort the whole run after this long")
	fs.IntVar(&c.payloadBytes, "payload-bytes", 1024, "size of each event's data")
	fs.IntVar(&c.maxInFlight, "max-in-flight", 32, "spec.limits.maxInFlight of the healthy and fan-out endpoints (32 is the product default)")
	fs.IntVar(&c.baselineRequests, "baseline-requests", 50000, "requests of the direct-HTTP baseline")
	fs.IntVar(&c.baselineWorkers, "baseline-workers", 64, "concurrent requests of the baseline")
	fs.IntVar(&c.events, "events", 50000, "events of the throughput phase")
	fs.IntVar(&c.alwaysEvents, "always-events", 20000, "events of the throughput phase with --durability always, which is several times slower (0: -events)")
	fs.IntVar(&c.batch, "batch", 100, "events per batch request in the throughput phase (the API takes at most 100)")
	fs.IntVar(&c.publishers, "publishers", 4, "concurrent batch publishers in the throughput phase")
	phases := fs.String("phases", "all", "comma-separated phases to run, of "+strings.Join(allPhases, ",")+" (the baseline always runs; isolation also runs latency, whose p99 it is compared with)")
	fs.IntVar(&c.singleEvents, "single-events", 20000, "events of the single-event closed-loop phase (\"single\"), one per request")
	fs.IntVar(&c.singlePublishers, "single-publishers", 64, "concurrent closed-loop publishers of the single-event and fan-out-10 phases")
	fs.IntVar(&c.fan10Events, "fanout10-events", 5000, "single events of the fan-out-10 phase (each delivered to 10 endpoints)")
	fs.IntVar(&c.floorDeliveries, "floor-deliveries", 20000, "deliveries of each pass of the floor phase (hookline's storage layout with plain nats.go calls, no dispatcher)")
	fs.IntVar(&c.rate, "rate", 1000, "events per second of the latency and isolation phases")
	fs.DurationVar(&c.latencyDuration, "latency-duration", 10*time.Second, "length of the latency and isolation phases")
	fs.IntVar(&c.latencyPublishers, "latency-publishers", 200, "concurrent single-event publishers in the latency phases")
	fs.IntVar(&c.fanoutSubs, "fanout-subs", 10000, "subscriptions of the fan-out phase (the < 1 s target is for 10000)")
	fs.IntVar(&c.fanoutRounds, "fanout-rounds", 3, "events timed through the fan-out subscriptions, one at a time")
	fs.IntVar(&c.parked, "parked", 1000000, "deliveries parked in the parked pass (the RSS target is for 1000000; fewer prints a labelled projection)")
	fs.IntVar(&c.parkedSubs, "parked-subs", 10, "subscriptions of the parked pass's dead endpoint; each event makes one delivery per subscription")
	fs.DurationVar(&c.parkedSettle, "parked-settle", 0, "after everything is parked, how long to wait before reading the RSS again and judging that instead (the deliveries' de-duplication window is 4 minutes with the dispatcher's defaults, the events' 10: the burst's ids expire); 0 judges the RSS once parked")
	fs.StringVar(&c.parkedMemLimit, "parked-memlimit", defaultPodMemLimit, "GOMEMLIMIT of the parked pass's dispatcher: bytes, or a number with KiB, MiB or GiB; the default is what the operator sets for the default 512Mi memory limit (90 %); off runs it without one")
	fs.DurationVar(&c.hangTimeout, "hang-timeout", 2*time.Second, "spec.limits.timeout of the hanging endpoint")
	fs.IntVar(&c.hangMaxInFlight, "hang-max-in-flight", 256, "spec.limits.maxInFlight of the hanging endpoint")
	fs.BoolVar(&c.always, "always", true, "also run the throughput and latency phases with --durability always")
	fs.BoolVar(&c.defaultPass, "default", true, "run the phases with --durability default (-default=false with -always runs only the always pass)")
	fs.DurationVar(&c.timeline, "timeline", time.Second, "bucket of the latency timeline printed after the table")
	fs.IntVar(&c.verifyEvery, "verify-every", 50, "verify the signature of one delivery in this many per endpoint (1: all)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 2*time.Minute, "longest wait for a phase's deliveries after its last publish")
	fs.DurationVar(&c.stallTimeout, "stall-timeout", 30*time.Second, "give up waiting for a phase's deliveries when none arrived for this long")
	fs.DurationVar(&c.setupTimeout, "setup-timeout", 2*time.Minute, "longest wait for the dispatcher to start or to see new resources")
	c.cluster.register(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return c, err
	}
	if err := c.cluster.check(); err != nil {
		return c, err
	}
	var err error
	if c.phases, err = parsePhases(*phases); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.batch < 1 || c.batch > 100:
		return c, fmt.Errorf("-batch=%d: the API takes 1 to 100 events per batch", c.batch)
	case c.payloadBytes < 64:
		return c, fmt.Errorf("-payload-bytes=%d: at least 64", c.payloadBytes)
	case c.rate < 1 || c.rate > 1_000_000:
		return c, fmt.Errorf("-rate=%d: 1 to 1000000", c.rate)
	case c.events < 1 || c.baselineRequests < 1 || c.publishers < 1 || c.baselineWorkers < 1 || c.latencyPublishers < 1 || c.fanoutSubs < 1 || c.fanoutRounds < 1 ||
		c.singleEvents < 1 || c.singlePublishers < 1 || c.fan10Events < 1 || c.floorDeliveries < 1 || c.parked < 1 || c.parkedSubs < 1:
		return c, errors.New("counts must be positive")
	case c.timeline <= 0:
		return c, fmt.Errorf("-timeline=%s: must be positive", c.timeline)
	case c.verifyEvery < 1:
		return c, fmt.Errorf("-verify-every=%d: at least 1", c.verifyEvery)
	}
	if c.parkedMemLimit, err = parseMemLimit(c.parkedMemLimit); err != nil {
		return c, fmt.Errorf("-parked-memlimit: %w", err)
	}
	return c, nil
}

// The phases -phases chooses from, in the order they run.
const (
	phaseThroughput = "throughput"
	phaseSingle     = "single"
	phaseFan10      = "fanout10"
	phaseLatency    = "latency"
	phaseIsolation  = "isolation"
	phaseFanout     = "fanout"
)

var allPhases = []string{phaseThroughput, phaseSingle, phaseFan10, phaseFloor, phaseLatency, phaseIsolation, phaseFanout, phaseParked}

// parsePhases reads -phases: "all" or a comma-separated subset of allPhases.
func parsePhases(v string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "all":
			for _, q := range allPhases {
				out[q] = true
			}
		case slices.Contains(allPhases, p):
			out[p] = true
		case p == "baseline":
			// Always runs.
		default:
			return nil, fmt.Errorf("-phases: unknown phase %q; choose from all,%s", p, strings.Join(allPhases, ","))
		}
	}
	if out[phaseIsolation] {
		out[phaseLatency] = true
	}
	return out, nil
}

func main() {
	cfg, err := parseFlags()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	// The benchmark's own Kubernetes clients have nothing to say that belongs in its
	// output; the dispatcher logs to its own file.
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	problems, err := benchmark(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: harness failed:", err)
		os.Exit(1)
	}
	if len(problems) > 0 {
		fmt.Fprintln(os.Stderr, "\nbench: this run cannot be trusted:")
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "  -", p)
		}
		os.Exit(1)
	}
}

func benchmark(ctx context.Context, cfg config) ([]string, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	if cfg.hookline == "" {
		cfg.hookline = filepath.Join(root, "bin", "hookline")
	}
	if cfg.profileDir != "" {
		if cfg.profileDir, err = filepath.Abs(cfg.profileDir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return nil, err
		}
		cfg.hookline = filepath.Join(cfg.profileDir, "profdispatcher")
		build := exec.CommandContext(ctx, "go", "build", "-o", cfg.hookline, "./test/bench/profdispatcher")
		build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("building the profiling dispatcher: %w", err)
		}
	}
	if _, err := os.Stat(cfg.hookline); err != nil {
		return nil, fmt.Errorf("%s: %w (run `make build`)", cfg.hookline, err)
	}
	if cfg.workDir == "" {
		if cfg.workDir, err = os.MkdirTemp("", "hookline-bench-"); err != nil {
			return nil, err
		}
		if !cfg.keep {
			defer os.RemoveAll(cfg.workDir)
		}
	}

	b := &bench{cfg: cfg, bin: cfg.hookline, payload: newPayload(cfg.payloadBytes), sink: newSink(cfg.verifyEvery), hang: newHanger()}
	b.machine = describeMachine()
	b.logf("work directory %s", cfg.workDir)
	if b.sinkSrv, err = serveLoopback(ctx, b.sink); err != nil {
		return nil, err
	}
	defer b.sinkSrv.close()
	if b.hangSrv, err = serveLoopback(ctx, b.hang); err != nil {
		return nil, err
	}
	defer b.hangSrv.close()
	defer close(b.hang.release)

	b.logf("starting kube-apiserver and etcd")
	if b.k, err = startCluster(); err != nil {
		return nil, err
	}
	defer func() {
		if err := b.k.stop(); err != nil {
			b.logf("stopping the control plane: %v", err)
		}
	}()

	var runs []*runResult
	if !cfg.cluster.only {
		if cfg.defaultPass {
			runs = append(runs, b.runDispatcher(ctx, "default", true))
		}
		if cfg.always && ctx.Err() == nil {
			runs = append(runs, b.runDispatcher(ctx, "always", false))
		}
	}
	var cl *clusterResult
	if cfg.cluster.on && ctx.Err() == nil {
		cl = b.clusterPass(ctx)
	}
	if !cfg.cluster.only && cfg.phases[phaseParked] && ctx.Err() == nil {
		b.parked = b.parkedPass(ctx)
	}
	b.machine.LoadEnd = loadAvg()
	if len(runs) > 0 || b.parked != nil {
		b.report(os.Stdout, runs)
	}
	b.reportCluster(os.Stdout, cl)
	out := append(problems(runs), clusterProblems(cl)...)
	if p := b.parked; p != nil {
		if p.Err != nil {
			out = append(out, "parked: "+p.Err.Error())
		}
		if p.PublishErr != "" {
			out = append(out, "parked: publishing: "+p.PublishErr)
		}
	}
	return out, ctx.Err()
}

// baselineOf is the baseline measured just before phase t, nil if none.
func baselineOf(t *throughputResult) *baselineResult {
	if t == nil {
		return nil
	}
	return t.Baseline
}

// problems lists what makes a run untrustworthy, as opposed to slow.
func problems(runs []*runResult) []string {
	var out []string
	for _, r := range runs {
		p := "durability=" + r.Durability + ": "
		for _, base := range []*baselineResult{r.Baseline, baselineOf(r.Throughput), baselineOf(r.Single), baselineOf(r.Fan10)} {
			if base != nil && base.Failed > 0 {
				out = append(out, fmt.Sprintf("%sbaseline: %d of %d requests failed (first: %s)", p, base.Failed, base.Requests, base.FirstErr))
			}
		}
		if r.Err != nil {
			out = append(out, p+r.Err.Error())
		}
		if r.Lost > 0 {
			out = append(out, fmt.Sprintf("%s%d events published (202) but not delivered by the end", p, r.Lost))
		}
		if r.Dups > 0 {
			out = append(out, fmt.Sprintf("%s%d deliveries repeated a (source, webhook-id) already received, e.g. %v", p, r.Dups, r.DupSamples))
		}
		if r.BadSig > 0 {
			out = append(out, fmt.Sprintf("%s%d sampled deliveries failed signature verification (%s)", p, r.BadSig, r.SigErr))
		}
		for _, f := range r.Floor {
			if f.Failed > 0 {
				out = append(out, fmt.Sprintf("%sfloor: %s: %d of %d sends failed (first: %s)", p, f.Name, f.Failed, f.Deliveries, f.FirstErr))
			}
		}
		for _, e := range r.PublishErrs {
			out = append(out, p+"publishing: "+e)
		}
	}
	return out
}
