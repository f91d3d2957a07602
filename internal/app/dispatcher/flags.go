package dispatcher

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/process"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/server"
)

// Flags are the dispatcher's command-line flags. `hookline dispatcher` and the benchmark's
// profiling build bind the same set, so they cannot drift apart.
type Flags struct {
	cfg                                   Config
	mode, durability, namespaces, kubecfg string
	allow, deny                           stringList
	requireOptIn                          bool
	groupDeliveries                       bool
	natsReplicas                          int
	log                                   *zap.Options
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// BindFlags registers the dispatcher's flags on fs.
func BindFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	c := &f.cfg
	fs.StringVar(&c.Listen, "listen", ":8080", "address of the publishing and admin API")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", "", "PEM certificate of the API (with --tls-key-file): serve HTTPS, reloading the files when they change, e.g. a mounted kubernetes.io/tls Secret")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", "", "PEM private key of the API's certificate (with --tls-cert-file)")
	fs.StringVar(&c.UIListen, "ui-listen", "", "address where the dispatcher serves the dashboard (the pages of hookline ui) to users an authenticating proxy in front of it has signed in; each request must carry the user's bearer token, which every call is made with; empty: off (see docs/dashboard.md)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", ":9090", "address of the Prometheus metrics endpoint; empty disables it")
	fs.StringVar(&f.mode, "queue", "embedded", "embedded: a NATS JetStream server in this process, storing in --data-dir (one replica); external: a JetStream cluster at --nats-url (any number of replicas)")
	fs.StringVar(&c.Queue.DataDir, "data-dir", "/var/lib/hookline", "where the embedded queue stores events (a persistent volume)")
	fs.StringVar(&c.Queue.URL, "nats-url", "", "URL of the external NATS JetStream cluster, with --queue=external")
	fs.StringVar(&c.Queue.Listen, "nats-listen", "", "with --queue=embedded, a host:port where the embedded NATS server accepts clients (the nats CLI, tests); empty opens no port")
	fs.StringVar(&c.Queue.CredsFile, "nats-creds", "", "the same as --nats-creds-file (older name)")
	bindNATSFlags(fs, f)
	fs.StringVar(&f.durability, "durability", "default", "default: an accepted event survives any process crash (lost only on an OS crash or power loss); always: fsync before accepting (slower, survives power loss)")
	fs.DurationVar(&c.Queue.MaxRequestTimeout, "max-request-timeout", time.Minute, "the longest delivery timeout any endpoint may use; the queue's redelivery time is kept above it")
	c.Queue.Retention, c.Queue.RetentionBytes = queue.DefaultRetention, queue.DefaultRetentionBytes
	fs.Var(retentionFlag{&c.Queue.Retention}, "event-retention", "how long accepted events are kept after fan-out, to list them (GET .../events) and recover subscriptions; 0 keeps none")
	fs.BoolVar(&f.groupDeliveries, "group-deliveries", true, "store a fetched batch's deliveries to one subscription as one message once every dispatcher replica reads such groups (half the queue's work per delivery); false stores each delivery alone, to roll back to a release before groups (docs/upgrading.md)")
	fs.Var(byteSizeFlag{&c.Queue.RetentionBytes}, "event-retention-bytes", "most space retained events take, the oldest going first, e.g. 1GiB; 0: bounded by --event-retention only")
	fs.StringVar(&f.namespaces, "watch-namespaces", "", "comma-separated namespaces to serve; empty serves all")
	fs.StringVar(&c.Auth, "auth", "kubernetes", "kubernetes: publishers authenticate with their ServiceAccount token and need RBAC create on events.hookline.io; none: no authentication (local use only)")
	fs.StringVar(&c.TokenAudience, "token-audience", "", "audience publishers' tokens must be issued for, e.g. hookline (projected ServiceAccount tokens); empty accepts the API server's default audience")
	fs.IntVar(&c.MaxConcurrentReviews, "max-concurrent-reviews", server.DefaultMaxConcurrentReviews, "TokenReviews and SubjectAccessReviews in flight at once")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 256<<10, "largest event body accepted")
	fs.IntVar(&c.MaxJSONDepth, "max-json-depth", server.DefaultMaxJSONDepth, "deepest nesting accepted in an event's data (receivers' parsers commonly stop near 1,000)")
	fs.DurationVar(&c.Limits.ReadHeaderTimeout, "read-header-timeout", server.DefaultReadHeaderTimeout, "time a client has to send a request's headers")
	fs.DurationVar(&c.Limits.BodyReadTimeout, "body-read-timeout", server.DefaultBodyReadTimeout, "time a client has to send a request's body, however fast it comes")
	fs.Int64Var(&c.Limits.MinBodyRate, "min-body-rate", server.DefaultMinBodyRate, "slowest a request body may arrive, in bytes per second after its first 2 seconds; slower bodies get 408 and the connection is closed")
	fs.DurationVar(&c.Limits.WriteTimeout, "write-timeout", server.DefaultWriteTimeout, "time from a request's headers to the end of its response")
	fs.DurationVar(&c.Limits.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "idle keep-alive connections are closed after this long")
	fs.IntVar(&c.Limits.MaxHeaderBytes, "max-header-bytes", server.DefaultMaxHeaderBytes, "largest request line and headers accepted")
	fs.IntVar(&c.Limits.MaxConcurrent, "max-concurrent-requests", server.DefaultMaxConcurrent, "requests served at once; past it requests get 503 with Retry-After")
	fs.IntVar(&c.Limits.MaxConnsPerClient, "max-conns-per-client", server.DefaultMaxConnsPerClient, "open connections from one client IP address; past it connections get 429 with Retry-After")
	fs.BoolVar(&f.requireOptIn, "require-secret-opt-in", true, "use only Secrets labelled hookline.io/endpoint-secret: \"true\" for endpoints' headers, auth and tls (the operator's flag of the same name must agree)")
	fs.Var(&f.allow, "allow-cidr", "destination range to allow despite the SSRF guard (repeatable), e.g. 10.20.0.0/16")
	fs.StringVar(&c.EgressProxy, "egress-proxy", "", "HTTP proxy for every delivery and OAuth2 token request, http://host:port (CONNECT for https:// URLs); endpoints may override it with spec.proxy. Its address passes the SSRF guard (see --egress-proxy-allow-private)")
	fs.StringVar(&c.EgressNoProxy, "egress-no-proxy", "", "destinations reached without --egress-proxy, in the NO_PROXY format: comma-separated host names (subdomains included; .example.com only subdomains), IP addresses or CIDR ranges, each optionally :port")
	fs.BoolVar(&c.EgressProxyAllowPrivate, "egress-proxy-allow-private", false, "let the dispatcher connect to --egress-proxy even when its address is in a range the SSRF guard refuses (a proxy inside the cluster)")
	fs.Var(&f.deny, "deny-cidr", "additional destination range to refuse (repeatable), e.g. the cluster's pod and service ranges")
	fs.IntVar(&c.Workers, "workers", 0, "workers taking deliveries off the queue (0: a default for the CPU count)")
	fs.DurationVar(&c.SuspendedHold, "suspended-hold", engine.DefaultSuspendedHold, "how long a delivery of a suspended subscription, or an ordered one to a suspended, not ready or missing endpoint, is put back for before it is looked at again (1s to 1h; each hold is stretched by up to as much again at random); no attempt is spent")
	fs.DurationVar(&c.StatusInterval, "status-interval", 10*time.Second, "least time between two status writes of one WebhookEndpoint or Subscription")
	fs.StringVar(&c.LeaseNamespace, "lease-namespace", "", "namespace of the Lease electing the replica that writes status (default: the pod's namespace; outside a pod this process writes status alone)")
	fs.StringVar(&f.kubecfg, "kubeconfig", "", "kubeconfig file; empty uses in-cluster config or $KUBECONFIG")
	f.log = process.BindLogFlags(fs)
	return f
}

