package controllers

import (
	"context"
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/match"
	"github.com/hookline/hookline/internal/readiness"
	"github.com/hookline/hookline/internal/registry"
)

// SubscriptionReconciler keeps a Subscription's Ready condition true to its endpoint and
// filter.
type SubscriptionReconciler struct {
	client.Client
}

// +kubebuilder:rbac:groups=hookline.io,resources=subscriptions,verbs=get;list;watch
// +kubebuilder:rbac:groups=hookline.io,resources=subscriptions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=hookline.io,resources=webhookendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups=hookline.io,resources=eventtypes,verbs=get;list;watch

func (r *SubscriptionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var sub hooklinev1.Subscription
	if err := r.Get(ctx, req.NamespacedName, &sub); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := sub.DeepCopy()

	in := readiness.SubscriptionInput{EndpointName: sub.Spec.EndpointRef.Name, Suspended: sub.Spec.Suspend}
	if sub.Spec.Filter != "" {
		_, in.FilterError = match.CompileFilter(sub.Spec.Filter)
	}
	_, _, in.OrderingKeyError = registry.OrderingKey(sub.Spec.Delivery)
	var ep hooklinev1.WebhookEndpoint
	err := r.Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: sub.Spec.EndpointRef.Name}, &ep)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading WebhookEndpoint %s/%s: %w", sub.Namespace, sub.Spec.EndpointRef.Name, err)
	default:
		in.EndpointFound = true
		if c := meta.FindStatusCondition(ep.Status.Conditions, hooklinev1.ConditionReady); c != nil {
			in.EndpointReady = c.Status == "True" && c.ObservedGeneration == ep.Generation
			in.EndpointReason = c.Reason
		}
		if c := meta.FindStatusCondition(ep.Status.Conditions, hooklinev1.ConditionStalled); c != nil {
			in.EndpointStalled = c.Status == "True" && c.ObservedGeneration == ep.Generation
		}
	}

	setConditions(&sub.Status.Conditions, readiness.Subscription(in), sub.Generation)
	if err := r.checkCatalog(ctx, &sub); err != nil {
		return ctrl.Result{}, err
	}
	sub.Status.ObservedGeneration = sub.Generation
	if err := patchStatus(ctx, r.Client, &sub, base); err != nil {
		return ctrl.Result{}, fmt.Errorf("writing status of Subscription %s: %w", req.NamespacedName, err)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager wires the reconciler: Subscriptions, and the WebhookEndpoints they
// refer to, so a Subscription becomes Ready the moment its endpoint appears or becomes ready.
func (r *SubscriptionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&hooklinev1.Subscription{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&hooklinev1.WebhookEndpoint{}, handler.EnqueueRequestsFromMapFunc(referrers(r.Client, &hooklinev1.SubscriptionList{}, indexSubscriptionEndpoint))).
		Watches(&hooklinev1.EventType{}, handler.EnqueueRequestsFromMapFunc(allInNamespace(r.Client, &hooklinev1.SubscriptionList{}))).
		Named("subscription").
		Complete(r)
}

// checkCatalog sets or removes the UnknownEventTypes warning: patterns that match no
// EventType of a namespace that has a catalog are likely a typo.
func (r *SubscriptionReconciler) checkCatalog(ctx context.Context, sub *hooklinev1.Subscription) error {
	var ets hooklinev1.EventTypeList
	if err := r.List(ctx, &ets, client.InNamespace(sub.Namespace)); err != nil {
		return fmt.Errorf("listing EventTypes of %s: %w", sub.Namespace, err)
	}
	types := make([]string, 0, len(ets.Items))
	seen := map[string]bool{}
	for i := range ets.Items {
		if t := ets.Items[i].Spec.Type; !seen[t] {
			seen[t] = true
			types = append(types, t)
		}
	}
	sort.Strings(types)
	if c := unknownEventTypes(sub.Spec.EventTypes, types, sub.Generation); c != nil {
		meta.SetStatusCondition(&sub.Status.Conditions, *c)
	} else {
		meta.RemoveStatusCondition(&sub.Status.Conditions, hooklinev1.ConditionUnknownEventTypes)
	}
	return nil
}
