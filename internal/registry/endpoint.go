package registry

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/secretrefs"
	"github.com/hookline/hookline/internal/signing"
	"github.com/hookline/hookline/internal/ssrf"
)

// Endpoint defaults, the API's.
const (
	DefaultMaxInFlight  = hooklinev1.DefaultMaxInFlight
	DefaultDisableAfter = hooklinev1.DefaultDisableAfter
)

// Reasons an endpoint or subscription is not usable, in addition to the API's
// (hooklinev1.ReasonSecretNotFound, ReasonSecretInvalid, ReasonSigningKeyInvalid,
// ReasonInvalidFilter).
const (
	// ReasonSigningKeyPending: the operator has not written the endpoint's signing
	// Secret yet.
	ReasonSigningKeyPending = "SigningKeyPending"
	// ReasonSecretUnreadable: a referenced Secret could not be read (the API failed or
	// the dispatcher lacks permission); it is retried.
	ReasonSecretUnreadable = "SecretUnreadable"
	// ReasonInvalidConfiguration: the spec cannot be turned into a target (bad TLS
	// material, a plain http:// URL that is not allowed, ...).
	ReasonInvalidConfiguration = "InvalidConfiguration"
	// ReasonInvalidPolicy: a Subscription's delivery settings do not parse.
	ReasonInvalidPolicy = "InvalidPolicy"
)

// Limits bound how hard the delivery engine pushes an endpoint.
type Limits struct {
	// Rate is requests per second across all the endpoint's subscriptions; 0 means
	// no limit.
	Rate int
	// Burst is how many requests may go at once above Rate; at least 1 when Rate is set.
	Burst int
	// MaxInFlight caps concurrent requests (DefaultMaxInFlight when unset).
	MaxInFlight int
	// DisableAfter disables an endpoint that has only failed for this long
	// (DefaultDisableAfter when unset).
	DisableAfter time.Duration
}

// Endpoint is a WebhookEndpoint ready to deliver to. Entries are immutable except for
// their signing keys, which change in place on rotation; a spec change yields a new
// entry and closes the old one's Target.
type Endpoint struct {
	Namespace  string
	Name       string
	UID        types.UID
	Generation int64

	// Target sends to the endpoint; nil unless Ready.
	Target *delivery.Target
	// Timeout is the attempt timeout (spec.limits.timeout, delivery.DefaultTimeout when
	// unset); a Subscription's Timeout overrides it.
	Timeout   time.Duration
	Limits    Limits
	Suspended bool

	// Ready is false when the endpoint cannot be delivered to; Reason (CamelCase) and
	// Message (a sentence, never a secret) say why.
	Ready   bool
	Reason  string
	Message string

	clock clock.PassiveClock
	keys  atomic.Pointer[keyState]
}

// keyState is the key set and the signer built from it at some time.
type keyState struct {
	set    signing.KeySet
	signer *signing.Signer
}

// Sign returns the webhook-signature header value for one attempt, signed with every key
// live now: a previous key stops signing the moment it expires, however long ago the
// signer was built. It is the Target's delivery.Signer and returns "" while the endpoint
// has no keys.
func (e *Endpoint) Sign(msgID string, ts time.Time, body []byte) string {
	ks := e.keys.Load()
	if ks == nil {
		return ""
	}
	if exp := ks.signer.Expires(); !exp.IsZero() && !e.clock.Now().Before(exp) {
		ks = e.refreshSigner(ks)
	}
	return ks.signer.Sign(msgID, ts, body)
}

// refreshSigner rebuilds an expired signer. Concurrent callers may both build one; the
// loser's is dropped, and both are equivalent.
func (e *Endpoint) refreshSigner(old *keyState) *keyState {
	signer, err := signing.NewSigner(old.set, e.clock.Now())
	if err != nil {
		// The set was accepted by NewSigner before; dropping a key cannot break it.
		return old
	}
	ks := &keyState{set: old.set, signer: signer}
	if e.keys.CompareAndSwap(old, ks) {
		return ks
	}
	if cur := e.keys.Load(); cur != nil {
		return cur
	}
	return ks
}

// KeyIDs returns the IDs of the keys Sign uses now, current first.
func (e *Endpoint) KeyIDs() []string {
	ks := e.keys.Load()
	if ks == nil {
		return nil
	}
	if exp := ks.signer.Expires(); !exp.IsZero() && !e.clock.Now().Before(exp) {
		ks = e.refreshSigner(ks)
	}
	return ks.signer.KeyIDs()
}

func (e *Endpoint) setKeys(set signing.KeySet) error {
	signer, err := signing.NewSigner(set, e.clock.Now())
	if err != nil {
		return err
	}
	e.keys.Store(&keyState{set: set, signer: signer})
	return nil
}

