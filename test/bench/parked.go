package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// The parked pass: a backlog of deliveries waiting for an endpoint that refuses
// connections, and what it costs the dispatcher's memory (issue #13: 1,000,000
// parked deliveries in less than 300 MiB of RSS). It runs on a dispatcher of its
// own, started fresh, so the heap the other phases grew is not counted.

const (
	targetParked    = 1_000_000 // deliveries the RSS target is stated for
	targetParkedRSS = 300 << 20
	phaseParked     = "parked"
	parkedEventType = "bench.parked"
)

// parkedResult is the memory of a dispatcher holding a parked backlog.
type parkedResult struct {
	Want, Subs, Events int
	Published          int
	// Parked is parks − unparks from the dispatcher's counters when the wait ended.
	Parked int64
	// Took runs from the first publish until Parked stopped growing.
	Took time.Duration
	// VmRSS: before publishing, the highest sampled while parking, once everything was
	// parked, and after Settle (the de-duplication windows of the burst passing).
	RSSIdle, RSSPeak, RSSParked, RSSSettled int64
	// AnonPeak is the highest RssAnon sampled while parking: the RSS less the
	// pages of files (the binary), which the kernel can drop under a
	// container's limit instead of killing it.
	AnonPeak int64
	Settle   time.Duration
	// A dispatcher started again on the same data, the backlog on disk and none of
	// the burst's memory: how long until ready, its VmRSS then and 10 s later,
	// and its VmHWM.
	RestartReady                                  time.Duration
	RSSRestarted, RSSRestartedLater, HWMRestarted int64
	DispatcherCPU                                 time.Duration // per parked delivery
	// MemLimit is the dispatcher's GOMEMLIMIT ("" none); GC what its collections
	// said about the live heap from its start until the settle wait ended.
	MemLimit   string
	GC         gcTrace
	Note       phaseNote
	PublishErr string
	Err        error
}

// parkedPass runs the parked phase on its own dispatcher (--durability default).
func (b *bench) parkedPass(ctx context.Context) *parkedResult {
	subs := max(1, b.cfg.parkedSubs)
	res := &parkedResult{Want: b.cfg.parked, Subs: subs, Events: (b.cfg.parked + subs - 1) / subs, MemLimit: b.cfg.parkedMemLimit}
	res.Err = b.parkedRun(ctx, res)
	if res.Err != nil {
		b.logf("parked: %v", res.Err)
	}
	return res
}

