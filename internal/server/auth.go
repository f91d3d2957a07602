package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// The RBAC rule that grants publishing: verb create on events.hookline.io.
const (
	ResourceEvents = "events"
	VerbPublish    = "create"
)

// Access is what a request asks to do, as an RBAC rule on a hookline.io
// resource in the request's namespace: Kubernetes decides it with a
// SubjectAccessReview, so every right is granted by ordinary Roles.
type Access struct {
	Verb        string
	Resource    string
	Subresource string
	// Name is the object the request is about, if any.
	Name string
}

// Publish is the access publishing events takes.
var Publish = Access{Verb: VerbPublish, Resource: ResourceEvents}

// purpose words the access for a refusal: "<user> may not <purpose> namespace x".
func (a Access) purpose() string {
	if a.Verb == VerbPublish && a.Resource == ResourceEvents && a.Subresource == "" {
		return "publish events to"
	}
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	return fmt.Sprintf("%s %s.%s in", a.Verb, res, hooklinev1.GroupVersion.Group)
}

// describe words the access as RBAC's rule, for refusal messages.
func (a Access) describe() string {
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	return fmt.Sprintf("{apiGroups: [%s], resources: [%s], verbs: [%s]}", hooklinev1.GroupVersion.Group, res, a.Verb)
}

// Decision is an Authorizer's answer.
type Decision struct {
	// Authenticated is false when credentials are missing or invalid (401).
	Authenticated bool
	// Allowed is whether the caller may publish to the namespace (403 when not).
	Allowed bool
	// User names the caller, for logs.
	User string
	// Reason is a sentence for the caller when the request is refused; it never
	// contains a credential.
	Reason string
}

// Authorizer decides whether a request may publish events to a namespace. An error means
// no decision could be made (the API server did not answer); the request gets a 503.
type Authorizer interface {
	Authorize(ctx context.Context, r *http.Request, namespace string, access Access) (Decision, error)
}

// AllowAll lets every request publish everywhere. It is for local development and
// benchmarks only.
type AllowAll struct{}

func (AllowAll) Authorize(context.Context, *http.Request, string, Access) (Decision, error) {
	return Decision{Authenticated: true, Allowed: true, User: "anonymous"}, nil
}

// Defaults of KubernetesAuthorizer.
const (
	DefaultAuthCacheTTL     = 10 * time.Second
	DefaultAuthCacheEntries = 10_000
)

// KubernetesAuthorizerOptions tune a KubernetesAuthorizer; zero values take the defaults.
type KubernetesAuthorizerOptions struct {
	// TTL is how long an answer, positive or negative, is reused. A revoked token or
	// RoleBinding keeps working for up to this long.
	TTL time.Duration
	// MaxEntries bounds the cache, which producers can grow with invalid tokens.
	MaxEntries int
	// Audiences, when set, are the audiences a token must be issued for (TokenReview's
	// spec.audiences); empty accepts the API server's default audience.
	Audiences []string
	Clock     clock.PassiveClock
}

// KubernetesAuthorizer authenticates the bearer token with a TokenReview and authorises
// the user with a SubjectAccessReview for verb create on events.hookline.io in the
// namespace, so publishing rights are ordinary RBAC. Answers are cached per token and
// namespace for a short TTL, so the API server is not asked on every request, and
// concurrent requests with the same token share one lookup.
//
// The dispatcher needs create on tokenreviews (authentication.k8s.io) and
// subjectaccessreviews (authorization.k8s.io).
type KubernetesAuthorizer struct {
	client kubernetes.Interface
	opts   KubernetesAuthorizerOptions

	mu       sync.Mutex
	cache    map[authKey]authEntry
	inflight map[authKey]*authCall
}

type authKey struct {
	token     [sha256.Size]byte // the token itself is not kept
	namespace string
	access    Access
}

type authEntry struct {
	d       Decision
	expires time.Time
}

type authCall struct {
	done chan struct{}
	d    Decision
	err  error
}

