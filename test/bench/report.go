package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets from issue #13. The ratios are to the same run's direct baseline.
const (
	targetBatchRatio  = 0.5  // batches, by wall clock and by CPU cost
	targetAlwaysRatio = 0.15 // --durability always, batches and single events
	targetSingleRatio = 0.33 // single events, closed loop, one endpoint
	targetSingleCPU   = 2.0  // dispatcher CPU per single-event delivery ÷ per batched delivery
	targetFan10Ratio  = 0.5  // single events to ten endpoints, deliveries/s
	targetP99         = 10 * time.Millisecond
	targetAlwaysP99   = 20 * time.Millisecond
	targetIsolation   = 1.5
	targetFanout      = time.Second // one event to 10,000 subscriptions
	targetFanoutSubs  = 10000
	targetCleanText   = "0"
	notRun            = "—"
	verdictPass       = "PASS"
	verdictMiss       = "MISS"
	bytesPerMebibyte  = 1 << 20
)

type machine struct {
	CPUs       int
	GOMAXPROCS int
	Model      string
	Go         string
	LoadStart  string
	LoadEnd    string
	Started    time.Time
}

func describeMachine() machine {
	m := machine{
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, LoadStart: loadAvg(), Started: time.Now(),
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	return m
}

func verdict(ok bool) string {
	if ok {
		return verdictPass
	}
	return verdictMiss
}

// report prints the figures as one table, then what explains them.
func (b *bench) report(out io.Writer, runs []*runResult) {
	c := b.cfg
	m := b.machine
	fmt.Fprintf(out, "\nhookline delivery benchmark — %s\n", m.Started.Format(time.RFC3339))
	fmt.Fprintf(out, "machine: %d CPUs (GOMAXPROCS %d), %s, %s\n", m.CPUs, m.GOMAXPROCS, m.Model, m.Go)
	fmt.Fprintf(out, "load average (1/5/15 min): %s at start, %s at end — the cores are shared\n\n", m.LoadStart, m.LoadEnd)

	byDur := map[string]*runResult{}
	for _, r := range runs {
		byDur[r.Durability] = r
	}
	cols := []string{"default", "always"}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(name string, target string, cell func(r *runResult) string) {
		fmt.Fprintf(tw, "%s", name)
		for _, d := range cols {
			v := notRun
			if r := byDur[d]; r != nil {
				v = cell(r)
			}
			fmt.Fprintf(tw, "\t%s", v)
		}
		fmt.Fprintf(tw, "\t%s\n", target)
	}
	fmt.Fprintf(tw, "figure\t--durability default\t--durability always\ttarget\n")
	fmt.Fprintf(tw, "------\t--------------------\t-------------------\t------\n")
	row(fmt.Sprintf("baseline: direct POST with the dispatcher's HTTP client, %d workers, %s × %s", c.baselineWorkers, count(c.baselineRequests), size(c.payloadBytes)), "", func(r *runResult) string {
		if r.Baseline == nil {
			return notRun
		}
		return count(int(r.Baseline.Rate)) + " req/s"
	})
	row("  CPU per request: client + receiver", "", func(r *runResult) string {
		if r.Baseline == nil {
			return notRun
		}
		return us(r.Baseline.CPUPerRequest)
	})

	b.throughputRows(row, fmt.Sprintf("throughput: events in batches of %d, %d publishers", c.batch, c.publishers),
		func(r *runResult) *throughputResult { return r.Throughput },
		func(r *runResult) float64 { return ratioTarget(r, targetBatchRatio) }, true,
		fmt.Sprintf("≥ %.2g× (always ≥ %.2g×)", targetBatchRatio, targetAlwaysRatio))
	b.throughputRows(row, fmt.Sprintf("single events, closed loop: %d publishers, one event per request, 1 endpoint", c.singlePublishers),
		func(r *runResult) *throughputResult { return r.Single },
		func(r *runResult) float64 { return ratioTarget(r, targetSingleRatio) }, true,
		fmt.Sprintf("≥ %.2g× (always ≥ %.2g×)", targetSingleRatio, targetAlwaysRatio))
	row("  dispatcher CPU per delivery ÷ batched", fmt.Sprintf("≤ %.0f×", targetSingleCPU), func(r *runResult) string {
		if r.Single == nil || r.Throughput == nil || r.Throughput.DispatcherCPU == 0 {
			return notRun
		}
		x := math.Ceil(100*float64(r.Single.DispatcherCPU)/float64(r.Throughput.DispatcherCPU)) / 100
		return fmt.Sprintf("%.2f× %s", x, verdict(x <= targetSingleCPU))
	})
	b.throughputRows(row, fmt.Sprintf("fan-out 10: single events to %d endpoints, %d publishers (deliveries)", fan10Endpoints, c.singlePublishers),
		func(r *runResult) *throughputResult { return r.Fan10 },
		func(*runResult) float64 { return targetFan10Ratio }, false,
		fmt.Sprintf("≥ %.2g× by wall clock", targetFan10Ratio))
	b.floorRows(row)

	lat := func(f func(l *latencyResult) string) func(r *runResult) string {
		return func(r *runResult) string {
			if r.Latency == nil {
				return notRun
			}
			return f(r.Latency)
		}
	}
	row(fmt.Sprintf("latency: single events at %s/s for %s, POST → receiver", count(c.rate), c.latencyDuration), "", lat(func(l *latencyResult) string { return "" }))
	row("  p50 / p90", "", lat(func(l *latencyResult) string { return ms(l.P50) + " / " + ms(l.P90) }))
	row("  p99", fmt.Sprintf("< %s (always < %s)", ms(targetP99), ms(targetAlwaysP99)), func(r *runResult) string {
		if r.Latency == nil {
			return notRun
		}
		limit := targetP99
		if r.Durability == "always" {
			limit = targetAlwaysP99
		}
		return ms(r.Latency.P99) + " " + verdict(r.Latency.P99 < limit)
	})
	row("  max", "", lat(func(l *latencyResult) string { return ms(l.Max) }))
	row("  publish round trip (POST → 202) p50 / p99", "", lat(func(l *latencyResult) string { return ms(l.AckP50) + " / " + ms(l.AckP99) }))
	row("  202 → receiver p50 / p99 (< 0: delivered before the 202 was read)", "", lat(func(l *latencyResult) string {
		return ms(l.AfterAckP50) + " / " + ms(l.AfterAckP99)
	}))
	row("  producer behind schedule, max", "", lat(func(l *latencyResult) string { return ms(l.MaxLag) }))

	fo := func(f func(f *fanoutResult) string) func(r *runResult) string {
		return func(r *runResult) string {
			if r.Fanout == nil {
				return notRun
			}
			return f(r.Fanout)
		}
	}
	row(fmt.Sprintf("fan-out: one event to %s subscriptions, POST → last delivery, median of %d", count(c.fanoutSubs), c.fanoutRounds), "", fo(func(f *fanoutResult) string {
		if len(f.Rounds) == 0 {
			return "none arrived"
		}
		rounds := slices.Clone(f.Rounds)
		med := percentile(rounds, 50)
		parts := make([]string, len(f.Rounds))
		for i, d := range f.Rounds {
			parts[i] = ms(d)
		}
		return ms(med) + " (" + strings.Join(parts, ", ") + ")"
	}))
	row("  POST → all deliveries queued by the fan-out, median (rounds)", "", fo(func(f *fanoutResult) string {
		if len(f.Queued) == 0 {
			return "not seen"
		}
		parts := make([]string, len(f.Queued))
		for i, d := range f.Queued {
			parts[i] = ms(d)
		}
		return ms(percentile(slices.Clone(f.Queued), 50)) + " (" + strings.Join(parts, ", ") + ")"
	}))
	row("  dispatcher CPU from POST to all queued, per round (clock ticks of 10 ms)", "", fo(func(f *fanoutResult) string {
		if len(f.QueuedCPU) == 0 {
			return notRun
		}
		parts := make([]string, len(f.QueuedCPU))
		for i, d := range f.QueuedCPU {
			parts[i] = ms(d)
		}
		return strings.Join(parts, ", ")
	}))
	row(fmt.Sprintf("  slowest fan-out (POST → all queued), at %s subscriptions", count(targetFanoutSubs)), "< "+secs(targetFanout), fo(func(f *fanoutResult) string {
		if f.Subs < targetFanoutSubs {
			return fmt.Sprintf("n/a (-fanout-subs %d)", f.Subs)
		}
		if len(f.Queued) < len(f.Rounds) || len(f.Queued) == 0 || f.Lost > 0 {
			return verdictMiss
		}
		worst := slices.Max(f.Queued)
		return secs(worst) + " " + verdict(worst < targetFanout)
	}))
	row("  subscriptions created in / all live in the dispatcher ≤", "", fo(func(f *fanoutResult) string {
		return secs(f.Create) + " / " + secs(f.Visible)
	}))

	b.isolationRows(row)

	row("peak RSS of the dispatcher (VmHWM)", "", func(r *runResult) string {
		if r.PeakRSS == 0 {
			return "?"
		}
		return fmt.Sprintf("%.1f MiB", float64(r.PeakRSS)/bytesPerMebibyte)
	})
	row("duplicates (same source + webhook-id twice)", targetCleanText, func(r *runResult) string { return count(r.Dups) + " " + verdict(r.Dups == 0) })
	row("lost (202 but never delivered)", targetCleanText, func(r *runResult) string { return count(r.Lost) + " " + verdict(r.Lost == 0 && r.Err == nil) })
	row(fmt.Sprintf("signatures verified (1 in %d) / failed", c.verifyEvery), "", func(r *runResult) string { return count(r.Verified) + " / " + count(r.BadSig) })
	row("load average at the end of the run", "", func(r *runResult) string { return r.LoadEnd })
	tw.Flush()
	b.reportParked(out)

	reportPhases(out, runs)
	reportTimeline(out, runs, c.timeline)
	reportCounters(out, runs)
}

// isolationRows prints the isolation phase against the latency phase, and its
// control (a second endpoint that answers) beside it.
func (b *bench) isolationRows(row func(string, string, func(*runResult) string)) {
	iso := func(f func(without, with *latencyResult) string) func(r *runResult) string {
		return func(r *runResult) string {
			if r.Isolation == nil || r.Latency == nil {
				return notRun
			}
			return f(r.Latency, r.Isolation)
		}
	}
	row(fmt.Sprintf("isolation: healthy p99 without / with a hanging endpoint (timeout %s)", b.cfg.hangTimeout), "", iso(func(without, with *latencyResult) string {
		return ms(without.P99) + " / " + ms(with.P99)
	}))
	row("  ratio", fmt.Sprintf("< %.2g×", targetIsolation), iso(func(without, with *latencyResult) string {
		if without.P99 <= 0 {
			return "n/a"
		}
		// Shown rounded up, so a ratio printed below the target is below it.
		ratio := math.Ceil(100*float64(with.P99)/float64(without.P99)) / 100
		return fmt.Sprintf("%.2f× %s", ratio, verdict(ratio < targetIsolation))
	}))
	row("  healthy p50 with the hanging endpoint / its requests", "", iso(func(_, with *latencyResult) string {
		return ms(with.P50) + " / " + count(int(with.HangRequests))
	}))
	row("  control: healthy p99 with a second endpoint that answers at once; ratio", "", func(r *runResult) string {
		if r.Control == nil || r.Latency == nil {
			return notRun
		}
		if r.Latency.P99 <= 0 {
			return ms(r.Control.P99)
		}
		return fmt.Sprintf("%s; %.2f×", ms(r.Control.P99), float64(r.Control.P99)/float64(r.Latency.P99))
	})
	row("  hanging ÷ answering second endpoint (what the hang itself costs)", "", func(r *runResult) string {
		if r.Control == nil || r.Isolation == nil || r.Control.P99 <= 0 {
			return notRun
		}
		return fmt.Sprintf("%.2f×", float64(r.Isolation.P99)/float64(r.Control.P99))
	})
}

// ratioTarget is the throughput target of r's durability: want, or the lower target
// of --durability always.
func ratioTarget(r *runResult, want float64) float64 {
	if r.Durability == "always" {
		return targetAlwaysRatio
	}
	return want
}

// throughputRows prints a throughput-like phase: its rate and its ratio to the
// baseline by wall clock and by CPU cost, with a verdict on the wall-clock ratio
// and, when cpuVerdict, on the CPU-cost ratio too.
func (b *bench) throughputRows(row func(string, string, func(*runResult) string), title string,
	get func(*runResult) *throughputResult, target func(*runResult) float64, cpuVerdict bool, targetText string,
) {
	tp := func(f func(r *runResult, t *throughputResult) string) func(r *runResult) string {
		return func(r *runResult) string {
			t := get(r)
			if t == nil {
				return notRun
			}
			return f(r, t)
		}
	}
	row(title, "", tp(func(_ *runResult, t *throughputResult) string {
		return count(t.Events) + " events, " + count(t.Delivered) + " deliveries"
	}))
	// A phase's ratios are against the baseline measured just before it.
	base := func(r *runResult, t *throughputResult) *baselineResult {
		if t.Baseline != nil {
			return t.Baseline
		}
		return r.Baseline
	}
	row("  baseline just before the phase: req/s, CPU per request", "", tp(func(r *runResult, t *throughputResult) string {
		if b := base(r, t); b != nil && b.Rate > 0 {
			return count(int(b.Rate)) + ", " + us(b.CPUPerRequest)
		}
		return notRun
	}))
	row("  delivered/s (first publish → last delivery)", "", tp(func(_ *runResult, t *throughputResult) string { return count(int(t.Rate)) }))
	row("  ratio to baseline by wall clock", targetText, tp(func(r *runResult, t *throughputResult) string {
		b := base(r, t)
		if b == nil || b.Rate == 0 {
			return notRun
		}
		// Shown rounded down, so a ratio printed as the target has met it.
		ratio := math.Floor(100*t.Rate/b.Rate) / 100
		return fmt.Sprintf("%.2f× %s", ratio, verdict(ratio >= target(r)))
	}))
	row("  accepted/s (first publish → last 202)", "", tp(func(_ *runResult, t *throughputResult) string {
		return count(int(float64(t.Published) / t.PublishDur.Seconds()))
	}))
	row("  CPU per delivery: dispatcher + publisher and receiver", "", tp(func(_ *runResult, t *throughputResult) string {
		return us(t.DispatcherCPU) + " + " + us(t.BenchCPU)
	}))
	// Little's law: sends in flight on average, against what the endpoints'
	// maxInFlight allows; at the limit the phase is bound by it, not by CPU.
	row("  send time (dispatcher's histogram), mean; sends in flight on average / allowed", "", tp(func(_ *runResult, t *throughputResult) string {
		if t.SendMean == 0 {
			return notRun
		}
		return fmt.Sprintf("%.2f ms; %.1f / %d", float64(t.SendMean)/float64(time.Millisecond),
			t.Rate*t.SendMean.Seconds(), t.Endpoints*b.cfg.maxInFlight)
	}))
	// The same ratio from CPU cost instead of wall time: what it would be if the
	// baseline and the dispatcher had had the same cores, whatever else ran.
	cpuTarget := ""
	if cpuVerdict {
		cpuTarget = "same"
	}
	row("  ratio to baseline by CPU cost (load-independent estimate)", cpuTarget, tp(func(r *runResult, t *throughputResult) string {
		b := base(r, t)
		if b == nil || t.DispatcherCPU+t.BenchCPU == 0 {
			return notRun
		}
		ratio := math.Floor(100*float64(b.CPUPerRequest)/float64(t.DispatcherCPU+t.BenchCPU)) / 100
		if !cpuVerdict {
			return fmt.Sprintf("%.2f×", ratio)
		}
		return fmt.Sprintf("%.2f× %s", ratio, verdict(ratio >= target(r)))
	}))
}

// floorRows prints the floor phase: each pass's rate and CPU per delivery, and its
// ratios to the baseline, which bound what the dispatcher's ratios above can reach
// while it stores as much per delivery.
func (b *bench) floorRows(row func(string, string, func(*runResult) string)) {
	if !b.cfg.phases[phaseFloor] {
		return
	}
	row(fmt.Sprintf("floor: the same layouts, plain nats.go calls, no dispatcher, %s deliveries each", count(b.cfg.floorDeliveries)), "", func(r *runResult) string { return "" })
	for _, p := range b.floorPasses() {
		row("  "+p.Name, "", func(r *runResult) string {
			f := floorOf(r, p.Name)
			if f == nil || f.Rate == 0 || f.CPU == 0 || r.Baseline == nil || r.Baseline.Rate == 0 {
				return notRun
			}
			return fmt.Sprintf("%s/s, %s: %.2f× wall, %.2f× CPU", count(int(f.Rate)), us(f.CPU),
				math.Floor(100*f.Rate/r.Baseline.Rate)/100, math.Floor(100*float64(r.Baseline.CPUPerRequest)/float64(f.CPU))/100)
		})
	}
	// Hookline's own phases as a share of the floor of their layout: what its code
	// leaves of what the storage allows.
	row("hookline's phases as a share of the floor of their layout", "", func(r *runResult) string { return "" })
	for _, s := range []struct {
		name, floor string
		get         func(*runResult) *throughputResult
	}{
		{"  batches", floorBatches, func(r *runResult) *throughputResult { return r.Throughput }},
		{"  single events", floorSingles, func(r *runResult) *throughputResult { return r.Single }},
		{"  fan-out 10", floorFan10, func(r *runResult) *throughputResult { return r.Fan10 }},
	} {
		row(s.name, "", func(r *runResult) string {
			t, f := s.get(r), floorOf(r, s.floor)
			if t == nil || f == nil || f.Rate == 0 || t.DispatcherCPU+t.BenchCPU == 0 {
				return notRun
			}
			return fmt.Sprintf("%.0f %% by wall clock, %.0f %% by CPU", 100*t.Rate/f.Rate, 100*float64(f.CPU)/float64(t.DispatcherCPU+t.BenchCPU))
		})
	}
}

// reportPhases prints each run's phases: how long, the cores used, connections.
func reportPhases(out io.Writer, runs []*runResult) {
	fmt.Fprintf(out, "\nphases: duration; cores used on average by the dispatcher + this program (publishers, receivers) + everything else;\n")
	fmt.Fprintf(out, "connections opened to the receiver; load average and dispatcher VmHWM at the end:\n")
	for _, r := range runs {
		for _, p := range r.Phases {
			fmt.Fprintf(out, "  %-8s %-15s %8s  cores %.2f + %.2f + %.2f  conns %-6d load %s  VmHWM %.1f MiB\n", r.Durability, p.Name, secs(p.Took),
				p.CPU.Dispatcher, p.CPU.Self, p.CPU.Others, p.Conns, p.Load, float64(p.HWM)/bytesPerMebibyte)
		}
		if r.Err != nil {
			fmt.Fprintf(out, "  %-8s FAILED: %v\n", r.Durability, r.Err)
		}
	}
}

// reportTimeline prints the worst latency per interval of the latency phases,
// to tell a steady tail from a stall.
func reportTimeline(out io.Writer, runs []*runResult, timeline time.Duration) {
	fmt.Fprintf(out, "\nworst latency of the events sent in each %s of the latency phases:\n", timeline)
	for _, r := range runs {
		for _, l := range []struct {
			name string
			res  *latencyResult
		}{{"latency", r.Latency}, {"control", r.Control}, {"isolation", r.Isolation}} {
			if l.res == nil {
				continue
			}
			parts := make([]string, len(l.res.Timeline))
			for i, d := range l.res.Timeline {
				parts[i] = strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64)
			}
			fmt.Fprintf(out, "  %-8s %-10s %s ms\n", r.Durability, l.name, strings.Join(parts, " "))
		}
	}
}