func (b *bench) parkedRun(ctx context.Context, res *parkedResult) (err error) {
	ns, err := b.k.namespace(ctx, "bench-parked-")
	if err != nil {
		return err
	}
	r := &run{durability: "default", ns: ns, healthy: "/" + ns + "/healthy"}
	secret, err := b.k.createEndpoint(ctx, ns, endpointSpec{name: "healthy", url: b.sinkSrv.url(r.healthy), maxInFlight: int32(b.cfg.maxInFlight)})
	if err != nil {
		return err
	}
	b.sink.addRoute(r.healthy, secret)
	if err := b.k.createSubscription(ctx, subscription(ns, "healthy", "healthy", []string{"bench.probe"}, "")); err != nil {
		return err
	}
	// A port nothing listens on: every attempt is refused at once, the circuit
	// opens after the first few, and from then on deliveries are parked.
	dead, err := freeLoopbackAddr(ctx)
	if err != nil {
		return err
	}
	if _, err := b.k.createEndpoint(ctx, ns, endpointSpec{name: "dead", url: "http://" + dead + "/dead", maxInFlight: int32(b.cfg.maxInFlight)}); err != nil {
		return err
	}
	for i := range res.Subs {
		if err := b.k.createSubscription(ctx, subscription(ns, "parked-"+strconv.Itoa(i), "dead", []string{parkedEventType}, "")); err != nil {
			return err
		}
	}

	dir := filepath.Join(b.cfg.workDir, "parked")
	b.logf("parked: starting %s dispatcher (data and log in %s)", b.bin, dir)
	if r.d, err = startDispatcher(ctx, b.bin, b.k.env.Kubeconfig, "default", dir, b.cfg.profileDir != "", parkedEnv(res)...); err != nil {
		return err
	}
	defer func() { // r.d: restartParked replaces it
		if stopErr := r.d.stop(2 * time.Minute); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	if err := r.d.waitReady(ctx, b.cfg.setupTimeout); err != nil {
		return err
	}
	r.pub = newPublisher(r.d.api)
	defer r.pub.close()
	// The probe also tells that the dispatcher has the subscriptions created before it started.
	if err := b.waitRoute(ctx, r); err != nil {
		return err
	}

	pid := r.d.cmd.Process.Pid
	res.RSSIdle = procStatusBytes(pid, "VmRSS")
	sampling, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	peak, anonPeak := sampleRSS(sampling, pid, res.RSSIdle)

	b.logf("parked: %s deliveries (%s events × %d subscriptions) to an endpoint that refuses connections", count(res.Want), count(res.Events), res.Subs)
	start, dcpu, cpu := time.Now(), procCPU(pid), sampleCPU(pid)
	profile := filepath.Join(b.cfg.profileDir, "parked.cpu.pprof")
	if err := r.d.startProfile(profile); err != nil {
		return err
	}
	res.Published = b.publishParked(ctx, r, res)
	// With -profile-dir: the heap in the middle of the burst, half parked.
	half := func() error { return r.d.heapProfile(filepath.Join(b.cfg.profileDir, "parked-burst.heap.pprof")) }
	parked, last, werr := b.awaitParked(ctx, r, int64(res.Published*res.Subs), half)
	if perr := r.d.stopProfile(); perr != nil && werr == nil {
		werr = perr
	}
	res.Parked = parked
	res.Took = last.Sub(start)
	if parked > 0 {
		res.DispatcherCPU = (procCPU(pid) - dcpu) / time.Duration(parked)
	}
	res.RSSParked = procStatusBytes(pid, "VmRSS")
	res.Note = phaseNote{Name: phaseParked, Took: time.Since(start), Load: loadAvg(), CPU: shareBetween(cpu, sampleCPU(pid))}
	res.Note.HWM = procStatusBytes(pid, "VmHWM")
	if werr != nil {
		return werr
	}
	if crash := r.d.crashed(); crash != nil {
		return crash
	}
	// With -profile-dir: the heap once everything is parked, the burst's ids and
	// buffers still held.
	if err := r.d.heapProfile(filepath.Join(b.cfg.profileDir, "parked-end.heap.pprof")); err != nil {
		return err
	}
	b.logf("parked: %s parked in %s, VmRSS %.1f MiB (idle %.1f MiB, peak %.1f MiB)", count(int(parked)), secs(res.Took),
		float64(res.RSSParked)/bytesPerMebibyte, float64(res.RSSIdle)/bytesPerMebibyte, float64(peak.Load())/bytesPerMebibyte)

	if res.Settle = b.cfg.parkedSettle; res.Settle > 0 {
		b.logf("parked: waiting %s for the burst's de-duplication windows to pass", res.Settle)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(res.Settle):
		}
		res.RSSSettled = procStatusBytes(pid, "VmRSS")
	}
	if res.GC, err = readGCTrace(r.d.logPath); err != nil {
		return err
	}
	// With -profile-dir: what the heap holds with the backlog (the collection it
	// forces comes after every RSS reading above).
	if err := r.d.heapProfile(filepath.Join(b.cfg.profileDir, "parked.heap.pprof")); err != nil {
		return err
	}
	stopSampling()
	res.RSSPeak, res.AnonPeak = peak.Load(), anonPeak.Load()
	if err := r.d.crashed(); err != nil {
		return err
	}
	return b.restartParked(ctx, r, dir, res)
}

// sampleRSS reads pid's VmRSS and RssAnon every 0.5 s until ctx ends, keeping the
// highest of each (VmRSS from idle).
func sampleRSS(ctx context.Context, pid int, idle int64) (peak, anonPeak *atomic.Int64) {
	peak, anonPeak = new(atomic.Int64), new(atomic.Int64)
	peak.Store(idle)
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if v := procStatusBytes(pid, "VmRSS"); v > peak.Load() {
					peak.Store(v)
				}
				if v := procStatusBytes(pid, "RssAnon"); v > anonPeak.Load() {
					anonPeak.Store(v)
				}
			}
		}
	}()
	return peak, anonPeak
}

// parkedEnv is the parked pass's dispatchers' environment: the pod's GOMEMLIMIT, and
// the runtime's line per collection, from which the live heap is read.
func parkedEnv(res *parkedResult) []string {
	env := []string{"GODEBUG=gctrace=1"}
	if res.MemLimit != "" {
		env = append(env, "GOMEMLIMIT="+res.MemLimit)
	}
	return env
}