// Config checks the parsed flags, naming the flag at fault, and returns the dispatcher's
// configuration (logging to stderr) and the Kubernetes client configuration.
func (f *Flags) Config() (Config, *rest.Config, error) {
	cfg := f.cfg
	switch f.mode {
	case "embedded":
		cfg.Queue.Embedded = true
	case "external":
		if cfg.Queue.URL == "" {
			return cfg, nil, fmt.Errorf("--queue=external needs --nats-url")
		}
	default:
		return cfg, nil, fmt.Errorf("--queue=%q: choose embedded or external", f.mode)
	}
	var err error
	if cfg.Queue.Replicas, err = streamReplicas(f.mode, f.natsReplicas); err != nil {
		return cfg, nil, err
	}
	switch f.durability {
	case "default":
		cfg.Queue.Sync = queue.SyncDefault
	case "always":
		cfg.Queue.Sync = queue.SyncAlways
	default:
		return cfg, nil, fmt.Errorf("--durability=%q: choose default or always", f.durability)
	}
	if f.namespaces != "" {
		cfg.Namespaces = strings.Split(f.namespaces, ",")
	}
	cfg.AllowCIDRs, cfg.DenyCIDRs = f.allow, f.deny
	cfg.AllowUnlabelledSecrets = !f.requireOptIn
	cfg.Queue.Ungrouped = !f.groupDeliveries
	cfg.Logger = process.NewLogger(f.log, os.Stderr)
	restCfg, err := process.RESTConfig(f.kubecfg)
	if err != nil {
		return cfg, nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return cfg, restCfg, nil
}
