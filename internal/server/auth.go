package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

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
	// RetryAfter, on an unauthenticated decision, says the client has failed
	// too often and may try again after it (429).
	RetryAfter time.Duration
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
	DefaultAuthCacheTTL         = 10 * time.Second
	DefaultAuthCacheEntries     = 10_000
	DefaultNegativeCacheTTL     = 5 * time.Second
	DefaultMaxConcurrentReviews = 8
	DefaultFailureBurst         = 10
	DefaultFailureRefill        = 6 * time.Second
	// reviewWait is the longest a request waits for a review slot before it
	// gets a 503.
	reviewWait = 5 * time.Second
	// maxBudgetClients bounds the client addresses whose failures are counted.
	maxBudgetClients = 10_000
)

// KubernetesAuthorizerOptions tune a KubernetesAuthorizer; zero values take the defaults.
type KubernetesAuthorizerOptions struct {
	// TTL is how long a positive answer is reused. A revoked token or
	// RoleBinding keeps working for up to this long.
	TTL time.Duration
	// MaxEntries bounds each cache: tokens that authenticated, tokens that did
	// not, and access decisions. Only tokens the API server authenticated
	// enter the first and the last, so invalid tokens cannot evict valid ones.
	MaxEntries int
	// NegativeTTL is how long a token the API server refused is refused
	// without asking again.
	NegativeTTL time.Duration
	// MaxConcurrentReviews bounds the TokenReviews and SubjectAccessReviews
	// in flight at once.
	MaxConcurrentReviews int
	// FailureBurst failed authentications are allowed per client address at
	// once, and one more every FailureRefill; past them the client gets 429
	// with Retry-After and nothing is reviewed.
	FailureBurst  int
	FailureRefill time.Duration
	// Audience, when set, is the audience a token must be issued for: it is
	// checked in the token before any review, and by the TokenReview.
	// Projected ServiceAccount tokens with this audience are then the only
	// ones accepted, so a token stolen from the dispatcher is useless against
	// the API server and the API server's own tokens are useless here.
	Audience string
	Clock    clock.PassiveClock
}

// KubernetesAuthorizer authenticates the bearer token with a TokenReview and
// authorises the user with a SubjectAccessReview for the request's Access in
// the namespace, so every right is ordinary RBAC. It protects the API server
// from the clients: a token that cannot be a valid ServiceAccount token is
// refused without a review, reviews are bounded in number at once, a refused
// token is remembered briefly, and an address that keeps failing gets 429
// until its budget refills. Answers for valid tokens are cached per token
// hash (the token itself is never kept) for a short TTL, and concurrent
// requests with the same token share one lookup.
//
// The dispatcher needs create on tokenreviews (authentication.k8s.io) and
// subjectaccessreviews (authorization.k8s.io).
type KubernetesAuthorizer struct {
	client kubernetes.Interface
	opts   KubernetesAuthorizerOptions

	users     *expiringMap[tokenHash, authenticationv1.UserInfo] // tokens that authenticated
	rejected  *expiringMap[tokenHash, string]                    // tokens that did not, with the reason
	decisions *expiringMap[authKey, Decision]
	budget    *failureBudget
	reviews   chan struct{} // review slots
	calls     singleflight.Group
}

type tokenHash [sha256.Size]byte

type authKey struct {
	token     tokenHash
	namespace string
	access    Access
}