// restartParked stops the dispatcher and starts another on the same data: the
// backlog is on disk, and the memory the burst of publishing and parking grew
// (de-duplication ids, block caches, heap the runtime has not returned) is gone,
// so its RSS is what holding the backlog costs, as after any restart.
func (b *bench) restartParked(ctx context.Context, r *run, dir string, res *parkedResult) error {
	if err := r.d.stop(2 * time.Minute); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "dispatcher.log"), filepath.Join(dir, "dispatcher-1.log")); err != nil {
		return err
	}
	b.logf("parked: starting the dispatcher again on the same data")
	start := time.Now()
	d, err := startDispatcher(ctx, b.bin, b.k.env.Kubeconfig, "default", dir, b.cfg.profileDir != "", parkedEnv(res)...)
	if err != nil {
		return err
	}
	r.d = d // the caller's deferred stop stops this one
	if err := d.waitReady(ctx, b.cfg.setupTimeout); err != nil {
		return err
	}
	res.RestartReady = time.Since(start)
	pid := d.cmd.Process.Pid
	res.RSSRestarted = procStatusBytes(pid, "VmRSS")
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
	}
	res.RSSRestartedLater = procStatusBytes(pid, "VmRSS")
	res.HWMRestarted = procStatusBytes(pid, "VmHWM")
	b.logf("parked: restarted in %s, VmRSS %.1f MiB, 10 s later %.1f MiB", secs(res.RestartReady),
		float64(res.RSSRestarted)/bytesPerMebibyte, float64(res.RSSRestartedLater)/bytesPerMebibyte)
	if err := d.heapProfile(filepath.Join(b.cfg.profileDir, "parked-restarted.heap.pprof")); err != nil {
		return err
	}
	return d.crashed()
}

// publishParked publishes the pass's events in batches of -batch from -publishers
// publishers, and returns how many were accepted.
func (b *bench) publishParked(ctx context.Context, r *run, res *parkedResult) int {
	const group = "pk"
	n, size := res.Events, b.cfg.batch
	batches := (n + size - 1) / size
	var (
		next, published atomic.Int64
		errOnce         sync.Once
		wg              sync.WaitGroup
	)
	for range b.cfg.publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, size*(b.cfg.payloadBytes+96)+16)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= batches {
					return
				}
				lo, hi := i*size, min(n, (i+1)*size)
				sent := time.Now()
				buf = b.payload.batch(buf, lo, hi, group, func(int) string { return parkedEventType }, sent)
				if err := r.pub.batch(ctx, r.ns, buf); err != nil {
					errOnce.Do(func() { res.PublishErr = err.Error() })
					continue
				}
				published.Add(int64(hi - lo))
			}
		}()
	}
	wg.Wait()
	return int(published.Load())
}

// awaitParked polls the dispatcher's counters until want deliveries are parked, or
// the count has not grown for -stall-timeout (the few deliveries whose attempts
// failed before the circuit opened wait for their retry, then are parked too), or
// -drain-timeout has passed since it last grew. It calls half once, when half are
// parked. It returns the count and when it last grew.
func (b *bench) awaitParked(ctx context.Context, r *run, want int64, half func() error) (int64, time.Time, error) {
	var (
		parked int64
		last   = time.Now()
	)
	for {
		if err := r.d.crashed(); err != nil {
			return parked, last, err
		}
		n, err := parkedNow(ctx, r.d.metrics)
		if err != nil {
			return parked, last, err
		}
		if n > parked {
			parked, last = n, time.Now()
		}
		if half != nil && 2*parked >= want {
			if err := half(); err != nil {
				return parked, last, err
			}
			half = nil
		}
		if parked >= want || time.Since(last) > b.cfg.stallTimeout {
			return parked, last, nil
		}
		select {
		case <-ctx.Done():
			return parked, last, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// parkedNow is hookline_delivery_parks_total − hookline_delivery_unparks_total over
// every label: the deliveries parked now (a probe taken off the backlog and parked
// again counts once).
func parkedNow(ctx context.Context, addr string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading the dispatcher's parks: %w", err)
	}
	defer resp.Body.Close()
	var parks, unparks float64
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		sum := &parks
		switch {
		case strings.HasPrefix(line, "hookline_delivery_parks_total{"):
		case strings.HasPrefix(line, "hookline_delivery_unparks_total{"):
			sum = &unparks
		default:
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				*sum += v
			}
		}
	}
	return int64(parks - unparks), sc.Err()
}

// procStatusBytes reads a "kB" field of /proc/PID/status (VmRSS, VmHWM) in bytes; 0
// if it cannot.
func procStatusBytes(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			return 0
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		return kb << 10
	}
	return 0
}

