package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/secretrefs"
)

// Field indexes let a change to one object find the objects that refer to it without
// listing the namespace.
const (
	indexSubscriptionEndpoint = "spec.endpointRef.name"
	indexEndpointSecrets      = "hookline.io/secret-refs" //nolint:gosec // G101: an index's name, not a credential
)

// SetupIndexes registers the field indexes the reconcilers use.
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &hooklinev1.Subscription{}, indexSubscriptionEndpoint,
		func(o client.Object) []string {
			return []string{o.(*hooklinev1.Subscription).Spec.EndpointRef.Name}
		}); err != nil {
		return err
	}
	return mgr.GetFieldIndexer().IndexField(ctx, &hooklinev1.WebhookEndpoint{}, indexEndpointSecrets,
		func(o client.Object) []string {
			return secretrefs.Names(&o.(*hooklinev1.WebhookEndpoint).Spec)
		})
}

// referrers maps an object to the objects of list's kind in its namespace that refer to it
// by name through the field index, so a change to a referenced object reconciles them.
func referrers(c client.Client, list client.ObjectList, index string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		l := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, l, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: o.GetName()}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing referring objects", "index", index, "name", o.GetName())
			return nil
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(items))
		for _, item := range items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(item.(client.Object))})
		}
		return reqs
	}
}