// NewKubernetesAuthorizer returns an authorizer that asks the API server through client.
func NewKubernetesAuthorizer(client kubernetes.Interface, opts KubernetesAuthorizerOptions) *KubernetesAuthorizer {
	if opts.TTL <= 0 {
		opts.TTL = DefaultAuthCacheTTL
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultAuthCacheEntries
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = DefaultNegativeCacheTTL
	}
	if opts.MaxConcurrentReviews <= 0 {
		opts.MaxConcurrentReviews = DefaultMaxConcurrentReviews
	}
	if opts.FailureBurst <= 0 {
		opts.FailureBurst = DefaultFailureBurst
	}
	if opts.FailureRefill <= 0 {
		opts.FailureRefill = DefaultFailureRefill
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &KubernetesAuthorizer{
		client: client, opts: opts,
		users:     newExpiringMap[tokenHash, authenticationv1.UserInfo](opts.MaxEntries),
		rejected:  newExpiringMap[tokenHash, string](opts.MaxEntries),
		decisions: newExpiringMap[authKey, Decision](opts.MaxEntries),
		budget:    newFailureBudget(opts.FailureBurst, opts.FailureRefill, maxBudgetClients),
		reviews:   make(chan struct{}, opts.MaxConcurrentReviews),
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

// remoteIP is the address part of r.RemoteAddr.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (a *KubernetesAuthorizer) Authorize(ctx context.Context, r *http.Request, namespace string, access Access) (Decision, error) {
	token := bearerToken(r)
	if token == "" {
		return Decision{Reason: "send a ServiceAccount token in the Authorization header: \"Authorization: Bearer <token>\" (in a pod, the token is in /var/run/secrets/kubernetes.io/serviceaccount/token)"}, nil
	}
	h := tokenHash(sha256.Sum256([]byte(token)))
	now := a.opts.Clock.Now()
	user, known := a.users.get(h, now)
	if !known {
		client := remoteIP(r)
		if wait := a.budget.wait(client, now); wait > 0 {
			return Decision{RetryAfter: wait, Reason: "too many failed authentications from this address; send a valid ServiceAccount token after the Retry-After delay"}, nil
		}
		reason, err := a.authenticate(ctx, token, h, now)
		if err != nil {
			return Decision{}, err
		}
		if reason != "" {
			a.budget.fail(client, now)
			return Decision{Reason: reason}, nil
		}
		if user, known = a.users.get(h, now); !known {
			return Decision{}, errors.New("a token that authenticated was not remembered; retry")
		}
	}
	return a.authorize(ctx, h, user, namespace, access, now)
}

// authenticate finds out whether token is valid: from the negative cache,
// from its shape, or from a TokenReview. It returns why it is not, or "" and
// remembers the user.
func (a *KubernetesAuthorizer) authenticate(ctx context.Context, token string, h tokenHash, now time.Time) (string, error) {
	if reason, ok := a.rejected.get(h, now); ok {
		return reason, nil
	}
	exp, reason := checkTokenShape(token, now, a.opts.Audience)
	if reason != "" {
		a.rejected.put(h, reason, now.Add(a.opts.NegativeTTL), now)
		return reason, nil
	}
	v, err, _ := a.calls.Do("token:"+string(h[:]), func() (any, error) {
		// The lookup is shared, so one caller giving up must not fail the others.
		return a.reviewToken(context.WithoutCancel(ctx), token, h, exp)
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// acquire takes a review slot, waiting at most reviewWait.
func (a *KubernetesAuthorizer) acquire(ctx context.Context) (func(), error) {
	t := time.NewTimer(reviewWait)
	defer t.Stop()
	select {
	case a.reviews <- struct{}{}:
		return func() { <-a.reviews }, nil
	case <-t.C:
		return nil, fmt.Errorf("all %d review slots stayed busy for %s", cap(a.reviews), reviewWait)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// reviewToken asks the API server about a token, and remembers the answer:
// the user until the token's expiry or the TTL, a refusal for NegativeTTL.
func (a *KubernetesAuthorizer) reviewToken(ctx context.Context, token string, h tokenHash, exp time.Time) (string, error) {
	release, err := a.acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("reviewing a bearer token: %w", err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var audiences []string
	if a.opts.Audience != "" {
		audiences = []string{a.opts.Audience}
	}
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("reviewing a bearer token: %w", err)
	}
	now := a.opts.Clock.Now()
	if !tr.Status.Authenticated {
		reason := "the bearer token is not valid (expired, revoked, or not issued by this cluster); send a current ServiceAccount token"
		a.rejected.put(h, reason, now.Add(a.opts.NegativeTTL), now)
		return reason, nil
	}
	expires := now.Add(a.opts.TTL)
	if !exp.IsZero() && exp.Before(expires) {
		expires = exp
	}
	a.users.put(h, tr.Status.User, expires, now)
	return "", nil
}

// authorize decides access for an authenticated user, from the cache or a
// SubjectAccessReview.
func (a *KubernetesAuthorizer) authorize(ctx context.Context, h tokenHash, u authenticationv1.UserInfo, namespace string, access Access, now time.Time) (Decision, error) {
	key := authKey{token: h, namespace: namespace, access: access}
	if d, ok := a.decisions.get(key, now); ok {
		return d, nil
	}
	v, err, _ := a.calls.Do(fmt.Sprintf("access:%x/%s/%+v", h[:], namespace, access), func() (any, error) {
		release, err := a.acquire(ctx)
		if err != nil {
			return Decision{}, fmt.Errorf("reviewing access of %s to namespace %s: %w", u.Username, namespace, err)
		}
		defer release()
		d, err := a.review(context.WithoutCancel(ctx), u, namespace, access)
		if err == nil {
			a.decisions.put(key, d, a.opts.Clock.Now().Add(a.opts.TTL), a.opts.Clock.Now())
		}
		return d, err
	})
	if err != nil {
		return Decision{}, err
	}
	return v.(Decision), nil
}

func (a *KubernetesAuthorizer) review(ctx context.Context, u authenticationv1.UserInfo, namespace string, access Access) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
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
