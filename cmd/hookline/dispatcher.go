package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/hookline/hookline/internal/dispatcher"
	"github.com/hookline/hookline/internal/operator"
	"github.com/hookline/hookline/internal/queue"
)

func init() {
	register("dispatcher", "run the dispatcher (publishing API, queue, signed deliveries with retries)", runDispatcher)
}

func runDispatcher(args []string) error {
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	var cfg dispatcher.Config
	var mode, durability, namespaces, kubeconfig string
	var allow, deny stringList
	fs.StringVar(&cfg.Listen, "listen", ":8080", "address of the publishing and admin API")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", ":9090", "address of the Prometheus metrics endpoint; empty disables it")
	fs.StringVar(&mode, "queue", "embedded", "embedded: a NATS JetStream server in this process, storing in --data-dir (one replica); external: a JetStream cluster at --nats-url (any number of replicas)")
	fs.StringVar(&cfg.Queue.DataDir, "data-dir", "/var/lib/hookline", "where the embedded queue stores events (a persistent volume)")
	fs.StringVar(&cfg.Queue.URL, "nats-url", "", "URL of the external NATS JetStream cluster, with --queue=external")
	fs.StringVar(&cfg.Queue.CredsFile, "nats-creds", "", "NATS credentials file for the external cluster")
	fs.StringVar(&durability, "durability", "default", "default: an accepted event survives any process crash (lost only on an OS crash or power loss); always: fsync before accepting (slower, survives power loss)")
	fs.DurationVar(&cfg.Queue.MaxRequestTimeout, "max-request-timeout", time.Minute, "the longest delivery timeout any endpoint may use; the queue's redelivery time is kept above it")
	fs.StringVar(&namespaces, "watch-namespaces", "", "comma-separated namespaces to serve; empty serves all")
	fs.StringVar(&cfg.Auth, "auth", "kubernetes", "kubernetes: publishers authenticate with their ServiceAccount token and need RBAC create on events.hookline.io; none: no authentication (local use only)")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 256<<10, "largest event body accepted")
	fs.Var(&allow, "allow-cidr", "destination range to allow despite the SSRF guard (repeatable), e.g. 10.20.0.0/16")
	fs.Var(&deny, "deny-cidr", "additional destination range to refuse (repeatable), e.g. the cluster's pod and service ranges")
	fs.IntVar(&cfg.Workers, "workers", 0, "workers taking deliveries off the queue (0: a default for the CPU count)")
	fs.DurationVar(&cfg.StatusInterval, "status-interval", 10*time.Second, "least time between two status writes of one WebhookEndpoint or Subscription")
	fs.StringVar(&cfg.LeaseNamespace, "lease-namespace", "", "namespace of the Lease electing the replica that writes status (default: the pod's namespace; outside a pod this process writes status alone)")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file; empty uses in-cluster config or $KUBECONFIG")
	logOpts := operator.BindLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch mode {
	case "embedded":
		cfg.Queue.Embedded = true
	case "external":
		if cfg.Queue.URL == "" {
			return fmt.Errorf("--queue=external needs --nats-url")
		}
	default:
		return fmt.Errorf("--queue=%q: choose embedded or external", mode)
	}
	switch durability {
	case "default":
		cfg.Queue.Sync = queue.SyncDefault
	case "always":
		cfg.Queue.Sync = queue.SyncAlways
	default:
		return fmt.Errorf("--durability=%q: choose default or always", durability)
	}
	if namespaces != "" {
		cfg.Namespaces = strings.Split(namespaces, ",")
	}
	cfg.AllowCIDRs, cfg.DenyCIDRs = allow, deny
	cfg.Logger = operator.NewLogger(logOpts, os.Stderr)
	ctrl.SetLogger(cfg.Logger)
	restCfg, err := operator.RESTConfig(kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	return dispatcher.Run(ctrl.SetupSignalHandler(), restCfg, cfg)
}
