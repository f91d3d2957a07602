package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// QueueMode says where the dispatcher's JetStream queue lives.
type QueueMode string

const (
	// QueueEmbedded runs the NATS server inside the dispatcher, with its file store on a
	// PersistentVolume: one replica, replaced with Recreate so two servers never open the
	// same store.
	QueueEmbedded QueueMode = "embedded"
	// QueueExternal uses an existing NATS JetStream cluster; the dispatcher then keeps no
	// state of its own and scales horizontally.
	QueueExternal QueueMode = "external"
)

// Durability is the embedded queue's fsync policy (the dispatcher's --durability).
type Durability string

const (
	// DurabilityDefault acks after the write reaches the kernel: no acknowledged message
	// is lost when the process dies, only on an OS crash or power loss.
	DurabilityDefault Durability = "default"
	// DurabilityAlways fsyncs every message before acking, at roughly a tenth of the rate.
	DurabilityAlways Durability = "always"
)

// Defaults filled in by Default.
const (
	DefaultNamespace    = "hookline-system"
	DefaultStorageSize  = "10Gi"
	DefaultMaxBodyBytes = 256 << 10
	// DefaultExternalReplicas dispatchers run with the external queue: one can be lost
	// (a node drained, a pod killed) while two keep delivering.
	DefaultExternalReplicas = 3
	// DefaultStreamReplicas copies of each stream survive the loss of one NATS server.
	DefaultStreamReplicas = 3
)

// DefaultResources are the dispatcher container's resources when Settings.Resources is nil:
// no CPU limit (throttling a delivery pipeline only adds latency), a memory limit the Go
// runtime is told about through GOMEMLIMIT.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("512Mi"),
		},
	}
}

