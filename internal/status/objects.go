package status

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

type objKind uint8

const (
	kindEndpoint objKind = iota
	kindSubscription
)

// objects is the reporter's view of endpoints and subscriptions: only what
// status needs (names, UIDs, the enable annotation, the endpoint reference
// and status), so it costs little next to the registry's full objects.
type objects struct {
	cache cache.Cache
}

func newObjects(cfg *rest.Config, namespaces []string) (*objects, error) {
	scheme := runtime.NewScheme()
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	opts := cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&hooklinev1.WebhookEndpoint{}: {Transform: trimEndpoint},
			&hooklinev1.Subscription{}:    {Transform: trimSubscription},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the status cache: %w", err)
	}
	return &objects{cache: c}, nil
}

func trimMeta(o client.Object) {
	enable, ok := o.GetAnnotations()[hooklinev1.AnnotationEnable]
	o.SetAnnotations(nil)
	if ok {
		o.SetAnnotations(map[string]string{hooklinev1.AnnotationEnable: enable})
	}
	o.SetLabels(nil)
	o.SetManagedFields(nil)
	o.SetOwnerReferences(nil)
	o.SetFinalizers(nil)
}

func trimEndpoint(obj any) (any, error) {
	if ep, ok := obj.(*hooklinev1.WebhookEndpoint); ok {
		trimMeta(ep)
		ep.Spec = hooklinev1.WebhookEndpointSpec{}
		ep.Status.Signing = nil
	}
	return obj, nil
}

func trimSubscription(obj any) (any, error) {
	if s, ok := obj.(*hooklinev1.Subscription); ok {
		trimMeta(s)
		s.Spec = hooklinev1.SubscriptionSpec{EndpointRef: s.Spec.EndpointRef}
	}
	return obj, nil
}

// endpoints lists the cached endpoints; they are shared and must not be
// modified.
func (o *objects) endpoints(ctx context.Context) ([]hooklinev1.WebhookEndpoint, error) {
	var l hooklinev1.WebhookEndpointList
	if err := o.cache.List(ctx, &l, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// subscriptions lists the cached subscriptions; they are shared and must not
// be modified.
func (o *objects) subscriptions(ctx context.Context) ([]hooklinev1.Subscription, error) {
	var l hooklinev1.SubscriptionList
	if err := o.cache.List(ctx, &l, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// uid returns the UID of an object, or "" if it is not known.
// cachedUID is uid for an Event being recorded, which has no context of its own:
// the read is of the local cache, so there is no caller's request to cancel.
//
//nolint:contextcheck // Event recording carries no context; the cache read is local.
func (o *objects) cachedUID(kind objKind, ns, name string) string {
	return o.uid(context.Background(), kind, ns, name)
}

func (o *objects) uid(ctx context.Context, kind objKind, ns, name string) string {
	var obj client.Object = &hooklinev1.WebhookEndpoint{}
	if kind == kindSubscription {
		obj = &hooklinev1.Subscription{}
	}
	if err := o.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		return ""
	}
	return string(obj.GetUID())
}
