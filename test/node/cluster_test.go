package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hookline/hookline/api/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// The node's address and the image tag, as hack/lib/node-env.sh and the test set them.
const (
	nodeIP   = "10.213.0.1"
	testTag  = "hookline.local/hookline:node-test"
	stepWait = 3 * time.Minute
)

// cluster is a running node: its state directory, kubeconfig and tools.
type cluster struct {
	root, state string
	kubectlBin  string
	ctrBin      string
	c           client.Client
}

// startNode brings the node up (hack/node-up.sh) and tears it down when the test ends,
// failing the test when the tear-down leaves anything behind.
func startNode(t *testing.T) *cluster {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// Short: unix socket paths under it must stay below 108 bytes.
	state, err := os.MkdirTemp("", "hln-")
	if err != nil {
		t.Fatal(err)
	}
	k := &cluster{
		root: root, state: state,
		kubectlBin: filepath.Join(root, "bin", "k8s", "current", "kubectl"),
		ctrBin:     filepath.Join(root, "bin", "node", "current", "ctr"),
	}
	start := time.Now()
	out, err := run(root, nil, filepath.Join(root, "hack", "node-up.sh"), state)
	t.Cleanup(func() {
		if t.Failed() {
			k.dumpLogs(t)
		}
		begin := time.Now()
		if out, err := run(root, nil, filepath.Join(root, "hack", "node-down.sh"), state); err != nil {
			t.Errorf("tear-down of the node (hack/node-down.sh %s): %v\n%s", state, err, out)
			return
		}
		t.Logf("node torn down in %s", time.Since(begin).Round(time.Second))
		_ = os.RemoveAll(state)
	})
	if err != nil {
		t.Fatalf("bringing up the real node (hack/node-up.sh): %v\n%s", err, out)
	}
	t.Logf("node Ready in %s", time.Since(start).Round(time.Second))
	cfg, err := clientcmd.BuildConfigFromFlags("", k.kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	ctrllog.SetLogger(testr.New(t))
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if k.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *cluster) kubeconfig() string { return filepath.Join(k.state, "kubeconfig") }

// kubectl runs kubectl against the node and returns its output, failing the test on error.
func (k *cluster) kubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, err := k.kubectlErr(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (k *cluster) kubectlErr(stdin []byte, args ...string) (string, error) {
	return run(k.root, stdin, k.kubectlBin, append([]string{"--kubeconfig", k.kubeconfig()}, args...)...)
}

// ctr runs containerd's ctr against the node's containerd, in the CRI's namespace.
func (k *cluster) ctr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(k.root, nil, k.ctrBin, append([]string{"--address", filepath.Join(k.state, "containerd.sock"), "--namespace", "k8s.io"}, args...)...)
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// importImage builds the image as `make image` does and loads it into the node.
func (k *cluster) importImage(t *testing.T) {
	t.Helper()
	archive := filepath.Join(k.state, "hookline.tar")
	start := time.Now()
	if out, err := run(k.root, nil, "go", "run", "./hack/image", "-out", archive, "-tag", testTag, "-version", "node-test", "-commit", "test"); err != nil {
		t.Fatalf("building the image (go run ./hack/image): %v\n%s", err, out)
	}
	k.ctr(t, "images", "import", archive)
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s built and imported in %s; archive %d bytes", testTag, time.Since(start).Round(time.Second), fi.Size())
}

// waitFor polls check every second until it passes or within fails the test with the last
// error.
func waitFor(t *testing.T, what string, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(time.Second)
	}
}

// dumpLogs prints the end of every component's log, for a failed test.
func (k *cluster) dumpLogs(t *testing.T) {
	logs, _ := filepath.Glob(filepath.Join(k.state, "logs", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("--- %s (end)\n%s", filepath.Base(l), b)
	}
	out, _ := k.kubectlErr(nil, "get", "pods", "-A", "-o", "wide")
	t.Logf("--- pods\n%s", out)
	out, _ = k.kubectlErr(nil, "get", "events", "-A", "--sort-by=.lastTimestamp")
	if len(out) > 6000 {
		out = out[len(out)-6000:]
	}
	t.Logf("--- events (end)\n%s", out)
}

func run(dir string, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w", name, err)
	}
	return out.String(), err
}