// reportParked prints the parked pass: the RSS with the backlog, and, when fewer than
// targetParked deliveries were parked, a linear projection to targetParked, labelled.
func (b *bench) reportParked(out io.Writer) {
	p := b.parked
	if p == nil {
		return
	}
	mib := func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/bytesPerMebibyte) }
	fmt.Fprintf(out, "\nparked backlog (its own dispatcher, --durability default; %s events × %d subscriptions to an endpoint that refuses connections):\n",
		count(p.Events), p.Subs)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(name, value, target string) { fmt.Fprintf(tw, "  %s\t%s\t%s\n", name, value, target) }
	if p.Err != nil {
		row("FAILED", p.Err.Error(), "")
	}
	row("deliveries parked (parks − unparks) / asked for", count(int(p.Parked))+" / "+count(p.Want), "")
	if p.Published > 0 {
		row("parked in (first publish → last park) / per second", fmt.Sprintf("%s / %s", secs(p.Took), count(int(float64(p.Parked)/p.Took.Seconds()))), "")
	}
	row("dispatcher CPU per parked delivery", us(p.DispatcherCPU), "")
	row("dispatcher VmRSS idle / peak while parking / once parked", mib(p.RSSIdle)+" / "+mib(p.RSSPeak)+" / "+mib(p.RSSParked), "")
	final := p.RSSParked
	if p.Settle > 0 {
		row(fmt.Sprintf("dispatcher VmRSS %s later (the deliveries' de-duplication window: 4 minutes by default)", p.Settle), mib(p.RSSSettled), "")
		final = p.RSSSettled
	}
	limit := "none"
	if p.MemLimit != "" {
		v, _ := strconv.ParseInt(p.MemLimit, 10, 64)
		limit = mib(v)
	}
	row("dispatcher GOMEMLIMIT (-parked-memlimit)", limit, "")
	if p.GC.Collections > 0 {
		row("dispatcher live heap (marked by a collection, gctrace) highest / at the last / collections", fmt.Sprintf("%s / %s / %d",
			mib(p.GC.PeakLive), mib(p.GC.LastLive), p.GC.Collections), "")
	}
	row("dispatcher peak VmRSS while parking, against the default pod's memory limit", mib(p.RSSPeak)+" "+verdict(p.RSSPeak > 0 && p.RSSPeak < defaultPodMemory),
		fmt.Sprintf("< %d MiB", defaultPodMemory>>20))
	row("… of it anonymous (RssAnon, highest): what the kernel cannot reclaim", mib(p.AnonPeak)+" "+verdict(p.AnonPeak > 0 && p.AnonPeak < defaultPodMemory),
		fmt.Sprintf("< %d MiB", defaultPodMemory>>20))
	if p.RestartReady > 0 {
		row("restarted on the same data: ready in / VmRSS then / 10 s later / VmHWM", fmt.Sprintf("%s / %s / %s / %s",
			secs(p.RestartReady), mib(p.RSSRestarted), mib(p.RSSRestartedLater), mib(p.HWMRestarted)), "")
	}
	target := fmt.Sprintf("< %d MiB at %s", targetParkedRSS>>20, count(targetParked))
	judge := func(what string, v int64) {
		switch {
		case p.Parked <= 0 || v <= 0:
			row(what, verdictMiss+" (nothing measured)", target)
		case p.Parked >= targetParked:
			row(fmt.Sprintf("%s, %s parked (measured)", what, count(int(p.Parked))), mib(v)+" "+verdict(v < targetParkedRSS), target)
		default:
			// Linear in the backlog: what the idle dispatcher had, plus what each
			// parked delivery added.
			per := float64(v-p.RSSIdle) / float64(p.Parked)
			proj := int64(math.Round(float64(p.RSSIdle) + per*targetParked))
			row(fmt.Sprintf("%s: PROJECTION to %s (linear from %s measured, %+.0f B each; -parked %d measures it)", what, count(targetParked), count(int(p.Parked)), per, targetParked),
				mib(proj)+" "+verdict(proj < targetParkedRSS)+" (projected)", target)
		}
	}
	judge("RSS after parking the backlog in one burst", final)
	if p.RestartReady > 0 {
		judge("RSS holding the backlog after a restart (VmHWM)", p.HWMRestarted)
	}
	n := p.Note
	row("cores: dispatcher + this program + everything else / load at the end", fmt.Sprintf("%.2f + %.2f + %.2f / %s", n.CPU.Dispatcher, n.CPU.Self, n.CPU.Others, n.Load), "")
	if p.PublishErr != "" {
		row("publishing error", p.PublishErr, "")
	}
	tw.Flush()
}
