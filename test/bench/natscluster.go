package main

// The cluster pass (issue #12): the same workload on one embedded dispatcher and on
// three `hookline dispatcher --queue=external` replicas sharing a three-node
// nats-server cluster (three processes on loopback, streams with three replicas),
// then one replica killed with SIGKILL while events keep coming. It prints what
// replication costs (delivered/s and CPU per delivery against the embedded pass) and
// how long the dead replica's endpoints go without deliveries.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/internal/controlplane"
)

// clusterFlags are the cluster pass's settings.
type clusterFlags struct {
	on                bool
	only              bool
	events            int
	endpoints         int
	killRate          int
	killAfter         time.Duration
	killRun           time.Duration
	maxRequestTimeout time.Duration
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.on, "cluster", true, "run the cluster pass: 3 nats-server processes and 3 dispatchers with --queue=external against one embedded dispatcher, then two replicas killed in turn (about 2-4 minutes; -cluster=false skips it)")
	fs.BoolVar(&c.only, "cluster-only", false, "run only the cluster pass (no baseline and no other phases)")
	fs.IntVar(&c.events, "cluster-events", 20000, "events of the cluster pass's throughput measure, on each of its two setups")
	fs.IntVar(&c.endpoints, "cluster-endpoints", 12, "endpoints of the cluster pass, each with its own subscription and event type, spread over the replicas by ownership")
	fs.IntVar(&c.killRate, "cluster-kill-rate", 240, "events per second published while a replica is killed")
	fs.DurationVar(&c.killAfter, "cluster-kill-after", 12*time.Second, "publishing before the replica is killed (which replica holds the fan-out is found meanwhile)")
	fs.DurationVar(&c.killRun, "cluster-kill-run", 25*time.Second, "publishing after the replica is killed")
	fs.DurationVar(&c.maxRequestTimeout, "cluster-max-request-timeout", 5*time.Second, "--max-request-timeout of the cluster pass's dispatchers: a killed replica's deliveries come back after twice this")
}

func (c *clusterFlags) check() error {
	switch {
	case c.only && !c.on:
		return errors.New("-cluster-only with -cluster=false runs nothing")
	case c.events < 1 || c.endpoints < 1 || c.killRate < 1:
		return errors.New("-cluster-events, -cluster-endpoints and -cluster-kill-rate must be positive")
	case c.killAfter <= 0 || c.killRun <= 0:
		return errors.New("-cluster-kill-after and -cluster-kill-run must be positive")
	case c.maxRequestTimeout < time.Second:
		return fmt.Errorf("-cluster-max-request-timeout=%s: at least 1s", c.maxRequestTimeout)
	}
	return nil
}

// clusterResult is what the cluster pass measured.
type clusterResult struct {
	Endpoints int
	Embedded  *clusterRate
	Cluster   *clusterRate
	Kills     []*killResult
	Err       error
}

// clusterRate is one setup's throughput: wall clock, and the CPU of its processes.
type clusterRate struct {
	*throughputResult
	// ServerCPU is the nats-servers' CPU per delivery (the embedded dispatcher's own
	// server is part of DispatcherCPU).
	ServerCPU time.Duration
	Cores     cpuCores
}

// cpuCores is how many cores each party used on average during a measure.
type cpuCores struct{ Dispatchers, Servers, Self, Others float64 }

// killResult is the replica kill: how long endpoints went without a delivery.
type killResult struct {
	Victim        string
	Holder        bool // which replica held the fan-out was found
	HeldFanout    bool // the victim held it
	Rate          int
	Published     int
	Delivered     int
	Lost, Dups    int
	PublishErr    string
	Resume        time.Duration   // longest time from the kill to an endpoint's next delivery
	Paused        int             // endpoints without a delivery for more than a second across the kill
	OthersLongest time.Duration   // longest such gap among the endpoints not paused
	Resumes       []time.Duration // the paused endpoints' times from the kill to their next delivery
	// FanoutWaiting is how many accepted events the fan-out had not taken yet, read
	// from its consumer just before the kill and 5 s after it: grown by several
	// seconds' worth of events, the fan-out itself stopped with the victim.
	FanoutWaiting [2]int
}