// Settings describe the dispatcher the operator runs. They come from the operator's
// --config file (YAML with these keys) and its flags, which override the file; the
// errors of Validate name the flag each setting has.
type Settings struct {
	// Image of the dispatcher; default the operator's own image (one image, one binary).
	Image           string            `json:"image,omitempty"`
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// ImagePullSecrets name Secrets in the dispatcher's namespace that hold the
	// credentials of a private registry (kubernetes.io/dockerconfigjson).
	ImagePullSecrets []string `json:"imagePullSecrets,omitempty"`
	// Namespace the dispatcher runs in; default hookline-system.
	Namespace string `json:"namespace,omitempty"`
	// Replicas of the dispatcher; 0 means 1 with the embedded queue and
	// DefaultExternalReplicas with the external one. More than one needs the external queue.
	Replicas int32 `json:"replicas,omitempty"`
	// Affinity of the dispatcher's pods. nil means, with the external queue, a preference
	// for replicas on different nodes; an empty object sets none.
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// TopologySpreadConstraints of the dispatcher's pods. nil means, with the external
	// queue, replicas spread evenly over zones when the scheduler can (ScheduleAnyway);
	// an empty list sets none.
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	// Resources of the dispatcher container; nil means DefaultResources.
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// Queue is embedded (default) or external.
	Queue QueueMode `json:"queue,omitempty"`
	// Storage is the embedded queue's volume.
	Storage Storage `json:"storage,omitempty"`
	// NATS is the external JetStream cluster.
	NATS NATS `json:"nats,omitempty"`
	// Durability is default or always.
	Durability Durability `json:"durability,omitempty"`
	// WatchNamespaces limits the dispatcher (and its RBAC) to these namespaces; empty
	// means all namespaces, with cluster-wide RBAC.
	WatchNamespaces []string `json:"watchNamespaces,omitempty"`
	// MaxBodyBytes limits a published event's body; default 256 KiB.
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty"`
	// RequireSecretOptIn: WebhookEndpoints may use only Secrets labelled
	// hookline.io/endpoint-secret: "true" for headers, auth and tls. nil means
	// true; false turns the rule off for the operator and the dispatcher.
	RequireSecretOptIn *bool `json:"requireSecretOptIn,omitempty"`
	// TLS, when set, has the dispatcher serve its API over HTTPS.
	TLS *TLS `json:"tls,omitempty"`
	// Egress, when set, sends deliveries through an HTTP proxy (docs/security.md).
	Egress *Egress `json:"egress,omitempty"`
	// Tracing, when set, exports OpenTelemetry spans to an OTLP/HTTP collector.
	Tracing *Tracing `json:"tracing,omitempty"`
	// EventRetention, when set, overrides how long and in how much space accepted
	// events are kept after fan-out.
	EventRetention *EventRetention `json:"eventRetention,omitempty"`
	// Dashboard, when enabled, has the dispatcher serve the dashboard to users an
	// authenticating proxy signs in (docs/dashboard.md).
	Dashboard *Dashboard `json:"dashboard,omitempty"`
	// LogLevel is passed as --zap-log-level when set (debug, info, error, or a number).
	LogLevel string `json:"logLevel,omitempty"`
	// ExtraArgs are appended to the dispatcher's arguments, after the ones derived here,
	// so they can override them.
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// TLS is the publishing API's certificate.
type TLS struct {
	// SecretName is a kubernetes.io/tls Secret in the dispatcher's namespace
	// (tls.crt, tls.key), e.g. one cert-manager issues. It is mounted as
	// files, which the dispatcher reloads when they change.
	SecretName string `json:"secretName"`
}

// Storage is the embedded queue's PersistentVolumeClaim.
type Storage struct {
	// Size requested; default 10Gi.
	Size string `json:"size,omitempty"`
	// Class is the StorageClass; empty uses the cluster's default class.
	Class string `json:"class,omitempty"`
}

// NATS is an external NATS JetStream cluster. The Secrets are in the dispatcher's
// namespace and mounted as files, which the dispatcher reads again on every reconnect: a
// rotated Secret is used without a restart. At most one of CredentialsSecret, UserSecret
// and TokenSecret is set; none connects without authenticating.
type NATS struct {
	URL string `json:"url,omitempty"`
	// Replicas is how many copies the cluster keeps of each of hookline's streams, 1 to
	// 5; default 3, which survives the loss of one NATS server.
	Replicas int32 `json:"replicas,omitempty"`
	// CredentialsSecret names a Secret whose key "creds" is a NATS credentials file (a
	// user JWT and its nkey seed).
	CredentialsSecret string `json:"credentialsSecret,omitempty"`
	// UserSecret names a Secret with keys "username" and "password" (the
	// kubernetes.io/basic-auth layout).
	UserSecret string `json:"userSecret,omitempty"`
	// TokenSecret names a Secret whose key "token" is an authorization token.
	TokenSecret string `json:"tokenSecret,omitempty"`
	// TLS, when set, connects over TLS.
	TLS *NATSTLS `json:"tls,omitempty"`
}

// NATSTLS secures the connection to the NATS cluster.
type NATSTLS struct {
	// CASecret names a Secret whose key "ca.crt" holds the authority that signs the NATS
	// servers' certificates; empty trusts the image's system roots.
	CASecret string `json:"caSecret,omitempty"`
	// ClientSecret names a kubernetes.io/tls Secret (tls.crt, tls.key): the dispatcher's
	// client certificate, for servers that verify clients. cert-manager's Certificate
	// Secrets also carry ca.crt, so one Secret can be both.
	ClientSecret string `json:"clientSecret,omitempty"`
	// ServerName is the name expected in the servers' certificates; empty takes the
	// host of the URL.
	ServerName string `json:"serverName,omitempty"`
}

// LoadFile reads Settings from a YAML file. Unknown keys are errors, so a typo does not
// silently fall back to a default.
func LoadFile(path string) (Settings, error) {
	var s Settings
	data, err := os.ReadFile(path) //nolint:gosec // G304: the path is the operator's own flag, set by whoever installs it
	if err != nil {
		return s, fmt.Errorf("reading dispatcher settings: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return s, fmt.Errorf("reading dispatcher settings from %s: %w", path, err)
	}
	return s, nil
}

// Default returns s with what it leaves unset filled in. operatorImage, the operator's own
// image, is the dispatcher's default image.
func (s Settings) Default(operatorImage string) Settings {
	if s.Image == "" {
		s.Image = operatorImage
	}
	if s.Namespace == "" {
		s.Namespace = DefaultNamespace
	}
	if s.Queue == "" {
		s.Queue = QueueEmbedded
	}
	if s.Replicas == 0 {
		s.Replicas = 1
		if s.Queue == QueueExternal {
			s.Replicas = DefaultExternalReplicas
		}
	}
	if s.Queue == QueueExternal && s.NATS.Replicas == 0 {
		s.NATS.Replicas = DefaultStreamReplicas
	}
	if s.Resources == nil {
		r := DefaultResources()
		s.Resources = &r
	}
	// Only the embedded queue has a volume; a size default in external mode would read as
	// a volume that does not exist.
	if s.Queue == QueueEmbedded && s.Storage.Size == "" {
		s.Storage.Size = DefaultStorageSize
	}
	if s.Durability == "" {
		s.Durability = DurabilityDefault
	}
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s.Dashboard = s.Dashboard.defaulted()
	// One order for the same set, so listing namespaces differently changes nothing.
	if len(s.WatchNamespaces) > 0 {
		ns := append([]string(nil), s.WatchNamespaces...)
		slices.Sort(ns)
		s.WatchNamespaces = slices.Compact(ns)
	}
	return s
}

// Validate checks defaulted Settings. Each problem names the operator flag (or, for the
// settings that only the config file has, the file's key) so the message says what to change.
func (s Settings) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if s.Image == "" {
		bad("no dispatcher image: set --dispatcher-image (the operator's own image, from $HOOKLINE_IMAGE, is the default when set)")
	}
	switch s.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("imagePullPolicy %q: must be Always, IfNotPresent or Never", s.ImagePullPolicy)
	}
	for _, name := range s.ImagePullSecrets {
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			bad("imagePullSecrets: %q: %s; name a Secret in the dispatcher's namespace", name, msg)
		}
	}
	for _, msg := range validation.IsDNS1123Label(s.Namespace) {
		bad("--dispatcher-namespace=%s: %s", s.Namespace, msg)
	}
	if s.TLS != nil {
		for _, msg := range validation.IsDNS1123Subdomain(s.TLS.SecretName) {
			bad("tls.secretName %q: %s; name the kubernetes.io/tls Secret holding the API's certificate", s.TLS.SecretName, msg)
		}
	}
	if s.Replicas < 1 {
		bad("--dispatcher-replicas=%d: must be at least 1", s.Replicas)
	}
	errs = append(errs, s.Egress.problems()...)
	errs = append(errs, s.Tracing.problems()...)
	errs = append(errs, s.EventRetention.problems()...)
	errs = append(errs, s.queueProblems()...)
	errs = append(errs, s.dashboardProblems()...)
	if s.Storage.Class != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.Storage.Class) {
			bad("--dispatcher-storage-class=%s: %s", s.Storage.Class, msg)
		}
	}
	for _, ref := range s.NATS.secretRefs() {
		for _, msg := range validation.IsDNS1123Subdomain(ref.Secret) {
			bad("%s=%s: %s; name a Secret in the dispatcher's namespace", ref.Setting, ref.Secret, msg)
		}
	}
	switch s.Durability {
	case DurabilityDefault, DurabilityAlways:
	default:
		bad("--durability=%s: must be default or always", s.Durability)
	}
	for _, ns := range s.WatchNamespaces {
		for _, msg := range validation.IsDNS1123Label(ns) {
			bad("--watch-namespaces: %q: %s", ns, msg)
		}
	}
	if s.MaxBodyBytes < 0 {
		bad("maxBodyBytes %d: must not be negative", s.MaxBodyBytes)
	}
	if s.LogLevel != "" && !validLogLevel(s.LogLevel) {
		bad("--dispatcher-log-level=%s: must be debug, info, error or a positive number", s.LogLevel)
	}
	if s.Resources != nil {
		for name, limit := range s.Resources.Limits {
			if req, ok := s.Resources.Requests[name]; ok && req.Cmp(limit) > 0 {
				bad("resources: the %s request %s is above its limit %s", name, req.String(), limit.String())
			}
		}
	}
	return errors.Join(errs...)
}

