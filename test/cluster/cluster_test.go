// Package cluster runs hookline scaled out the way issue #12 asks: a
// three-node nats-server cluster (three processes on loopback, each with its
// own ports and store, streams with three replicas), a real kube-apiserver,
// the operator, and three `hookline dispatcher --queue=external` replicas as
// separate processes, delivering to receivers on loopback. Each scenario
// breaks something mid-stream (a NATS node killed or paused, a dispatcher
// killed, all dispatchers restarted one by one) and then checks what the
// receivers saw: no accepted event lost, duplicates only under the same
// webhook-id, the rate-limited endpoint at no more than its rate across the
// replicas, and maxInFlight never exceeded.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/process"
)

// env is everything the scenarios share.
type env struct {
	dir        string
	kube       client.Client
	kubeconfig string
	hookline   string
	nats       []*natsNode
	disp       []*dispatcher
}

type natsNode struct {
	*proc
	port, http int
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

type dispatcher struct {
	*proc
	api string // host:port
}

// natsServerBinary is bin/nats-server-<version of go.mod>, built from the
// module (`make nats-server` builds the same) when it is not there yet.
func natsServerBinary(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
	if err != nil {
		t.Fatalf("finding the nats-server version in go.mod: %v", err)
	}
	bin := filepath.Join(root, "bin", "nats-server-"+strings.TrimSpace(string(out)))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", bin, err, out)
	}
	return bin
}

func setup(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("the cluster suite runs processes for minutes; skipped with -short")
	}
	e := &env{dir: t.TempDir()}
	// HOOKLINE_CLUSTER_LOGS keeps the processes' logs and stores after the
	// run, for reading what happened.
	if d := os.Getenv("HOOKLINE_CLUSTER_LOGS"); d != "" {
		e.dir = d
		if err := os.MkdirAll(d, 0o750); err != nil { //nolint:gosec // a directory the person running the test names
			t.Fatal(err)
		}
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	natsBin := natsServerBinary(t, root)
	e.hookline = filepath.Join(e.dir, "hookline")
	build := exec.Command("go", "build", "-o", e.hookline, "./cmd/hookline") //nolint:gosec // the output path is under the test's own directory
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building hookline: %v\n%s", err, out)
	}

	kenv, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := kenv.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	e.kubeconfig = kenv.Kubeconfig
	if e.kube, err = client.New(kenv.Config, client.Options{Scheme: process.Scheme()}); err != nil {
		t.Fatal(err)
	}

	e.startNATS(t, natsBin)
	startProc(t, e.dir, "operator", e.hookline, "operator", "--kubeconfig", e.kubeconfig,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	for i := range 3 {
		d := &dispatcher{api: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		d.proc = startProc(t, e.dir, fmt.Sprintf("dispatcher-%d", i), e.hookline, e.dispatcherArgs(d.api)...)
		e.disp = append(e.disp, d)
		// One at a time: the first creates the replicated streams, which
		// takes a fresh cluster a while.
		e.waitDispatcher(t, d)
	}
	return e
}

func (e *env) startNATS(t *testing.T, bin string) {
	t.Helper()
	const n = 3
	routes := make([]int, n)
	for i := range n {
		routes[i] = freePort(t)
		e.nats = append(e.nats, &natsNode{port: freePort(t), http: freePort(t)})
	}
	var routeURLs []string
	for _, r := range routes {
		routeURLs = append(routeURLs, fmt.Sprintf("nats-route://127.0.0.1:%d", r))
	}
	for i, nd := range e.nats {
		store := filepath.Join(e.dir, fmt.Sprintf("nats-%d", i))
		conf := filepath.Join(e.dir, fmt.Sprintf("nats-%d.conf", i))
		body := fmt.Sprintf(`server_name: n%d
host: 127.0.0.1
port: %d
http: "127.0.0.1:%d"
jetstream { store_dir: %q }
cluster {
  name: hookline
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, i, nd.port, nd.http, store, routes[i], strings.Join(routeURLs, ", "))
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		nd.proc = startProc(t, e.dir, fmt.Sprintf("nats-%d", i), bin, "-c", conf)
	}
	for _, nd := range e.nats {
		e.waitNATS(t, nd)
	}
}

// waitNATS waits until the node is up and knows the JetStream meta leader.
func (e *env) waitNATS(t *testing.T, nd *natsNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitOK(ctx, nd.proc, fmt.Sprintf("http://127.0.0.1:%d/healthz", nd.http), 60*time.Second); err != nil {
		t.Fatalf("%s: not healthy within 60s: %v; log:\n%s", nd.name, err, nd.logTail(30))
	}
	for ctx.Err() == nil {
		if leader := metaLeader(ctx, nd.http); leader != "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: no JetStream meta leader within 60s; log:\n%s", nd.name, nd.logTail(30))
}

func metaLeader(ctx context.Context, port int) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/jsz", port), nil)
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
	b, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(b, &jsz) != nil {
		return ""
	}
	return jsz.Meta.Leader
}

func (e *env) natsURLs() string {
	var us []string
	for _, nd := range e.nats {
		us = append(us, nd.url())
	}
	return strings.Join(us, ",")
}

// maxRequestTimeout keeps the leases (twice it) short, so deliveries a killed
// replica held come back within seconds.
const maxRequestTimeout = 2 * time.Second

func (e *env) dispatcherArgs(api string) []string {
	return []string{"dispatcher", "--queue=external", "--nats-url", e.natsURLs(), "--nats-replicas", "3",
		"--kubeconfig", e.kubeconfig, "--auth", "none", "--listen", api, "--metrics-listen", "",
		"--allow-cidr", "127.0.0.0/8", "--max-request-timeout", maxRequestTimeout.String(),
		"--status-interval", "1s", "--workers", "16", "--lease-namespace", "default", "--zap-log-level", "debug"}
}

// waitDispatcher waits until the replica is ready. One that exits while
// starting (a cluster still placing its peers refuses new streams) is
// started again, as Kubernetes restarts a crashed container.
func (e *env) waitDispatcher(t *testing.T, d *dispatcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for try := 1; ; try++ {
		err := waitOK(ctx, d.proc, "http://"+d.api+"/readyz", 90*time.Second)
		if err == nil {
			return
		}
		if d.running() || try == 5 || ctx.Err() != nil {
			t.Fatal(err)
		}
		t.Logf("%s exited while starting; starting it again: %v", d.name, err)
		time.Sleep(time.Second)
		d.start(t)
	}
}

// restartDispatcher starts a stopped or killed replica again on its address.
func (e *env) restartDispatcher(t *testing.T, d *dispatcher) {
	t.Helper()
	d.start(t)
	e.waitDispatcher(t, d)
}

func (e *env) restartNATS(t *testing.T, nd *natsNode) {
	t.Helper()
	nd.start(t)
	e.waitNATS(t, nd)
}