func (e *Endpoint) close() {
	if e.Target != nil {
		e.Target.Close()
	}
}

// builder turns API objects into entries. It is shared by the live and the static
// registry, so both build entries the same way.
type builder struct {
	pool  *delivery.Pool
	ssrf  ssrf.Policy
	clock clock.PassiveClock
	// allowUnlabelled: Options.AllowUnlabelledSecrets.
	allowUnlabelled bool
}

// secretGetter reads a referenced Secret; a missing one is an apierrors NotFound.
type secretGetter func(ctx context.Context, namespace, name string) (*corev1.Secret, error)

// errTransient marks a build that failed for a reason that may pass by itself (the API
// did not answer): the caller keeps what it had and retries.
type errTransient struct{ err error }

func (e errTransient) Error() string { return e.err.Error() }
func (e errTransient) Unwrap() error { return e.err }

// endpoint builds the entry for ep. signingSecret is the endpoint's labelled signing
// Secret, nil when it does not exist. A problem the user must fix yields an entry that
// is not Ready; only an errTransient is returned as an error.
func (b *builder) endpoint(ctx context.Context, ep *hooklinev1.WebhookEndpoint, signingSecret *corev1.Secret, get secretGetter) (*Endpoint, error) {
	e := &Endpoint{
		Namespace:  ep.Namespace,
		Name:       ep.Name,
		UID:        ep.UID,
		Generation: ep.Generation,
		Suspended:  ep.Spec.Suspend,
		clock:      b.clock,
	}
	notReady := func(reason, format string, args ...any) (*Endpoint, error) {
		e.Ready, e.Reason, e.Message = false, reason, fmt.Sprintf(format, args...)
		return e, nil
	}

	e.Timeout, e.Limits = endpointLimits(ep.Spec.Limits)

	secretName := signing.SecretName(ep.Name)
	switch {
	case signingSecret == nil:
		return notReady(ReasonSigningKeyPending, "Signing Secret %q does not exist yet; the operator creates it once the endpoint's referenced Secrets are in place.", secretName)
	case signingSecret.Labels[hooklinev1.LabelEndpoint] != ep.Name:
		return notReady(hooklinev1.ReasonSigningKeyInvalid, "Secret %q is not labelled %s=%s, so it is not this endpoint's signing Secret.", secretName, hooklinev1.LabelEndpoint, ep.Name)
	}
	set, err := signing.KeySetFromSecretData(signingSecret.Data)
	if err != nil {
		return notReady(hooklinev1.ReasonSigningKeyInvalid, "Signing Secret %q: %v.", secretName, err)
	}
	if err := e.setKeys(set); err != nil {
		return notReady(hooklinev1.ReasonSigningKeyInvalid, "Signing Secret %q: %v.", secretName, err)
	}

	if strings.HasPrefix(ep.Spec.URL, "http://") && !ep.Spec.AllowInsecureHTTP {
		return notReady(ReasonInvalidConfiguration, "spec.url uses plain http://; use https:// or set spec.allowInsecureHTTP: true.")
	}

	cfg, reason, msg, err := b.targetConfig(ctx, ep, get)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		return notReady(reason, "%s", msg)
	}
	cfg.Sign = e.Sign
	if e.Target, err = b.pool.NewTarget(cfg); err != nil {
		// delivery's errors name the endpoint by scheme and host only, never a secret.
		return notReady(ReasonInvalidConfiguration, "%v.", err)
	}
	e.Ready, e.Reason, e.Message = true, hooklinev1.ReasonReady, "The endpoint is ready for deliveries."
	return e, nil
}