// validLogLevel accepts what the zap flag -zap-log-level accepts.
func validLogLevel(l string) bool {
	switch l {
	case "debug", "info", "error", "panic":
		return true
	}
	n, err := strconv.Atoi(l)
	return err == nil && n > 0
}

// Checksum identifies the settings the dispatcher's pods run with. It goes on the pod
// template, so any change, including one that does not show in the template itself, rolls
// the Deployment. Replicas are left out: scaling must not restart pods.
func (s Settings) Checksum() string {
	s.Replicas = 0
	data, err := json.Marshal(s)
	if err != nil {
		// Settings hold only strings, numbers and quantities.
		panic(fmt.Sprintf("encoding dispatcher settings: %v", err))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:16]
}

// clusterWide says whether the dispatcher watches every namespace.
func (s Settings) clusterWide() bool { return len(s.WatchNamespaces) == 0 }

func (s Settings) watchNamespacesFlag() string { return strings.Join(s.WatchNamespaces, ",") }

// queueProblems checks the settings that depend on the queue mode: replicas,
// the NATS connection and the volume.
func (s Settings) queueProblems() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch s.Queue {
	case QueueEmbedded:
		if s.Replicas > 1 {
			bad("--dispatcher-replicas=%d needs --queue=external: the embedded queue is one pod with its own volume", s.Replicas)
		}
		if s.NATS.URL != "" {
			bad("--nats-url=%s needs --queue=external: with the embedded queue the dispatcher runs its own NATS server", s.NATS.URL)
		}
		for _, ref := range s.NATS.secretRefs() {
			bad("%s=%s needs --queue=external: the embedded queue takes no credentials", ref.Setting, ref.Secret)
		}
		if s.NATS.TLS != nil && s.NATS.TLS.ServerName != "" {
			bad("nats.tls.serverName needs --queue=external: the embedded queue runs in the dispatcher's process")
		}
		if s.NATS.Replicas != 0 {
			bad("nats.replicas=%d needs --queue=external: the embedded server is one node and keeps one copy of each stream", s.NATS.Replicas)
		}
		if q, err := resource.ParseQuantity(s.Storage.Size); err != nil {
			bad("--dispatcher-storage-size=%s: not a quantity such as 10Gi: %v", s.Storage.Size, err)
		} else if q.Sign() <= 0 {
			bad("--dispatcher-storage-size=%s: must be more than zero", s.Storage.Size)
		}
	case QueueExternal:
		if s.NATS.URL == "" {
			bad("--queue=external needs --nats-url: the address of the NATS JetStream cluster")
		}
		if s.Storage.Size != "" {
			bad("--dispatcher-storage-size=%s needs --queue=embedded: with an external queue the dispatcher has no volume", s.Storage.Size)
		}
		if s.NATS.Replicas < 1 || s.NATS.Replicas > 5 {
			bad("nats.replicas=%d: choose 1 to 5 (JetStream keeps at most 5 copies of a stream; 3 survives the loss of one server)", s.NATS.Replicas)
		}
		var auth []string
		for _, ref := range s.NATS.secretRefs() {
			if ref.auth {
				auth = append(auth, ref.Setting)
			}
		}
		if len(auth) > 1 {
			bad("%s: choose one way to authenticate to NATS", strings.Join(auth, " and "))
		}
		if s.NATS.TLS != nil && *s.NATS.TLS == (NATSTLS{}) {
			bad("nats.tls is empty: set caSecret, clientSecret or serverName, or remove it")
		}
		if s.Storage.Class != "" {
			bad("--dispatcher-storage-class=%s needs --queue=embedded: with an external queue the dispatcher has no volume", s.Storage.Class)
		}
	default:
		bad("--queue=%s: must be embedded or external", s.Queue)
	}
	return errs
}
