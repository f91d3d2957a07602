package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// dispatcherProc is `hookline dispatcher` running as a child process, as it runs in a
// pod: the benchmark measures the real binary, flags and all, and reads its memory
// from /proc.
type dispatcherProc struct {
	cmd      *exec.Cmd
	api      string // host:port of the publishing API
	metrics  string // host:port of /metrics
	nats     string // host:port of the embedded queue (--nats-listen), for deliveryTap
	logPath  string
	profile  string // host:port of profdispatcher's profile control; empty for bin/hookline
	exited   chan struct{}
	waitErr  error
	stopping atomic.Bool
}

func freeLoopbackAddr(ctx context.Context) (string, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startDispatcher starts bin dispatcher with its data and log under dir. profiled: bin
// is profdispatcher, which takes --profile-listen. env (NAME=value) is added to this
// process's environment.
func startDispatcher(ctx context.Context, bin, kubeconfig, durability, dir string, profiled bool, env ...string) (*dispatcherProc, error) {
	api, err := freeLoopbackAddr(ctx)
	if err != nil {
		return nil, err
	}
	metrics, err := freeLoopbackAddr(ctx)
	if err != nil {
		return nil, err
	}
	natsAddr, err := freeLoopbackAddr(ctx)
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	d := &dispatcherProc{api: api, metrics: metrics, nats: natsAddr, logPath: filepath.Join(dir, "dispatcher.log"), exited: make(chan struct{})}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"dispatcher",
		"--auth", "none",
		"--listen", api,
		"--metrics-listen", metrics,
		"--data-dir", dataDir,
		"--allow-cidr", "127.0.0.0/8",
		"--kubeconfig", kubeconfig,
		"--durability", durability,
		"--nats-listen", natsAddr,
	}
	if profiled {
		if d.profile, err = freeLoopbackAddr(ctx); err != nil {
			return nil, err
		}
		args = append(args, "--profile-listen", d.profile)
	}
	if err := d.launch(bin, args, logFile, env...); err != nil {
		return nil, err
	}
	return d, nil
}

// launch starts bin with args and env added to this process's environment, its
// output going to logFile (closed when it exits), and closes d.exited once it has.
func (d *dispatcherProc) launch(bin string, args []string, logFile *os.File, env ...string) error {
	d.cmd = exec.Command(bin, args...)
	if len(env) > 0 {
		d.cmd.Env = append(os.Environ(), env...)
	}
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.cmd.SysProcAttr = childAttrs()
	if err := d.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s dispatcher: %w", bin, err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		logFile.Close()
		close(d.exited)
	}()
	return nil
}

// waitReady polls /readyz until it answers 200, the process exits, or timeout passes.
func (d *dispatcherProc) waitReady(ctx context.Context, timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for time.Now().Before(deadline) {
		if err := d.crashed(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.api+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("dispatcher not ready after %s (last /readyz: %s)", timeout, last)
}

// crashed is non-nil once the process has exited without being asked to.
func (d *dispatcherProc) crashed() error {
	select {
	case <-d.exited:
		if d.stopping.Load() {
			return nil
		}
		return fmt.Errorf("the dispatcher exited on its own (%v); last log lines:\n%s", d.waitErr, d.logTail(20))
	default:
		return nil
	}
}

// peakMemory reads VmHWM (peak resident set) from /proc, in bytes.
func (d *dispatcherProc) peakMemory() (hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != "VmHWM" {
			continue
		}
		fields := strings.Fields(value) // "123456 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected %s line %q", name, sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, err
		}
		hwm = kb << 10
	}
	if hwm == 0 {
		return 0, errors.New("no VmHWM in /proc/<pid>/status")
	}
	return hwm, sc.Err()
}

// eachMetric calls f with each line of the dispatcher's /metrics, within 5 s.
func (d *dispatcherProc) eachMetric(ctx context.Context, f func(line string) error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.metrics+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if err := f(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// scrapeMetrics returns the hookline_* delivery counters of /metrics, one per line.
// It runs when a run ends, cancelled or not, so on its own context.
//
//nolint:contextcheck // see above
func (d *dispatcherProc) scrapeMetrics() ([]string, error) {
	var out []string
	err := d.eachMetric(context.Background(), func(line string) error {
		for _, p := range []string{"hookline_deliveries_total", "hookline_delivery_attempts_total", "hookline_delivery_holds_total", "hookline_deliveries_dead_total", "hookline_endpoint_circuit_open"} {
			if strings.HasPrefix(line, p+"{") {
				out = append(out, line)
			}
		}
		return nil
	})
	return out, err
}

// sendTotals returns the sum and count of hookline_delivery_latency_seconds
// over every endpoint: the time the dispatcher's attempts took, from sending
// to the response. Two readings give a phase's mean send time.
func (d *dispatcherProc) sendTotals(ctx context.Context) (sum, n float64, err error) {
	err = d.eachMetric(ctx, func(line string) error {
		name, rest, ok := strings.Cut(line, "{")
		var into *float64
		switch {
		case !ok:
			return nil
		case name == "hookline_delivery_latency_seconds_sum":
			into = &sum
		case name == "hookline_delivery_latency_seconds_count":
			into = &n
		default:
			return nil
		}
		_, value, _ := strings.Cut(rest, "} ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*into += v
		return nil
	})
	return sum, n, err
}

// startProfile starts a CPU profile written to file; a no-op for bin/hookline.
func (d *dispatcherProc) startProfile(file string) error {
	return d.profileControl("/start?file=" + url.QueryEscape(file))
}

// heapProfile writes a heap profile (after a collection) to file; a no-op for
// bin/hookline.
func (d *dispatcherProc) heapProfile(file string) error {
	return d.profileControl("/heap?file=" + url.QueryEscape(file))
}

// stopProfile stops the CPU profile; a no-op for bin/hookline.
func (d *dispatcherProc) stopProfile() error { return d.profileControl("/stop") }

// profileControl starts or stops the profile, on its own context: the stop
// must run even when the phase it profiled was cancelled.
//
//nolint:contextcheck // see above
func (d *dispatcherProc) profileControl(path string) error {
	if d.profile == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+d.profile+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("profile %s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// stop sends SIGTERM and waits for a clean exit, killing the process after timeout.
func (d *dispatcherProc) stop(timeout time.Duration) error {
	if err := d.crashed(); err != nil {
		return err
	}
	d.stopping.Store(true)
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.waitErr != nil {
			return fmt.Errorf("the dispatcher did not exit cleanly on SIGTERM: %v; last log lines:\n%s", d.waitErr, d.logTail(20))
		}
		return nil
	case <-time.After(timeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("the dispatcher did not stop within %s of SIGTERM and was killed", timeout)
	}
}

// logTail returns the last n lines of the dispatcher's log.
func (d *dispatcherProc) logTail(n int) string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
