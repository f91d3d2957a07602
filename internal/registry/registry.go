package registry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/signing"
	"github.com/hookline/hookline/internal/ssrf"
)

// Options configure a registry; zero values take the defaults.
type Options struct {
	// Namespaces restricts the registry to these namespaces; empty watches all.
	Namespaces []string
	// Pool builds the endpoints' targets; nil makes a new one.
	Pool *delivery.Pool
	// SSRF is the dial policy of every target, from the dispatcher's configuration.
	SSRF   ssrf.Policy
	Clock  clock.PassiveClock
	Logger logr.Logger
	// APIReader reads the Secrets endpoints refer to, which the dispatcher does not
	// watch. It must not be a cache. nil: a client built from the REST config.
	APIReader client.Reader
	// AllowUnlabelledSecrets turns off the rule that a Secret whose value is
	// sent to an endpoint must carry hookline.io/endpoint-secret: "true".
	AllowUnlabelledSecrets bool
	// Proxy is the installation's egress proxy (the dispatcher's --egress-proxy), used
	// by every endpoint without spec.proxy; nil connects directly.
	Proxy *delivery.Proxy
	// BuildConcurrency bounds the endpoints built at once, each of which may read
	// Secrets from the API. Default 8.
	BuildConcurrency int
}

// Registry is the dispatcher's view of endpoints and subscriptions. Lookups are safe for
// concurrent use and take no lock; the slices and entries they return are shared and
// must not be modified.
type Registry struct {
	snap   atomic.Pointer[snapshot]
	synced chan struct{}
	build  builder
	log    logr.Logger

	// Only for a live registry (New).
	live *watcher
	// gone: the subscriptions the live registry saw deleted (gone.go).
	gone *cache.LRUExpireCache
}

// Matching returns the usable, non-suspended subscriptions of namespace ns whose
// patterns match eventType and whose endpoint exists, in name order. Their filters are
// not evaluated: that needs the event's data, which the caller has.
func (r *Registry) Matching(ns, eventType string) []*Subscription {
	v := r.snap.Load().namespaces[ns]
	if v == nil {
		return nil
	}
	return v.matching(eventType)
}

// Endpoint returns the endpoint ns/name, or nil.
func (r *Registry) Endpoint(ns, name string) *Endpoint {
	v := r.snap.Load().namespaces[ns]
	if v == nil {
		return nil
	}
	return v.endpoints[name]
}

// Subscription returns the subscription ns/name, or nil.
func (r *Registry) Subscription(ns, name string) *Subscription {
	v := r.snap.Load().namespaces[ns]
	if v == nil {
		return nil
	}
	return v.subs[name]
}

// SubscriptionByUID returns the subscription of namespace ns with the given UID, or nil:
// a delivery queued for a subscription that was deleted and recreated under the same
// name does not go to the new one.
func (r *Registry) SubscriptionByUID(ns string, uid types.UID) *Subscription {
	v := r.snap.Load().namespaces[ns]
	if v == nil {
		return nil
	}
	return v.byUID[uid]
}

// Subscriptions returns every subscription of ns, usable or not, in name order.
func (r *Registry) Subscriptions(ns string) []*Subscription {
	v := r.snap.Load().namespaces[ns]
	if v == nil {
		return nil
	}
	return v.sorted
}

// Endpoints returns every endpoint of ns, ready or not, in name order.
func (r *Registry) Endpoints(ns string) []*Endpoint {
	v := r.snap.Load().namespaces[ns]
	if v == nil {
		return nil
	}
	eps := make([]*Endpoint, 0, len(v.endpoints))
	for _, e := range v.endpoints {
		eps = append(eps, e)
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].Name < eps[j].Name })
	return eps
}

