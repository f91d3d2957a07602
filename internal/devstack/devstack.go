// Package devstack runs hookline's whole pipeline on one machine for `hookline dev`: a
// real control plane when no cluster is configured, the CRDs, the operator, and the
// samples, and tells the user how to look at them.
package devstack

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/app/operator"
	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/process"
)

// Options configure `hookline dev`.
type Options struct {
	Embedded       bool         // always start a local control plane, even when a cluster is configured
	Namespace      string       // where the samples go
	Dir            string       // state directory (kubeconfig, logs); default bin/dev under the repository
	APIListen      string       // the dispatcher's publishing API; default 127.0.0.1:8080
	ReceiverListen string       // the demo receiver; default 127.0.0.1:9000
	LogOptions     *zap.Options // logs go to <Dir>/*.log, keeping the terminal for instructions
	Out            io.Writer    // where the instructions and received deliveries are printed
}

// Run brings the stack up and blocks until ctx ends, then tears down what it started.
func Run(ctx context.Context, opts Options) error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return fmt.Errorf("hookline dev runs from a checkout of the hookline repository: %w", err)
	}
	if opts.Dir == "" {
		opts.Dir = filepath.Join(root, "bin", "dev")
	}
	if opts.Namespace == "" {
		opts.Namespace = "hookline-demo"
	}
	if opts.APIListen == "" {
		opts.APIListen = "127.0.0.1:8080"
	}
	if opts.ReceiverListen == "" {
		opts.ReceiverListen = "127.0.0.1:9000"
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(opts.Dir, "operator.log")
	logFile, err := os.Create(logPath) //nolint:gosec // G304: under the developer's own --dir
	if err != nil {
		return err
	}
	defer logFile.Close()
	if opts.LogOptions == nil {
		opts.LogOptions = &zap.Options{}
	}
	logger := process.NewLogger(opts.LogOptions, logFile)
	ctrl.SetLogger(logger)

	cfg, kubeconfig, stop, err := connect(opts)
	if err != nil {
		return err
	}
	defer stop()

	c, err := client.New(cfg, client.Options{Scheme: process.Scheme()})
	if err != nil {
		return err
	}
	crds, err := ReadManifests(filepath.Join(root, "config", "crd", "bases"))
	if err != nil {
		return err
	}
	if err := Apply(ctx, c, "", crds); err != nil {
		return fmt.Errorf("installing CRDs: %w", err)
	}

	mgr, err := operator.NewManager(cfg, operator.Options{Logger: logger, MetricsAddr: "0", ProbeAddr: "0"})
	if err != nil {
		return err
	}
	mgrErr := make(chan error, 1)
	go func() { mgrErr <- mgr.Start(ctx) }()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}
	if err := client.IgnoreAlreadyExists(c.Create(ctx, ns)); err != nil {
		return fmt.Errorf("creating namespace %s: %w", opts.Namespace, err)
	}
	samples, err := ReadManifests(filepath.Join(root, "config", "samples"))
	if err != nil {
		return err
	}
	// The samples' URLs are example domains; suspending them keeps hookline dev from
	// reaching out of this machine at all (not even a DNS lookup).
	for _, o := range samples {
		if o.GetKind() == "WebhookEndpoint" {
			if err := unstructured.SetNestedField(o.Object, true, "spec", "suspend"); err != nil {
				return err
			}
		}
	}
	if err := Apply(ctx, c, opts.Namespace, samples); err != nil {
		return fmt.Errorf("applying samples: %w", err)
	}
	recvAddr, err := startReceiver(ctx, c, opts, logger)
	if err != nil {
		return err
	}
	if err := Apply(ctx, c, opts.Namespace, demoObjects(recvAddr)); err != nil {
		return fmt.Errorf("creating the demo endpoint: %w", err)
	}
	if err := waitReady(ctx, c, opts.Namespace, 2*time.Minute); err != nil {
		return err
	}
	dispErr, err := startDispatcher(ctx, cfg, opts)
	if err != nil {
		return err
	}
	printInstructions(opts.Out, kubeconfig, opts, logPath)

	select {
	case <-ctx.Done():
		fmt.Fprintln(opts.Out, "\nStopping hookline dev…")
		if err := <-dispErr; err != nil {
			fmt.Fprintf(os.Stderr, "stopping the dispatcher: %v\n", err)
		}
		return <-mgrErr
	case err := <-mgrErr:
		return fmt.Errorf("operator stopped: %w", err)
	case err := <-dispErr:
		return fmt.Errorf("dispatcher stopped: %w", err)
	}
}

