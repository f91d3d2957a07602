// Package controlplane starts a real, local Kubernetes control plane for `hookline dev` and
// for the integration and end-to-end tests: etcd and kube-apiserver through
// controller-runtime's envtest, with hookline's CRDs installed, and optionally
// kube-controller-manager for garbage collection and namespace deletion, which envtest alone
// does not do. The binaries are the ones hack/build-control-plane.sh builds into
// bin/k8s/current; nothing is downloaded.
package controlplane

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Env is a running control plane.
type Env struct {
	Config     *rest.Config
	Kubeconfig string // path of an admin kubeconfig file, for kubectl and child processes
	RepoRoot   string

	env     *envtest.Environment
	kcm     *exec.Cmd
	dir     string
	keepDir bool
}

// Options choose what runs.
type Options struct {
	// ControllerManager also runs kube-controller-manager with the garbage collector and
	// the namespace controller.
	ControllerManager bool

	// Dir keeps the kubeconfig and logs; empty uses a temporary directory removed by Stop.
	Dir string

	// APIServerFlags are extra kube-apiserver flags (name without dashes -> value), e.g.
	// endpoint-reconciler-type=none for clients that resolve the kubernetes Service.
	APIServerFlags map[string]string
}

// RepoRoot finds the repository root (the directory holding go.mod) above the working
// directory, so tests and `hookline dev` find bin/ and config/ from any directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// AssetsDir returns the directory with etcd, kube-apiserver and kube-controller-manager:
// $KUBEBUILDER_ASSETS if set, else bin/k8s/current.
func AssetsDir(root string) (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(root, "bin", "k8s", "current")
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		// The developer's own KUBEBUILDER_ASSETS or checkout: a local dev and test tool.
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil { //nolint:gosec // G703: see above
			return "", fmt.Errorf("control plane binary %s not found in %s: run `make control-plane` (hack/build-control-plane.sh) first", b, dir)
		}
	}
	return dir, nil
}

// Start starts the control plane and installs hookline's CRDs.
func Start(opts Options) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := AssetsDir(root)
	if err != nil {
		return nil, err
	}
	e := &Env{RepoRoot: root}
	e.env = &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	for k, v := range opts.APIServerFlags {
		e.env.ControlPlane.GetAPIServer().Configure().Set(k, v)
	}
	if e.Config, err = e.env.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	// Deliveries and reconciles can be bursty in tests; don't let client-side throttling
	// turn into flaky timeouts.
	e.Config.QPS, e.Config.Burst = 200, 400

	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			_ = e.Stop()
			return nil, err
		}
		e.dir, e.keepDir = opts.Dir, true
	} else if e.dir, err = os.MkdirTemp("", "hookline-controlplane-"); err != nil {
		_ = e.Stop()
		return nil, err
	}
	admin, err := e.env.AddUser(envtest.User{Name: "hookline-admin", Groups: []string{"system:masters"}}, e.Config)
	if err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("creating admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		_ = e.Stop()
		return nil, err
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kubeconfig, 0o600); err != nil {
		_ = e.Stop()
		return nil, err
	}
	if opts.ControllerManager {
		if err := e.startControllerManager(assets); err != nil {
			_ = e.Stop()
			return nil, err
		}
	}
	return e, nil
}

func (e *Env) startControllerManager(assets string) error {
	bin := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("kube-controller-manager not found in %s: run `make control-plane`", assets)
	}
	log, err := os.Create(filepath.Join(e.dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	// The binary from the assets directory checked above (a local dev and test tool); it
	// runs until Stop kills it, not for a caller's request.
	e.kcm = exec.Command(bin, //nolint:gosec,noctx // G204 and noctx: see above
		"--kubeconfig="+e.Kubeconfig,
		"--authentication-kubeconfig="+e.Kubeconfig,
		"--authorization-kubeconfig="+e.Kubeconfig,
		"--controllers=garbagecollector,namespace",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		// The namespace controller re-checks namespaces every 5 minutes by default; tests
		// want deletion to finish promptly.
		"--namespace-sync-period=10s",
		"--concurrent-gc-syncs=5",
	)
	e.kcm.Stdout, e.kcm.Stderr = log, log
	if err := e.kcm.Start(); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	return nil
}

// ControllerManagerLog is the path of kube-controller-manager's log, for failure reports.
func (e *Env) ControllerManagerLog() string {
	return filepath.Join(e.dir, "kube-controller-manager.log")
}

// Stop stops everything Start started.
func (e *Env) Stop() error {
	var errs []error
	if e.kcm != nil && e.kcm.Process != nil {
		_ = e.kcm.Process.Kill()
		_, _ = e.kcm.Process.Wait()
	}
	if e.env != nil {
		errs = append(errs, e.env.Stop())
	}
	if e.dir != "" && !e.keepDir {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}