// clusterWork is the pass's namespace: one endpoint, subscription and event type each.
type clusterWork struct {
	ns    string
	paths []string
	types []string
}

func (b *bench) clusterPass(ctx context.Context) *clusterResult {
	res := &clusterResult{Endpoints: b.cfg.cluster.endpoints}
	res.Err = b.runClusterPass(ctx, res)
	if res.Err != nil {
		b.logf("cluster pass: %v", res.Err)
	}
	return res
}

// clusterEmbedded measures the pass's workload on one embedded dispatcher, and stops
// it.
func (b *bench) clusterEmbedded(ctx context.Context, w *clusterWork, dir string) (_ *clusterRate, err error) {
	c := b.cfg.cluster
	b.logf("cluster pass: embedded dispatcher, %d events to %d endpoints", c.events, c.endpoints)
	emb, err := startDispatcherArgs(ctx, b.bin, dir, []string{
		"--data-dir", filepath.Join(dir, "data"), "--durability", "default",
	}, b.k.env.Kubeconfig, c.maxRequestTimeout)
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := emb.stop(45 * time.Second); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	if err := emb.waitReady(ctx, b.cfg.setupTimeout); err != nil {
		return nil, err
	}
	pub := newPublisher(emb.api)
	defer pub.close()
	if err := b.clusterRoutes(ctx, w, []*publisher{pub}, "embp"); err != nil {
		return nil, err
	}
	r := b.clusterThroughput(ctx, w, []*publisher{pub}, []int{emb.cmd.Process.Pid}, nil, "embt")
	b.logf("  %d/%d delivered, %.0f/s", r.Delivered, r.Published, r.Rate)
	return r, nil
}

func (b *bench) runClusterPass(ctx context.Context, res *clusterResult) error {
	c := b.cfg.cluster
	w, err := b.clusterWorkload(ctx)
	if err != nil {
		return err
	}
	dir := filepath.Join(b.cfg.workDir, "cluster")

	if res.Embedded, err = b.clusterEmbedded(ctx, w, filepath.Join(dir, "embedded")); err != nil {
		return err
	}

	b.logf("cluster pass: starting 3 nats-server processes")
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	bin, err := natsServerBinary(ctx, root)
	if err != nil {
		return err
	}
	nodes, err := startNATSCluster(ctx, bin, filepath.Join(dir, "nats"))
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	if err != nil {
		return err
	}
	var urls []string
	for _, n := range nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	var disp []*dispatcherProc
	defer func() {
		for _, d := range disp {
			if d.crashed() == nil {
				_ = d.stop(45 * time.Second)
			}
		}
	}()
	start := func(name string) (*dispatcherProc, error) {
		b.logf("cluster pass: starting dispatcher %s --queue=external", name)
		// Each started again if it exits while starting: the first creates the
		// replicated streams, which a fresh cluster may refuse for a while.
		for try := 1; ; try++ {
			d, err := startDispatcherArgs(ctx, b.bin, filepath.Join(dir, name), []string{
				"--queue=external", "--nats-url", strings.Join(urls, ","), "--nats-replicas", "3", "--lease-namespace", "default",
			}, b.k.env.Kubeconfig, c.maxRequestTimeout)
			if err != nil {
				return nil, err
			}
			err = d.waitReady(ctx, b.cfg.setupTimeout)
			if err == nil || try == 5 || ctx.Err() != nil || d.crashed() == nil {
				if err != nil {
					err = fmt.Errorf("%s: %w", name, err)
				}
				return d, err
			}
			b.logf("  %s exited while starting; starting it again", name)
			time.Sleep(time.Second)
		}
	}
	for i := range 3 {
		// One at a time, as a Deployment's rollout would.
		d, err := start(fmt.Sprintf("replica-%d", i))
		if d != nil {
			disp = append(disp, d)
		}
		if err != nil {
			return err
		}
	}
	var (
		pubs             []*publisher
		pids, serverPIDs []int
	)
	for _, d := range disp {
		pubs = append(pubs, newPublisher(d.api))
		pids = append(pids, d.cmd.Process.Pid)
	}
	defer func() {
		for _, p := range pubs {
			p.close()
		}
	}()
	for _, n := range nodes {
		serverPIDs = append(serverPIDs, n.cmd.Process.Pid)
	}
	if err := b.clusterRoutes(ctx, w, pubs, "clup"); err != nil {
		return err
	}
	b.logf("cluster pass: 3 replicas, %d events to %d endpoints", c.events, c.endpoints)
	res.Cluster = b.clusterThroughput(ctx, w, pubs, pids, serverPIDs, "clut")
	b.logf("  %d/%d delivered, %.0f/s", res.Cluster.Delivered, res.Cluster.Published, res.Cluster.Rate)
	for _, d := range disp {
		if err := d.crashed(); err != nil {
			return err
		}
	}

	if res.Kills, err = b.clusterKills(ctx, w, pubs, disp, start, strings.Join(urls, ",")); err != nil {
		return err
	}
	return ctx.Err()
}

