package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/hookline/hookline/internal/operator"
)

func init() {
	register("operator", "run the operator (reconciles WebhookEndpoints and Subscriptions)", runOperator)
}

func runOperator(args []string) error {
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	var opts operator.Options
	var namespaces string
	fs.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "address the Prometheus metrics endpoint binds to; 0 disables it")
	fs.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "address the /healthz and /readyz probes bind to")
	fs.BoolVar(&opts.LeaderElect, "leader-elect", false, "elect a leader so only one operator replica reconciles at a time")
	fs.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	fs.StringVar(&namespaces, "watch-namespaces", "", "comma-separated namespaces to watch; empty watches all")
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty uses in-cluster config or $KUBECONFIG")
	zapOpts := operator.BindLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if namespaces != "" {
		opts.Namespaces = strings.Split(namespaces, ",")
	}
	opts.Logger = operator.NewLogger(zapOpts, os.Stderr)
	return operator.Run(opts)
}