// connect uses the configured cluster when one answers, else starts a local control plane.
func connect(opts Options) (*rest.Config, string, func(), error) {
	if !opts.Embedded {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig(); err == nil && reachable(cfg) {
			fmt.Fprintf(opts.Out, "Using the cluster at %s (from your kubeconfig).\n", cfg.Host)
			return cfg, rules.GetDefaultFilename(), func() {}, nil
		}
	}
	fmt.Fprintln(opts.Out, "No cluster configured: starting a local control plane (etcd, kube-apiserver, kube-controller-manager)…")
	env, err := controlplane.Start(controlplane.Options{ControllerManager: true, Dir: opts.Dir})
	if err != nil {
		return nil, "", nil, err
	}
	return env.Config, env.Kubeconfig, func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the control plane: %v\n", err)
		}
	}, nil
}

func reachable(cfg *rest.Config) bool {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 3 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false
	}
	_, err = dc.ServerVersion()
	return err == nil
}

// waitReady waits until every sample endpoint and subscription is Ready.
func waitReady(ctx context.Context, c client.Client, ns string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var eps hooklinev1.WebhookEndpointList
		var subs hooklinev1.SubscriptionList
		notReady := []string{}
		if err := c.List(ctx, &eps, client.InNamespace(ns)); err == nil {
			for _, ep := range eps.Items {
				if !meta.IsStatusConditionTrue(ep.Status.Conditions, hooklinev1.ConditionReady) {
					notReady = append(notReady, "whep/"+ep.Name)
				}
			}
		}
		if err := c.List(ctx, &subs, client.InNamespace(ns)); err == nil {
			for _, s := range subs.Items {
				if !meta.IsStatusConditionTrue(s.Status.Conditions, hooklinev1.ConditionReady) {
					notReady = append(notReady, "whsub/"+s.Name)
				}
			}
		}
		if len(notReady) == 0 && len(eps.Items) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("samples not Ready after %s: %v (see kubectl describe)", timeout, notReady)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// selfCommand is how to run this program from the working directory: the
// binary make dev builds is bin/hookline-dev, not bin/hookline.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "hookline"
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !filepath.IsAbs(rel) && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return rel
		}
	}
	return exe
}

func printInstructions(w io.Writer, kubeconfig string, opts Options, logPath string) {
	fmt.Fprintf(w, `
hookline dev is running: the operator and the dispatcher serve namespace %[2]s. The
endpoint local-receiver delivers to a receiver in this process, which verifies each
delivery's signature and prints it below.

In another terminal:
  export KUBECONFIG=%[1]s
  %[5]s publish --server http://%[3]s -n %[2]s --type invoice.paid --data '{"amount": 1200}'
  kubectl get hookline -n %[2]s                 # endpoints and subscriptions, with health
  %[5]s ui --server http://%[3]s -n %[2]s   # the same in a browser dashboard (docs/dashboard.md)
  kubectl describe whep local-receiver -n %[2]s # conditions, signing key schedule, delivery
  curl -s http://%[3]s/v1/namespaces/%[2]s/subscriptions/local-all/attempts   # the attempt log
  kubectl annotate whep local-receiver -n %[2]s hookline.io/rotate=$(date +%%s)   # rotate the key now

The sample endpoints (billing, orders, partner) point at example domains, so hookline dev
suspends them: their events wait in the queue. To see retries, make the receiver fail:
  kubectl patch whep local-receiver -n %[2]s --type merge -p '{"spec":{"url":"http://127.0.0.1:9/"}}' 

Logs: %[4]s
Press Ctrl-C to stop.

Deliveries received:
`, kubeconfig, opts.Namespace, opts.APIListen, filepath.Dir(logPath), selfCommand())
}