// Namespaces returns the namespaces that have endpoints or subscriptions, sorted.
func (r *Registry) Namespaces() []string {
	s := r.snap.Load()
	out := make([]string, 0, len(s.namespaces))
	for ns := range s.namespaces {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// Ready reports whether the initial view has been built, for /readyz.
func (r *Registry) Ready() bool {
	select {
	case <-r.synced:
		return true
	default:
		return false
	}
}

// CheckReady is Ready as an error, for the dispatcher's /readyz (server.Check).
func (r *Registry) CheckReady(context.Context) error {
	if !r.Ready() {
		return errors.New("endpoints and subscriptions are still being loaded from the API")
	}
	return nil
}

// WaitForSync returns once the initial view has been built (every object the API had
// at start is visible), or with ctx's error.
func (r *Registry) WaitForSync(ctx context.Context) error {
	select {
	case <-r.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the registry to sync: %w", ctx.Err())
	}
}

// Start runs the registry until ctx ends. For a static registry it only waits.
func (r *Registry) Start(ctx context.Context) error {
	if r.live == nil {
		<-ctx.Done()
		return nil
	}
	return r.live.run(ctx)
}

// OnChange registers fn to be called, from the registry's goroutine, with each namespace
// whose view changed, after the change is visible. It must not block; call it before
// Start.
func (r *Registry) OnChange(fn func(namespace string)) {
	if r.live != nil {
		r.live.onChange = append(r.live.onChange, fn)
	}
}

func newRegistry(opts Options) *Registry {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Pool == nil {
		opts.Pool = delivery.NewPool(delivery.PoolOptions{Clock: opts.Clock})
	}
	r := &Registry{
		synced: make(chan struct{}),
		build:  builder{pool: opts.Pool, ssrf: opts.SSRF, clock: opts.Clock, allowUnlabelled: opts.AllowUnlabelledSecrets, proxy: opts.Proxy},
		log:    opts.Logger,
		gone:   newGoneSet(opts.Clock),
	}
	r.snap.Store(&snapshot{namespaces: map[string]*view{}})
	return r
}

// StaticObjects are the objects a static registry is built from: endpoints, their
// labelled signing Secrets (see SigningSecret), the Secrets they refer to, and
// subscriptions.
type StaticObjects struct {
	Endpoints     []hooklinev1.WebhookEndpoint
	Subscriptions []hooklinev1.Subscription
	Secrets       []corev1.Secret
}

// NewStatic builds a registry from objects, without Kubernetes, with the code the live
// registry uses. It is ready at once and never changes; Start only waits.
func NewStatic(objs StaticObjects, opts Options) (*Registry, error) {
	r := newRegistry(opts)
	secrets := map[types.NamespacedName]*corev1.Secret{}
	for i := range objs.Secrets {
		s := &objs.Secrets[i]
		secrets[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	get := func(_ context.Context, ns, name string) (*corev1.Secret, error) {
		if s := secrets[types.NamespacedName{Namespace: ns, Name: name}]; s != nil {
			return s, nil
		}
		return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
	}
	eps := map[string]map[string]*Endpoint{}
	subs := map[string]map[string]*Subscription{}
	for i := range objs.Endpoints {
		ep := &objs.Endpoints[i]
		signingSecret := secrets[types.NamespacedName{Namespace: ep.Namespace, Name: signing.SecretName(ep.Name)}]
		if signingSecret != nil && signingSecret.Labels[hooklinev1.LabelSigningSecret] != "true" {
			signingSecret = nil // the live registry would not see it either
		}
		e, err := r.build.endpoint(context.Background(), ep, signingSecret, get)
		if err != nil {
			return nil, err
		}
		if eps[ep.Namespace] == nil {
			eps[ep.Namespace] = map[string]*Endpoint{}
		}
		eps[ep.Namespace][ep.Name] = e
	}
	for i := range objs.Subscriptions {
		s := &objs.Subscriptions[i]
		if subs[s.Namespace] == nil {
			subs[s.Namespace] = map[string]*Subscription{}
		}
		subs[s.Namespace][s.Name] = buildSubscription(s)
	}
	snap := &snapshot{namespaces: map[string]*view{}}
	for ns := range eps {
		snap.namespaces[ns] = newView(eps[ns], subs[ns])
	}
	for ns := range subs {
		if snap.namespaces[ns] == nil {
			snap.namespaces[ns] = newView(nil, subs[ns])
		}
	}
	r.snap.Store(snap)
	close(r.synced)
	return r, nil
}

// Close closes the targets of a static registry's endpoints.
func (r *Registry) Close() {
	if r.live != nil {
		return
	}
	for _, v := range r.snap.Load().namespaces {
		for _, e := range v.endpoints {
			e.close()
		}
	}
}

// SigningSecret returns the labelled signing Secret of endpoint ns/name holding keys, as
// the operator writes it, for NewStatic and tests.
func SigningSecret(ns, endpoint string, keys signing.KeySet) corev1.Secret {
	s := corev1.Secret{Type: signing.SecretType, Data: keys.ToSecretData()}
	s.Namespace, s.Name = ns, signing.SecretName(endpoint)
	s.Labels = map[string]string{hooklinev1.LabelSigningSecret: "true", hooklinev1.LabelEndpoint: endpoint}
	return s
}
