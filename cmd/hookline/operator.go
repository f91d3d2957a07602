package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/hookline/hookline/internal/app/operator"
	"github.com/hookline/hookline/internal/process"
	"github.com/hookline/hookline/internal/workload"
)

func init() {
	register("operator", "run the operator (reconciles WebhookEndpoints and Subscriptions; with --manage-dispatcher, runs the dispatcher)", runOperator)
}

func runOperator(args []string) error {
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	var opts operator.Options
	var namespaces string
	fs.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "address the Prometheus metrics endpoint binds to; 0 disables it")
	fs.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "address the /healthz and /readyz probes bind to")
	fs.BoolVar(&opts.LeaderElect, "leader-elect", false, "elect a leader so only one operator replica reconciles at a time")
	fs.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	fs.StringVar(&namespaces, "watch-namespaces", "", "comma-separated namespaces to watch (the operator's and the dispatcher's); empty watches all")
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty uses in-cluster config or $KUBECONFIG")
	requireOptIn := fs.Bool("require-secret-opt-in", true, "WebhookEndpoints may use only Secrets labelled hookline.io/endpoint-secret: \"true\" for headers, auth and tls (false turns the rule off for the installation, the dispatcher's too)")
	manage := bindDispatcherFlags(fs)
	zapOpts := process.BindLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if namespaces != "" {
		opts.Namespaces = strings.Split(namespaces, ",")
	}
	s, err := manage.settings(fs, os.Getenv)
	if err != nil {
		return err
	}
	opts.AllowUnlabelledSecrets = secretOptInOff(fs, *requireOptIn, s)
	opts.Dispatcher = s
	opts.Logger = process.NewLogger(zapOpts, os.Stderr)
	return operator.Run(opts)
}

// secretOptInOff decides the installation's one switch for the Secret
// opt-in rule: --require-secret-opt-in, when given, decides for the operator
// and for the dispatcher it runs (written into s); otherwise the settings file
// can turn the rule off for both.
func secretOptInOff(fs *flag.FlagSet, require bool, s *workload.Settings) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "require-secret-opt-in" })
	if s == nil {
		return !require
	}
	if given {
		s.RequireSecretOptIn = &require
		return !require
	}
	return s.RequireSecretOptIn != nil && !*s.RequireSecretOptIn
}

// dispatcherFlags are the operator's settings for the dispatcher it runs. They override
// the --config file one by one: only flags given on the command line count, so a flag's
// default never hides a value from the file.
type dispatcherFlags struct {
	manage       bool
	config       string
	image        string
	replicas     int
	namespace    string
	queue        string
	natsURL      string
	natsCreds    string
	storageSize  string
	storageClass string
	durability   string
	logLevel     string
}

// dispatcherOnlyFlags mean nothing without --manage-dispatcher.
var dispatcherOnlyFlags = []string{"config", "dispatcher-image", "dispatcher-replicas", "dispatcher-namespace", "queue",
	"nats-url", "nats-creds-secret", "dispatcher-storage-size", "dispatcher-storage-class", "durability", "dispatcher-log-level"}

func bindDispatcherFlags(fs *flag.FlagSet) *dispatcherFlags {
	d := &dispatcherFlags{}
	fs.BoolVar(&d.manage, "manage-dispatcher", false, "run the dispatcher as a workload the operator owns and keeps in shape (the kustomize and Helm installs turn this on)")
	fs.StringVar(&d.config, "config", "", "YAML file of dispatcher settings (image, replicas, affinity, topologySpreadConstraints, resources, queue, storage, nats, durability, watchNamespaces, maxBodyBytes, logLevel, extraArgs); flags override it")
	fs.StringVar(&d.image, "dispatcher-image", "", "dispatcher image (default: $HOOKLINE_IMAGE, the operator's own image)")
	fs.IntVar(&d.replicas, "dispatcher-replicas", 0, "dispatcher replicas (default 1); more than one needs --queue=external")
	fs.StringVar(&d.namespace, "dispatcher-namespace", "", "namespace the dispatcher runs in (default: $POD_NAMESPACE, the operator's own, else "+workload.DefaultNamespace+")")
	fs.StringVar(&d.queue, "queue", "", "where the dispatcher's queue lives: embedded (default; one pod with a volume) or external (NATS JetStream at --nats-url)")
	fs.StringVar(&d.natsURL, "nats-url", "", "URL of the external NATS JetStream cluster (--queue=external)")
	fs.StringVar(&d.natsCreds, "nats-creds-secret", "", "Secret in the dispatcher's namespace whose key \""+workload.NATSCredentialsKey+"\" is the NATS credentials file (--queue=external)")
	fs.StringVar(&d.storageSize, "dispatcher-storage-size", "", "size of the embedded queue's volume (default "+workload.DefaultStorageSize+")")
	fs.StringVar(&d.storageClass, "dispatcher-storage-class", "", "StorageClass of the embedded queue's volume (default: the cluster's default class)")
	fs.StringVar(&d.durability, "durability", "", "embedded queue fsync policy: default (acked once written to the OS) or always (fsync every message)")
	fs.StringVar(&d.logLevel, "dispatcher-log-level", "", "dispatcher log level: debug, info, error or a number (default: the dispatcher's own)")
	return d
}

// settings returns the dispatcher settings from the file and the flags given, defaulted
// and validated; nil when the operator does not manage the dispatcher.
func (d *dispatcherFlags) settings(fs *flag.FlagSet, getenv func(string) string) (*workload.Settings, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !d.manage {
		for _, name := range dispatcherOnlyFlags {
			if set[name] {
				return nil, fmt.Errorf("--%s needs --manage-dispatcher: without it the operator does not run the dispatcher", name)
			}
		}
		return nil, nil
	}

	var s workload.Settings
	if d.config != "" {
		var err error
		if s, err = workload.LoadFile(d.config); err != nil {
			return nil, err
		}
	}
	override := map[string]func(){
		"dispatcher-image":         func() { s.Image = d.image },
		"dispatcher-namespace":     func() { s.Namespace = d.namespace },
		"queue":                    func() { s.Queue = workload.QueueMode(d.queue) },
		"nats-url":                 func() { s.NATS.URL = d.natsURL },
		"nats-creds-secret":        func() { s.NATS.CredentialsSecret = d.natsCreds },
		"dispatcher-storage-size":  func() { s.Storage.Size = d.storageSize },
		"dispatcher-storage-class": func() { s.Storage.Class = d.storageClass },
		"durability":               func() { s.Durability = workload.Durability(d.durability) },
		"dispatcher-log-level":     func() { s.LogLevel = d.logLevel },
		"watch-namespaces": func() {
			s.WatchNamespaces = nil
			if ns := fs.Lookup("watch-namespaces").Value.String(); ns != "" {
				s.WatchNamespaces = strings.Split(ns, ",")
			}
		},
	}
	for name, apply := range override {
		if set[name] {
			apply()
		}
	}
	if set["dispatcher-replicas"] {
		if d.replicas < 1 || d.replicas > math.MaxInt32 {
			return nil, fmt.Errorf("--dispatcher-replicas=%d: must be at least 1", d.replicas)
		}
		s.Replicas = int32(d.replicas)
	}
	if s.Namespace == "" {
		s.Namespace = getenv("POD_NAMESPACE")
	}
	s = s.Default(getenv("HOOKLINE_IMAGE"))
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}
