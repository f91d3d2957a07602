// Package e2e runs hookline the way a cluster does, minus containers: a real
// kube-apiserver, etcd and kube-controller-manager, the operator and the dispatcher as
// separate `hookline` processes, CRs applied with kubectl, events published over HTTP by a
// ServiceAccount, and real receivers on loopback that verify every signature.
package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/process"
)

var (
	env       *controlplane.Env
	k8s       client.Client
	hookline  string // the binary under test
	kubectl   string
	workDir   string
	operatorP *proc
	dispP     *proc
	apiURL    string
	// natsAddr is where the dispatcher's embedded queue takes clients, for
	// checks of what it holds.
	natsAddr string
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(90 * time.Second)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	RunSpecs(t, "hookline end to end")
}

var _ = BeforeSuite(func() {
	var err error
	workDir = GinkgoT().TempDir()
	env, err = controlplane.Start(controlplane.Options{ControllerManager: true})
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(env.Config, client.Options{Scheme: process.Scheme()})
	Expect(err).NotTo(HaveOccurred())

	hookline = filepath.Join(workDir, "hookline")
	build := exec.Command("go", "build", "-o", hookline, "./cmd/hookline")
	build.Dir = env.RepoRoot
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	kubectl = filepath.Join(env.RepoRoot, "bin", "k8s", "current", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		kubectl = "kubectl"
	}

	operatorP = startProcess("operator", hookline, "operator", "--kubeconfig", env.Kubeconfig,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	dispP = startDispatcher()
})

var _ = AfterSuite(func() {
	for _, p := range []*proc{dispP, operatorP} {
		if p != nil {
			p.stop()
		}
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// startDispatcher runs `hookline dispatcher` on a fixed data directory, so a restart after a
// kill reopens the same queue, and waits until it is ready.
func startDispatcher() *proc {
	if apiURL == "" {
		apiURL = "http://" + freeAddr()
		natsAddr = freeAddr()
	}
	p := startProcess("dispatcher", hookline, "dispatcher", "--kubeconfig", env.Kubeconfig,
		"--listen", apiURL[len("http://"):], "--metrics-listen", "", "--nats-listen", natsAddr,
		"--data-dir", filepath.Join(workDir, "queue"), "--allow-cidr", "127.0.0.0/8",
		"--max-request-timeout", "10s", "--status-interval", "1s", "--suspended-hold", "1s")
	Eventually(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return httpGetOK(ctx, apiURL+"/readyz")
	}).Should(Succeed(), "dispatcher not ready; log: %s", p.logPath)
	return p
}

func kubectlApply(ns, manifest string) {
	cmd := exec.Command(kubectl, "--kubeconfig", env.Kubeconfig, "apply", "-n", ns, "-f", "-")
	cmd.Stdin = stringsReader(manifest)
	out, err := cmd.CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "kubectl apply: %s", out)
}

func kubectlOut(args ...string) string {
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "kubectl %v: %s", args, out)
	return string(out)
}