// clusterKills kills a replica that does not hold the fan-out, starts it again, then
// kills the one that does.
func (b *bench) clusterKills(ctx context.Context, w *clusterWork, pubs []*publisher, disp []*dispatcherProc,
	start func(string) (*dispatcherProc, error), urls string,
) ([]*killResult, error) {
	var kills []*killResult
	// Two kills: first a replica that does not hold the fan-out (its endpoints move
	// to the others), then, with the first started again (a new identity, as a
	// restarted pod), the one that holds it (everything waits for the fan-out to move).
	// Which replica holds the fan-out is found by pausing each for a moment.
	for round, holder := range []bool{false, true} {
		k, victim := b.clusterKill(ctx, w, pubs, disp, holder, fmt.Sprintf("cluk%d", round), urls)
		kills = append(kills, k)
		b.logf("  %d endpoints paused, delivering again %s after the kill", k.Paused, secs(k.Resume))
		if round > 0 || ctx.Err() != nil || victim < 0 {
			break
		}
		d, err := start(k.Victim)
		if d != nil {
			disp[victim] = d
			pubs[victim] = newPublisher(d.api)
		}
		if err != nil {
			return kills, err
		}
		// Let it join: the replicas hear of it at their next beat.
		time.Sleep(5 * time.Second)
	}
	return kills, nil
}

// clusterWorkload creates the pass's namespace, endpoints and subscriptions.
func (b *bench) clusterWorkload(ctx context.Context) (*clusterWork, error) {
	ns, err := b.k.namespace(ctx, "bench-cluster-")
	if err != nil {
		return nil, err
	}
	w := &clusterWork{ns: ns}
	for i := range b.cfg.cluster.endpoints {
		name := fmt.Sprintf("ep-%02d", i)
		path := "/" + ns + "/" + name
		secret, err := b.k.createEndpoint(ctx, ns, endpointSpec{name: name, url: b.sinkSrv.url(path), maxInFlight: int32(b.cfg.maxInFlight)})
		if err != nil {
			return nil, err
		}
		b.sink.addRoute(path, secret)
		typ := "bench.cluster." + name
		if err := b.k.createSubscription(ctx, subscription(ns, name, name, []string{typ}, "")); err != nil {
			return nil, err
		}
		w.paths, w.types = append(w.paths, path), append(w.types, typ)
	}
	return w, nil
}