// reportCounters prints the dispatcher's counters at the end of each run.
func reportCounters(out io.Writer, runs []*runResult) {
	fmt.Fprintf(out, "\ndispatcher counters at the end of each run (from /metrics):\n")
	for _, r := range runs {
		for _, line := range summarizeCounters(r.Counters) {
			fmt.Fprintf(out, "  %-8s %s\n", r.Durability, line)
		}
	}
}

var (
	namespaceLabel = regexp.MustCompile(`namespace="[^"]*",?`)
	fanoutSub      = regexp.MustCompile(`(subscription|endpoint)="fan(10)?-[0-9]+"`)
)

// summarizeCounters drops the namespace label (one per run) and sums the fan-out
// subscriptions (fan-N) and the fan-out-10 subscriptions and endpoints (fan10-N) into one
// line each, so a thousand subscriptions do not print a thousand
// lines each.
func summarizeCounters(lines []string) []string {
	sums := map[string]float64{}
	var order []string
	for _, line := range lines {
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		key := namespaceLabel.ReplaceAllString(line[:i], "")
		key = strings.Replace(key, ",}", "}", 1)
		key = fanoutSub.ReplaceAllString(key, `$1="fan$2-*"`)
		if _, ok := sums[key]; !ok {
			order = append(order, key)
		}
		sums[key] += v
	}
	out := make([]string, len(order))
	for i, k := range order {
		out[i] = k + " " + strconv.FormatFloat(sums[k], 'f', -1, 64)
	}
	return out
}

// count formats n with thousands separators.
func count(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func size(n int) string {
	if n%1024 == 0 {
		return strconv.Itoa(n/1024) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

func us(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + " µs"
}

func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
}
