//go:build gitops

// Package gitops runs hookline under the real Flux controllers: a real kube-apiserver and
// etcd, source-, kustomize- and helm-controller as host processes (built by
// hack/build-flux.sh), a Git repository served on loopback by git-http-backend, a Helm
// repository served on loopback, and the hookline operator and dispatcher as processes. It
// checks the health contract GitOps relies on: a sync waits for the operator, fails fast on
// a broken object, and changes in Git reach the cluster and the deliveries.
package gitops

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/process"
)

const (
	fluxNamespace   = "flux-system"
	tenantNamespace = "payments" // the Kustomizations' targetNamespace in testdata/flux
)

var (
	env         *controlplane.Env
	k8s         client.Client
	workDir     string
	hookline    string // the binary under test
	helm        string
	fluxBin     string
	fluxProcs   []*proc
	operatorP   *proc
	dispatcherP *proc
	apiURL      string
	gitSrv      *gitServer
	platform    *repo
)

func TestGitOps(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(3 * time.Minute)
	SetDefaultEventuallyPollingInterval(500 * time.Millisecond)
	RunSpecs(t, "hookline under Flux")
}

// findFlux returns the directory hack/build-flux.sh fills: $FLUX_BIN, else bin/flux-current.
func findFlux(root string) string {
	dir := os.Getenv("FLUX_BIN")
	if dir == "" {
		dir = filepath.Join(root, "bin", "flux-current")
	}
	for _, b := range []string{"source-controller", "kustomize-controller", "helm-controller", "crds"} {
		_, err := os.Stat(filepath.Join(dir, b)) //nolint:gosec // G703: the developer's own FLUX_BIN or bin/, by design
		Expect(err).NotTo(HaveOccurred(), "%s not found in %s: run `make flux` (hack/build-flux.sh) first", b, dir)
	}
	return dir
}

var _ = BeforeSuite(func() {
	var err error
	workDir = GinkgoT().TempDir()
	env, err = controlplane.Start(controlplane.Options{
		// On loopback the API server cannot publish its address as the kubernetes Service's
		// endpoints; nothing here needs them.
		APIServerFlags: map[string]string{"endpoint-reconciler-type": "none"},
	})
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(env.Config, client.Options{Scheme: process.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	fluxBin = findFlux(env.RepoRoot)
	helm = filepath.Join(env.RepoRoot, "bin", "helm")
	_, err = os.Stat(helm)
	Expect(err).NotTo(HaveOccurred(), "bin/helm not found: run `make helm`")
	_, err = envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{filepath.Join(fluxBin, "crds")}, ErrorIfPathMissing: true})
	Expect(err).NotTo(HaveOccurred())
	for _, ns := range []string{fluxNamespace, tenantNamespace} {
		Expect(k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}

	hookline = filepath.Join(workDir, "hookline")
	build := exec.Command("go", "build", "-o", hookline, "./cmd/hookline")
	build.Dir = env.RepoRoot
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))

	startFlux()
	gitRoot := filepath.Join(workDir, "git")
	Expect(os.MkdirAll(gitRoot, 0o755)).To(Succeed())
	gitSrv = newGitServer(gitRoot)
	platform = gitSrv.newRepo("platform")
	// The operator and the dispatcher start in the first test, after Flux has been shown to
	// wait for them.
})

var _ = AfterSuite(func() {
	dispatcherP.stop()
	operatorP.stop()
	for _, p := range fluxProcs {
		p.stop()
	}
	if gitSrv != nil {
		gitSrv.srv.Close()
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// startFlux runs the three controllers on loopback addresses, watching every namespace, and
// waits for their readiness endpoints.
func startFlux() {
	fluxEnv := []string{"KUBECONFIG=" + env.Kubeconfig, "RUNTIME_NAMESPACE=" + fluxNamespace}
	storage := freeAddr()
	storageDir := filepath.Join(workDir, "storage")
	Expect(os.MkdirAll(storageDir, 0o755)).To(Succeed()) // source-controller refuses a missing one
	type controller struct {
		name string
		args []string
	}
	for _, c := range []controller{
		{"source-controller", []string{"--storage-path=" + storageDir,
			"--storage-addr=" + storage, "--storage-adv-addr=" + storage}},
		{"kustomize-controller", nil},
		{"helm-controller", nil},
	} {
		health := freeAddr()
		args := append([]string{"--metrics-addr=" + freeAddr(), "--health-addr=" + health,
			"--events-addr=", "--enable-leader-election=false", "--log-level=info"}, c.args...)
		p := startProcess(c.name, fluxEnv, filepath.Join(fluxBin, c.name), args...)
		fluxProcs = append(fluxProcs, p)
		p.waitReady("http://" + health + "/readyz")
	}
}

func startOperator() *proc {
	return startProcess("operator", nil, hookline, "operator", "--kubeconfig", env.Kubeconfig,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
}

func startDispatcher() *proc {
	apiURL = "http://" + freeAddr()
	p := startProcess("dispatcher", nil, hookline, "dispatcher", "--kubeconfig", env.Kubeconfig,
		"--listen", apiURL[len("http://"):], "--metrics-listen", "", "--nats-listen", freeAddr(),
		"--data-dir", filepath.Join(workDir, "queue"), "--allow-cidr", "127.0.0.0/8",
		"--max-request-timeout", "10s", "--status-interval", "1s")
	p.waitReady(apiURL + "/readyz")
	return p
}