// clusterRoutes publishes probes until every endpoint has received one.
func (b *bench) clusterRoutes(ctx context.Context, w *clusterWork, pubs []*publisher, group string) error {
	deadline := time.Now().Add(b.cfg.setupTimeout)
	var buf []byte
	for k := 0; ; k++ {
		missing := 0
		for _, p := range w.paths {
			if b.sink.group(p, group).Count == 0 {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d of %d endpoints received no probe within %s", missing, len(w.paths), b.cfg.setupTimeout)
		}
		for i, typ := range w.types {
			buf = b.payload.event(buf[:0], typ, eventID(group, k*len(w.types)+i), k, time.Now())
			if err := pubs[(k+i)%len(pubs)].one(ctx, w.ns, buf); err != nil {
				return err
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// received sums group's unique arrivals and repeats over the endpoints.
func (b *bench) received(w *clusterWork, group string) (n, dups int, last time.Time) {
	for _, p := range w.paths {
		g := b.sink.group(p, group)
		n, dups = n+g.Count, dups+g.Dups
		if g.Last.After(last) {
			last = g.Last
		}
	}
	return n, dups, last
}

// awaitReceived waits until want arrived, giving up after the drain timeout or when
// nothing arrived for the stall timeout.
func (b *bench) awaitReceived(ctx context.Context, w *clusterWork, group string, want int) {
	deadline := time.Now().Add(b.cfg.drainTimeout)
	lastN, since := -1, time.Now()
	for ctx.Err() == nil && time.Now().Before(deadline) {
		n, _, _ := b.received(w, group)
		if n >= want {
			return
		}
		if n != lastN {
			lastN, since = n, time.Now()
		} else if time.Since(since) > b.cfg.stallTimeout {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sumCPU(pids []int) time.Duration {
	var t time.Duration
	for _, p := range pids {
		t += procCPU(p)
	}
	return t
}

// clusterThroughput publishes the pass's events in batches, spread over the
// dispatchers' APIs, and times them to the last delivery.
func (b *bench) clusterThroughput(ctx context.Context, w *clusterWork, pubs []*publisher, pids, serverPIDs []int, group string) *clusterRate {
	n, size := b.cfg.cluster.events, b.cfg.batch
	batches := (n + size - 1) / size
	res := &clusterRate{throughputResult: &throughputResult{Events: n}}
	var (
		next, published atomic.Int64
		errOnce         sync.Once
		wg              sync.WaitGroup
	)
	start, dcpu, scpu, bcpu, busy := time.Now(), sumCPU(pids), sumCPU(serverPIDs), selfCPU(), machineBusy()
	for range b.cfg.publishers {
		wg.Go(func() {
			buf := make([]byte, 0, size*(b.cfg.payloadBytes+96)+16)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= batches {
					return
				}
				lo, hi := i*size, min(n, (i+1)*size)
				sent := time.Now()
				buf = b.payload.batch(buf, lo, hi, group, func(s int) string { return w.types[s%len(w.types)] }, sent)
				if err := pubs[i%len(pubs)].batch(ctx, w.ns, buf); err != nil {
					errOnce.Do(func() { res.PublishErr = err.Error() })
					continue
				}
				published.Add(int64(hi - lo))
			}
		})
	}
	wg.Wait()
	res.PublishDur = time.Since(start)
	res.Published = int(published.Load())
	b.awaitReceived(ctx, w, group, res.Published)
	got, dups, last := b.received(w, group)
	wall := time.Since(start).Seconds()
	d, s, self := sumCPU(pids)-dcpu, sumCPU(serverPIDs)-scpu, selfCPU()-bcpu
	all := machineBusy() - busy
	res.Cores = cpuCores{Dispatchers: d.Seconds() / wall, Servers: s.Seconds() / wall, Self: self.Seconds() / wall,
		Others: max(0, (all-d-s-self).Seconds()/wall)}
	if got > 0 {
		res.DispatcherCPU = d / time.Duration(got)
		res.ServerCPU = s / time.Duration(got)
		res.BenchCPU = self / time.Duration(got)
	}
	res.Delivered, res.Dups, res.Lost = got, dups, res.Published-got
	if !last.IsZero() {
		res.Elapsed = last.Sub(start)
		res.Rate = float64(got) / res.Elapsed.Seconds()
	}
	return res
}

// clusterKill publishes single events at a steady rate to every live replica, kills
// victim with SIGKILL, goes on publishing to the others, and measures each endpoint's
// longest time without a delivery across the kill.
func (b *bench) clusterKill(ctx context.Context, w *clusterWork, pubs []*publisher, disp []*dispatcherProc, holder bool, group, natsURLs string) (*killResult, int) {
	c := b.cfg.cluster
	res := &killResult{Rate: c.killRate}
	victimAt := -1
	found := make(chan int, 1)
	var (
		// skip is the replica not to publish to (stopped for a moment, or dead),
		// plus one; 0: none.
		skip      atomic.Int64
		published atomic.Int64
		errOnce   sync.Once
		wg        sync.WaitGroup
	)
	jobs := make(chan int, c.killRate)
	for range 32 {
		wg.Go(func() {
			var buf []byte
			for s := range jobs {
				buf = b.payload.event(buf[:0], w.types[s%len(w.types)], eventID(group, s), s, time.Now())
				var err error
				// A replica that dies with the request in flight leaves it unanswered:
				// the producer sends it again, to another one, with the same id.
				for try := range len(pubs) {
					i := (s + try) % len(pubs)
					if int64(i) == skip.Load()-1 {
						continue
					}
					err = pubs[i].one(ctx, w.ns, buf)
					if err != nil && try > 0 && strings.Contains(err.Error(), `"duplicate":true`) {
						// The dead replica stored it before dying: accepted once.
						err = nil
					}
					if err == nil {
						published.Add(1)
						break
					}
				}
				if err != nil {
					errOnce.Do(func() { res.PublishErr = err.Error() })
				}
			}
		})
	}
	start := time.Now()
	var (
		killAt time.Time
		probe  sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(c.killRate))
	for s := 0; ctx.Err() == nil; s++ {
		<-tick.C
		now := time.Now()
		if s == 0 {
			go func() { found <- b.fanoutHolder(ctx, disp, c.killRate, natsURLs, &skip) }()
		}
		if killAt.IsZero() && now.Sub(start) >= c.killAfter {
			h := <-found
			res.Holder = h >= 0
			switch {
			case holder && h >= 0:
				victimAt = h
			case !holder:
				// Any other; replica-1 when the holder is unknown.
				victimAt = 1
				if h == 1 {
					victimAt = 2
				}
			default:
				victimAt = 1
			}
			victim := disp[victimAt]
			res.Victim = fmt.Sprintf("replica-%d", victimAt)
			res.HeldFanout = h == victimAt
			b.logf("cluster pass: SIGKILL of %s (fan-out held by %s)", res.Victim, replicaName(h))
			res.FanoutWaiting[0] = fanoutWaiting(ctx, natsURLs)
			probe.Go(func() {
				time.Sleep(5 * time.Second)
				res.FanoutWaiting[1] = fanoutWaiting(ctx, natsURLs)
			})
			victim.stopping.Store(true)
			_ = victim.cmd.Process.Signal(syscall.SIGKILL)
			skip.Store(int64(victimAt) + 1)
			killAt = time.Now()
		}
		if !killAt.IsZero() && now.Sub(killAt) >= c.killRun {
			break
		}
		jobs <- s
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	probe.Wait()
	res.Published = int(published.Load())
	b.awaitReceived(ctx, w, group, res.Published)
	res.Delivered, res.Dups, _ = b.received(w, group)
	res.Lost = res.Published - res.Delivered
	if killAt.IsZero() {
		return res, -1
	}
	for _, p := range w.paths {
		var at []time.Time
		for _, l := range b.sink.group(p, group).Lat {
			at = append(at, l.sent.Add(l.lat))
		}
		slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
		// The longest gap between two arrivals that spans the kill or starts just
		// after it (the owner's last requests may land a moment after its death).
		var gap, resume time.Duration
		for i := 1; i < len(at); i++ {
			if at[i].Before(killAt) || at[i-1].After(killAt.Add(2*time.Second)) {
				continue
			}
			if g := at[i].Sub(at[i-1]); g > gap {
				gap, resume = g, at[i].Sub(killAt)
			}
		}
		if gap > time.Second {
			res.Paused++
			res.Resume = max(res.Resume, resume)
			res.Resumes = append(res.Resumes, resume)
		} else {
			res.OthersLongest = max(res.OthersLongest, gap)
		}
	}
	return res, victimAt
}

func replicaName(i int) string {
	if i < 0 {
		return "an unknown replica"
	}
	return fmt.Sprintf("replica-%d", i)
}

// fanoutHolder finds the replica holding the fan-out while events flow at rate: each
// replica in turn is stopped (SIGSTOP) for 1.5 s, well within the fan-out's pinned TTL,
// and the one during whose pause events pile up before the fan-out holds it. -1 when
// none stands out.
func (b *bench) fanoutHolder(ctx context.Context, disp []*dispatcherProc, rate int, urls string, skip *atomic.Int64) int {
	defer skip.Store(0)
	for i, d := range disp {
		if d.crashed() != nil || ctx.Err() != nil {
			continue
		}
		// Publishers leave it alone meanwhile: requests to it would hang.
		skip.Store(int64(i) + 1)
		time.Sleep(200 * time.Millisecond)
		before := fanoutWaiting(ctx, urls)
		_ = d.cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(1500 * time.Millisecond)
		during := fanoutWaiting(ctx, urls)
		_ = d.cmd.Process.Signal(syscall.SIGCONT)
		skip.Store(0)
		if before >= 0 && during-before > rate/2 {
			return i
		}
		time.Sleep(time.Second)
	}
	return -1
}

// fanoutWaiting reads how many events the fan-out's consumer has not handed out
// yet; -1 when it cannot be read.
func fanoutWaiting(ctx context.Context, urls string) int {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	nc, err := nats.Connect(urls, nats.Timeout(2*time.Second))
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return -1
	}
	c, err := js.Consumer(ctx, "HL_EVENTS", "fanout")
	if err != nil {
		return -1
	}
	info, err := c.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.NumPending)
}

// startDispatcherArgs starts `hookline dispatcher` with the bench's common flags and
// extra, logging to dir/dispatcher.log.
func startDispatcherArgs(ctx context.Context, bin, dir string, extra []string, kubeconfig string, maxRequestTimeout time.Duration) (*dispatcherProc, error) {
	api, err := freeLoopbackAddr(ctx)
	if err != nil {
		return nil, err
	}
	metrics, err := freeLoopbackAddr(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d := &dispatcherProc{api: api, metrics: metrics, logPath: filepath.Join(dir, "dispatcher.log"), exited: make(chan struct{})}
	logFile, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	args := append([]string{"dispatcher",
		"--auth", "none", "--listen", api, "--metrics-listen", metrics, "--allow-cidr", "127.0.0.0/8",
		"--kubeconfig", kubeconfig, "--max-request-timeout", maxRequestTimeout.String(),
	}, extra...)
	if err := d.launch(bin, args, logFile); err != nil {
		return nil, err
	}
	return d, nil
}

// natsNode is one nats-server process of the pass's cluster.
type natsNode struct {
	cmd        *exec.Cmd
	port, http int
	exited     chan struct{}
}

// natsServerBinary is bin/nats-server-<version in go.mod>, built from the module when
// it is not there yet (as `make nats-server` and test/cluster do).
func natsServerBinary(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding the nats-server version in go.mod: %w", err)
	}
	bin := filepath.Join(root, "bin", "nats-server-"+strings.TrimSpace(string(out)))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Dir, build.Stderr = root, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building %s: %w", bin, err)
	}
	return bin, nil
}

func freePort(ctx context.Context) (int, error) {
	addr, err := freeLoopbackAddr(ctx)
	if err != nil {
		return 0, err
	}
	var port int
	_, err = fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &port)
	return port, err
}

// startNATSCluster starts three nats-server processes on loopback, each with its own
// ports and store under dir, and waits until they have a JetStream meta leader. The
// nodes started are returned even on error, for the caller to stop.
func startNATSCluster(ctx context.Context, bin, dir string) ([]*natsNode, error) {
	const n = 3
	var nodes []*natsNode
	routes := make([]int, n)
	var routeURLs []string
	for i := range n {
		var err error
		if routes[i], err = freePort(ctx); err != nil {
			return nodes, err
		}
		routeURLs = append(routeURLs, fmt.Sprintf("nats-route://127.0.0.1:%d", routes[i]))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nodes, err
	}
	for i := range n {
		nd := &natsNode{exited: make(chan struct{})}
		var err error
		if nd.port, err = freePort(ctx); err != nil {
			return nodes, err
		}
		if nd.http, err = freePort(ctx); err != nil {
			return nodes, err
		}
		conf := filepath.Join(dir, fmt.Sprintf("nats-%d.conf", i))
		body := fmt.Sprintf("server_name: n%d\nhost: 127.0.0.1\nport: %d\nhttp: \"127.0.0.1:%d\"\njetstream { store_dir: %q }\n"+
			"cluster {\n  name: hookline-bench\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n",
			i, nd.port, nd.http, filepath.Join(dir, fmt.Sprintf("store-%d", i)), routes[i], strings.Join(routeURLs, ", "))
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return nodes, err
		}
		logFile, err := os.Create(filepath.Join(dir, fmt.Sprintf("nats-%d.log", i)))
		if err != nil {
			return nodes, err
		}
		nd.cmd = exec.Command(bin, "-c", conf)
		nd.cmd.Stdout, nd.cmd.Stderr = logFile, logFile
		nd.cmd.SysProcAttr = childAttrs()
		if err := nd.cmd.Start(); err != nil {
			logFile.Close()
			return nodes, fmt.Errorf("starting %s: %w", bin, err)
		}
		go func() {
			_ = nd.cmd.Wait()
			logFile.Close()
			close(nd.exited)
		}()
		nodes = append(nodes, nd)
	}
	deadline := time.Now().Add(time.Minute)
	for _, nd := range nodes {
		for metaLeader(ctx, nd.http) == "" {
			select {
			case <-nd.exited:
				return nodes, fmt.Errorf("nats-server on port %d exited while starting; see %s", nd.port, dir)
			default:
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nodes, fmt.Errorf("no JetStream meta leader within a minute; see %s", dir)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nodes, nil
}

// metaLeader is the JetStream meta leader a node's monitoring port names, or "".
func metaLeader(ctx context.Context, port int) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/jsz", port), nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(body, &jsz) != nil {
		return ""
	}
	return jsz.Meta.Leader
}

// stop ends the node: SIGTERM, then SIGKILL after 10 s.
func (n *natsNode) stop() {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
}

// reportCluster prints the cluster pass.
func (b *bench) reportCluster(out io.Writer, r *clusterResult) {
	if r == nil {
		return
	}
	c := b.cfg.cluster
	fmt.Fprintf(out, "\ncluster pass: %s events in batches of %d to %d endpoints (one delivery each), %d publishers\n",
		count(c.events), b.cfg.batch, r.Endpoints, b.cfg.publishers)
	fmt.Fprintf(out, "  embedded: 1 dispatcher with its own server; cluster: 3 nats-server processes (streams with 3 replicas) and 3 dispatchers --queue=external\n")
	if r.Err != nil {
		fmt.Fprintf(out, "  failed: %v\n", r.Err)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	cell := func(x *clusterRate, f func(*clusterRate) string) string {
		if x == nil {
			return notRun
		}
		return f(x)
	}
	row := func(name string, f func(*clusterRate) string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, cell(r.Embedded, f), cell(r.Cluster, f))
	}
	fmt.Fprintf(tw, "figure\tembedded\tcluster\n------\t--------\t-------\n")
	row("delivered / published", func(x *clusterRate) string { return count(x.Delivered) + " / " + count(x.Published) })
	row("delivered/s", func(x *clusterRate) string {
		s := count(int(x.Rate))
		if x != r.Embedded && r.Embedded != nil && r.Embedded.Rate > 0 {
			s += fmt.Sprintf(" (%.2f× embedded)", x.Rate/r.Embedded.Rate)
		}
		return s
	})
	row("CPU per delivery: dispatchers + nats-servers = sum", func(x *clusterRate) string {
		s := fmt.Sprintf("%s + %s = %s", us(x.DispatcherCPU), us(x.ServerCPU), us(x.DispatcherCPU+x.ServerCPU))
		if x != r.Embedded && r.Embedded != nil && r.Embedded.DispatcherCPU > 0 {
			s += fmt.Sprintf(" (%.2f×)", float64(x.DispatcherCPU+x.ServerCPU)/float64(r.Embedded.DispatcherCPU+r.Embedded.ServerCPU))
		}
		return s
	})
	row("  this program's CPU per delivery (publishers, receiver)", func(x *clusterRate) string { return us(x.BenchCPU) })
	row("cores used: dispatchers + servers + this program + others", func(x *clusterRate) string {
		return fmt.Sprintf("%.2f + %.2f + %.2f + %.2f", x.Cores.Dispatchers, x.Cores.Servers, x.Cores.Self, x.Cores.Others)
	})
	row("lost / duplicates", func(x *clusterRate) string { return fmt.Sprintf("%d / %d", x.Lost, x.Dups) })
	_ = tw.Flush()
	for _, k := range r.Kills {
		held := "did not hold the fan-out"
		switch {
		case !k.Holder:
			held = "held the fan-out or not: the pauses did not show which replica held it"
		case k.HeldFanout:
			held = "held the fan-out"
		}
		fmt.Fprintf(out, "%s killed (SIGKILL; it %s) while %d events/s were published to the 3 replicas (then to the 2 left):\n", k.Victim, held, k.Rate)
		fmt.Fprintf(out, "  endpoints without a delivery for over 1 s across the kill: %d of %d; their next delivery %s after the kill\n",
			k.Paused, r.Endpoints, secs(k.Resume))
		slices.Sort(k.Resumes)
		var rs []string
		for _, d := range k.Resumes {
			rs = append(rs, strconv.FormatFloat(d.Seconds(), 'f', 1, 64))
		}
		fmt.Fprintf(out, "  next delivery of each paused endpoint, seconds after the kill: %s\n", strings.Join(rs, " "))
		if k.Paused < r.Endpoints {
			fmt.Fprintf(out, "  the other endpoints' longest gap: %s\n", ms(k.OthersLongest))
		}
		fmt.Fprintf(out, "  events the fan-out had not taken yet, just before the kill / 5 s after: %d / %d", k.FanoutWaiting[0], k.FanoutWaiting[1])
		if k.FanoutWaiting[1]-k.FanoutWaiting[0] > 3*k.Rate {
			fmt.Fprintf(out, " (the killed replica held the fan-out: no new event reached any endpoint until another took it over)")
		}
		fmt.Fprintln(out)
		fmt.Fprintf(out, "  published %s, delivered %s, lost %d, duplicates (same webhook-id, at least once) %d\n",
			count(k.Published), count(k.Delivered), k.Lost, k.Dups)
		if k.PublishErr != "" {
			fmt.Fprintf(out, "  publish error: %s\n", k.PublishErr)
		}
	}
}

// clusterProblems lists what makes the cluster pass untrustworthy.
func clusterProblems(r *clusterResult) []string {
	if r == nil {
		return nil
	}
	var out []string
	if r.Err != nil {
		out = append(out, "cluster pass: "+r.Err.Error())
	}
	for _, x := range []struct {
		name string
		r    *clusterRate
	}{{"embedded", r.Embedded}, {"cluster", r.Cluster}} {
		if x.r == nil {
			continue
		}
		if x.r.Lost > 0 {
			out = append(out, fmt.Sprintf("cluster pass, %s: %d events published (202) but not delivered", x.name, x.r.Lost))
		}
		if x.r.Dups > 0 {
			out = append(out, fmt.Sprintf("cluster pass, %s: %d deliveries repeated without any fault", x.name, x.r.Dups))
		}
		if x.r.PublishErr != "" {
			out = append(out, fmt.Sprintf("cluster pass, %s: publishing: %s", x.name, x.r.PublishErr))
		}
	}
	for _, k := range r.Kills {
		if k.Lost <= 0 {
			continue
		}
		out = append(out, fmt.Sprintf("cluster pass, %s killed: %d events published (202) but not delivered", k.Victim, k.Lost))
	}
	return out
}
