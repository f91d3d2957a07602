package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/signing"
)

// cluster is a real kube-apiserver and etcd with hookline's CRDs. No operator runs: the
// benchmark writes each endpoint's labelled signing Secret itself, as the operator
// would, so the dispatcher is the only hookline process measured.
type cluster struct {
	env *controlplane.Env
	c   client.Client
}

func startCluster() (*cluster, error) {
	env, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		_ = env.Stop()
		return nil, err
	}
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		_ = env.Stop()
		return nil, err
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &cluster{env: env, c: c}, nil
}

func (k *cluster) stop() error { return k.env.Stop() }

func (k *cluster) namespace(ctx context.Context, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := k.c.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("creating a namespace: %w", err)
	}
	return ns.Name, nil
}

// endpointSpec is what the benchmark varies between its endpoints.
type endpointSpec struct {
	name        string
	url         string
	timeout     time.Duration // 0: the default
	maxInFlight int32
}

// createEndpoint creates the WebhookEndpoint and its signing Secret, and returns the
// signing secret for the receiver to verify with.
func (k *cluster) createEndpoint(ctx context.Context, ns string, s endpointSpec) (string, error) {
	ep := &hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.name},
		Spec: hooklinev1.WebhookEndpointSpec{
			URL:               s.url,
			AllowInsecureHTTP: true,
			Limits:            &hooklinev1.EndpointLimits{MaxInFlight: ptr.To(s.maxInFlight)},
		},
	}
	if s.timeout > 0 {
		ep.Spec.Limits.Timeout = hooklinev1.DurationOf(s.timeout)
	}
	if err := k.c.Create(ctx, ep); err != nil {
		return "", fmt.Errorf("creating WebhookEndpoint %s/%s: %w", ns, s.name, err)
	}
	secret, err := signing.GenerateSecret()
	if err != nil {
		return "", err
	}
	keys := signing.KeySet{Current: signing.Key{ID: signing.NewKeyID(), Secret: secret, CreatedAt: time.Now().UTC()}}
	sec := registry.SigningSecret(ns, s.name, keys)
	if err := k.c.Create(ctx, &sec); err != nil {
		return "", fmt.Errorf("creating the signing Secret of %s/%s: %w", ns, s.name, err)
	}
	return secret, nil
}

func subscription(ns, name, endpoint string, eventTypes []string, format hooklinev1.PayloadFormat) *hooklinev1.Subscription {
	s := &hooklinev1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: hooklinev1.SubscriptionSpec{
			EndpointRef: hooklinev1.EndpointRef{Name: endpoint},
			EventTypes:  eventTypes,
		},
	}
	if format != "" {
		s.Spec.Payload = &hooklinev1.Payload{Format: format}
	}
	return s
}

func (k *cluster) createSubscription(ctx context.Context, s *hooklinev1.Subscription) error {
	if err := k.c.Create(ctx, s); err != nil {
		return fmt.Errorf("creating Subscription %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// createSubscriptions creates subs with a few requests in flight, as a GitOps tool
// applying a directory would.
func (k *cluster) createSubscriptions(ctx context.Context, subs []*hooklinev1.Subscription, workers int) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan *hooklinev1.Subscription)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				if err := k.createSubscription(ctx, s); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, s := range subs {
		if ctx.Err() != nil {
			break
		}
		next <- s
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// deleteSubscriptions deletes the Subscriptions of ns labelled key=value in one
// request.
func (k *cluster) deleteSubscriptions(ctx context.Context, ns, key, value string) error {
	return k.c.DeleteAllOf(ctx, &hooklinev1.Subscription{}, client.InNamespace(ns), client.MatchingLabels{key: value})
}

func (k *cluster) deleteSubscription(ctx context.Context, ns, name string) error {
	s := &hooklinev1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	return client.IgnoreNotFound(k.c.Delete(ctx, s))
}
