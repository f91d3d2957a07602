package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/secretrefs"
)

// Field indexes let a change to one object find the objects that refer to it without
// listing the namespace.
const (
	indexSubscriptionEndpoint = "spec.endpointRef.name"
	indexEndpointSecrets      = "hookline.io/secret-refs"
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