// NewKubernetesAuthorizer returns an authorizer that asks the API server through client.
func NewKubernetesAuthorizer(client kubernetes.Interface, opts KubernetesAuthorizerOptions) *KubernetesAuthorizer {
	if opts.TTL <= 0 {
		opts.TTL = DefaultAuthCacheTTL
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultAuthCacheEntries
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &KubernetesAuthorizer{client: client, opts: opts, cache: map[authKey]authEntry{}, inflight: map[authKey]*authCall{}}
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

func (a *KubernetesAuthorizer) Authorize(ctx context.Context, r *http.Request, namespace string, access Access) (Decision, error) {
	token := bearerToken(r)
	if token == "" {
		return Decision{Reason: "send a ServiceAccount token in the Authorization header: \"Authorization: Bearer <token>\" (in a pod, the token is in /var/run/secrets/kubernetes.io/serviceaccount/token)"}, nil
	}
	key := authKey{token: sha256.Sum256([]byte(token)), namespace: namespace, access: access}
	now := a.opts.Clock.Now()

	a.mu.Lock()
	if e, ok := a.cache[key]; ok && now.Before(e.expires) {
		a.mu.Unlock()
		return e.d, nil
	}
	if c, ok := a.inflight[key]; ok {
		a.mu.Unlock()
		select {
		case <-c.done:
			return c.d, c.err
		case <-ctx.Done():
			return Decision{}, ctx.Err()
		}
	}
	c := &authCall{done: make(chan struct{})}
	a.inflight[key] = c
	a.mu.Unlock()

	// The lookup is shared, so one caller giving up must not fail the others.
	c.d, c.err = a.review(context.WithoutCancel(ctx), token, namespace, access)

	a.mu.Lock()
	delete(a.inflight, key)
	if c.err == nil {
		a.store(key, authEntry{d: c.d, expires: a.opts.Clock.Now().Add(a.opts.TTL)}, now)
	}
	a.mu.Unlock()
	close(c.done)
	return c.d, c.err
}

// store adds an entry, making room first: expired entries go, and if the cache is still
// full, arbitrary ones (Go's map order is random). Called with a.mu held.
func (a *KubernetesAuthorizer) store(key authKey, e authEntry, now time.Time) {
	if len(a.cache) >= a.opts.MaxEntries {
		for k, old := range a.cache {
			if !now.Before(old.expires) {
				delete(a.cache, k)
			}
		}
		for k := range a.cache {
			if len(a.cache) < a.opts.MaxEntries*9/10 {
				break
			}
			delete(a.cache, k)
		}
	}
	a.cache[key] = e
}

func (a *KubernetesAuthorizer) review(ctx context.Context, token, namespace string, access Access) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.opts.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return Decision{}, fmt.Errorf("reviewing a bearer token: %w", err)
	}
	if !tr.Status.Authenticated {
		return Decision{Reason: "the bearer token is not valid (expired, revoked, or not issued by this cluster); send a current ServiceAccount token"}, nil
	}
	u := tr.Status.User
	extra := make(map[string]authorizationv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   u.Username,
			UID:    u.UID,
			Groups: u.Groups,
			Extra:  extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace:   namespace,
				Verb:        access.Verb,
				Group:       hooklinev1.GroupVersion.Group,
				Resource:    access.Resource,
				Subresource: access.Subresource,
				Name:        access.Name,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return Decision{}, fmt.Errorf("reviewing access of %s to namespace %s: %w", u.Username, namespace, err)
	}
	d := Decision{Authenticated: true, Allowed: sar.Status.Allowed, User: u.Username}
	if !d.Allowed {
		d.Reason = fmt.Sprintf("%s may not %s namespace %q. That needs RBAC permission there: a Role in %q with the rule %s, bound to it by a RoleBinding",
			u.Username, access.purpose(), namespace, namespace, access.describe())
		if sar.Status.Reason != "" {
			d.Reason += " (the API server said: " + sar.Status.Reason + ")"
		}
	}
	return d, nil
}