// targetConfig resolves the Secrets ep refers to. A problem the user must fix comes back
// as reason and message.
func (b *builder) targetConfig(ctx context.Context, ep *hooklinev1.WebhookEndpoint, get secretGetter) (cfg delivery.TargetConfig, reason, msg string, err error) {
	secrets := map[string]*corev1.Secret{}
	var problems, notOptedIn []string
	notOptedInRefs := 0
	for _, ref := range secretrefs.Endpoint(&ep.Spec) {
		if ref.Field == "spec.signing.secretRef" {
			continue // mirrored into the signing Secret by the operator
		}
		s, read := secrets[ref.Secret]
		if !read {
			s, err = get(ctx, ep.Namespace, ref.Secret)
			switch {
			case apierrors.IsNotFound(err):
				s = nil
			case err != nil:
				return cfg, "", "", errTransient{fmt.Errorf("reading Secret %s/%s for %s: %w", ep.Namespace, ref.Secret, ref.Field, err)}
			}
			secrets[ref.Secret] = s
		}
		if s == nil {
			reason = hooklinev1.ReasonSecretNotFound
			problems = append(problems, fmt.Sprintf("%s refers to Secret %q, which does not exist", ref.Field, ref.Secret))
			continue
		}
		// The operator refuses these too; the dispatcher checks again so that
		// a Secret's value reaches an endpoint only if the Secret opted in.
		if ref.SentToEndpoint && !b.allowUnlabelled && !secretrefs.OptedIn(s.Labels) {
			if reason == "" {
				reason = hooklinev1.ReasonSecretNotOptedIn
			}
			problems = append(problems, secretrefs.NotOptedIn(ref))
			notOptedInRefs++
			if !slices.Contains(notOptedIn, ref.Secret) {
				notOptedIn = append(notOptedIn, ref.Secret)
			}
			continue
		}
		for _, k := range ref.Keys {
			if _, ok := s.Data[k]; !ok {
				if reason == "" || reason == hooklinev1.ReasonSecretNotOptedIn {
					reason = hooklinev1.ReasonSecretInvalid
				}
				problems = append(problems, fmt.Sprintf("%s: Secret %q has no key %q", ref.Field, ref.Secret, k))
			}
		}
	}
	if len(problems) > 0 {
		msg := strings.Join(problems, "; ") + "."
		if notOptedInRefs < len(problems) {
			msg += " Create the Secret or fix the reference."
		}
		if len(notOptedIn) > 0 {
			msg += " " + secretrefs.OptInHint(notOptedIn) + "."
		}
		return cfg, reason, msg, nil
	}
	// value reads a text value; `kubectl create secret --from-file` keeps a file's final
	// newline, which is never part of a token and is not allowed in a header.
	value := func(ref hooklinev1.SecretKeyRef) string {
		return strings.TrimRight(string(secrets[ref.Name].Data[ref.Key]), "\r\n")
	}

	spec := &ep.Spec
	cfg = delivery.TargetConfig{URL: spec.URL, SSRF: b.ssrf}
	cfg.Timeout = spec.Limits.GetTimeout()
	if len(spec.Headers) > 0 {
		cfg.Headers = http.Header{}
		for _, h := range spec.Headers {
			v := ""
			if h.Value != nil {
				v = *h.Value
			} else if h.ValueFrom != nil {
				v = value(*h.ValueFrom)
				cfg.SecretHeaderValues = append(cfg.SecretHeaderValues, v)
			}
			cfg.Headers.Add(h.Name, v)
		}
	}
	if a := spec.Auth; a != nil {
		switch {
		case a.APIKey != nil:
			k := &delivery.APIKey{Value: value(a.APIKey.ValueFrom)}
			if a.APIKey.In == hooklinev1.APIKeyInQuery {
				k.QueryParam = a.APIKey.Name
			} else {
				k.Header = a.APIKey.Name
			}
			cfg.Auth.APIKey = k
		case a.Basic != nil:
			s := secrets[a.Basic.Name]
			cfg.Auth.Basic = &delivery.BasicAuth{
				Username: strings.TrimRight(string(s.Data[secretrefs.BasicUsernameKey]), "\r\n"),
				Password: strings.TrimRight(string(s.Data[secretrefs.BasicPasswordKey]), "\r\n"),
			}
		case a.Bearer != nil:
			cfg.Auth.BearerToken = value(*a.Bearer)
			if cfg.Auth.BearerToken == "" {
				return cfg, hooklinev1.ReasonSecretInvalid, fmt.Sprintf("spec.auth.bearer: key %q of Secret %q is empty. Put the token there.", a.Bearer.Key, a.Bearer.Name), nil
			}
		case a.MTLS != nil:
			s := secrets[a.MTLS.Name]
			cfg.Auth.ClientCert = &delivery.ClientCert{CertPEM: s.Data[secretrefs.TLSCertKey], KeyPEM: s.Data[secretrefs.TLSKeyKey]}
		}
	}
	if t := spec.TLS; t != nil {
		cfg.ServerName = t.ServerName
		if t.CA != nil {
			cfg.CABundle = secrets[t.CA.Name].Data[t.CA.Key]
		}
	}
	return cfg, "", "", nil
}

// endpointLimits reads spec.limits with the defaults filled in.
func endpointLimits(l *hooklinev1.EndpointLimits) (timeout time.Duration, lim Limits) {
	return l.GetTimeout(), Limits{
		Rate:         int(l.GetRateLimit()),
		Burst:        int(l.GetBurst()),
		MaxInFlight:  int(l.GetMaxInFlight()),
		DisableAfter: l.GetDisableAfter(),
	}
}
