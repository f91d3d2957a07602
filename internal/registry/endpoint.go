package registry

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/readiness"
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
	ReasonInvalidConfiguration = hooklinev1.ReasonInvalidConfiguration
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
	// proxy: Options.Proxy, for endpoints without spec.proxy.
	proxy *delivery.Proxy
}

// secretGetter reads a referenced Secret; a missing one is an apierrors NotFound.
type secretGetter func(ctx context.Context, namespace, name string) (*corev1.Secret, error)

// transientError marks a build that failed for a reason that may pass by itself (the API
// did not answer): the caller keeps what it had and retries.
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

// endpoint builds the entry for ep. signingSecret is the endpoint's labelled signing
// Secret, nil when it does not exist. A problem the user must fix yields an entry that
// is not Ready; only an transientError is returned as an error.
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
		r := readiness.TargetRefused(err)
		return notReady(r.Reason, "%s", r.Message)
	}
	e.Ready, e.Reason, e.Message = true, hooklinev1.ReasonReady, "The endpoint is ready for deliveries."
	return e, nil
}

// targetConfig resolves the Secrets ep refers to. A problem the user must fix comes back
// as reason and message.
func (b *builder) targetConfig(ctx context.Context, ep *hooklinev1.WebhookEndpoint, get secretGetter) (cfg delivery.TargetConfig, reason, msg string, err error) {
	secrets := map[string]*corev1.Secret{}
	var refs []secretrefs.Ref
	for _, ref := range secretrefs.Endpoint(&ep.Spec) {
		if ref.Field == "spec.signing.secretRef" {
			continue // mirrored into the signing Secret by the operator
		}
		refs = append(refs, ref)
		if _, read := secrets[ref.Secret]; read {
			continue
		}
		s, err := get(ctx, ep.Namespace, ref.Secret)
		switch {
		case apierrors.IsNotFound(err):
			s = nil
		case err != nil:
			return cfg, "", "", transientError{fmt.Errorf("reading Secret %s/%s for %s: %w", ep.Namespace, ref.Secret, ref.Field, err)}
		}
		secrets[ref.Secret] = s
	}
	problems := readiness.SecretProblems(refs, secrets, b.allowUnlabelled)
	if len(problems) == 0 {
		cfg, problems = TargetConfig(&ep.Spec, secrets)
	}
	if len(problems) > 0 {
		r := readiness.Endpoint(readiness.EndpointInput{SecretProblems: problems})
		return cfg, r.Reason, r.Message, nil
	}
	cfg.SSRF = b.ssrf
	if ep.Spec.Proxy == nil {
		cfg.Proxy = b.proxy
	}
	return cfg, "", "", nil
}

// TargetConfig resolves an endpoint's spec into what delivery sends, reading values from
// secrets (by name; every Secret the spec refers to, with the keys it needs). The
// dispatcher and the operator both call it, and both then ask delivery (NewTarget,
// CheckTarget) whether it can be sent, so they agree on what a deliverable endpoint is.
// cfg.SSRF is left unset. It expects readiness.SecretProblems to have found nothing.
func TargetConfig(spec *hooklinev1.WebhookEndpointSpec, secrets map[string]*corev1.Secret) (cfg delivery.TargetConfig, problems []readiness.SecretProblem) {
	// value reads a text value; `kubectl create secret --from-file` keeps a file's final
	// newline, which is never part of a token and is not allowed in a header.
	value := func(ref hooklinev1.SecretKeyRef) string {
		return strings.TrimRight(string(secrets[ref.Name].Data[ref.Key]), "\r\n")
	}

	cfg = delivery.TargetConfig{URL: spec.URL, Timeout: spec.Limits.GetTimeout()}
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
				return cfg, []readiness.SecretProblem{{Field: "spec.auth.bearer", Secret: a.Bearer.Name, Key: a.Bearer.Key, Detail: "is empty; put the token there"}}
			}
		case a.MTLS != nil:
			s := secrets[a.MTLS.Name]
			cfg.Auth.ClientCert = &delivery.ClientCert{CertPEM: s.Data[secretrefs.TLSCertKey], KeyPEM: s.Data[secretrefs.TLSKeyKey]}
		case a.OAuth2 != nil:
			o := a.OAuth2
			cfg.Auth.OAuth2 = &delivery.OAuth2{
				TokenURL: o.TokenURL, ClientID: o.ClientID, ClientSecret: value(o.ClientSecret),
				Scopes: o.Scopes, Audience: o.Audience, Params: o.Params,
			}
			if cfg.Auth.OAuth2.ClientSecret == "" {
				return cfg, []readiness.SecretProblem{{Field: "spec.auth.oauth2.clientSecret", Secret: o.ClientSecret.Name, Key: o.ClientSecret.Key, Detail: "is empty; put the client secret there"}}
			}
		}
	}
	if p := spec.Proxy; p != nil && p.URL != "" {
		// The CRD checks the URL; delivery refuses one that is not scheme://host:port.
		u, _ := url.Parse(p.URL)
		cfg.Proxy = &delivery.Proxy{URL: u}
	}
	if t := spec.TLS; t != nil {
		cfg.ServerName = t.ServerName
		if t.CA != nil {
			cfg.CABundle = secrets[t.CA.Name].Data[t.CA.Key]
		}
	}
	return cfg, nil
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
