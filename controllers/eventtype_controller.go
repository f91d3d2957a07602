package controllers

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/catalog"
	"github.com/hookline/hookline/internal/match"
)

// EventTypeReconciler checks an EventType's schema and example, which the API server
// cannot (it does not know JSON Schema), and counts the Subscriptions that match it.
type EventTypeReconciler struct {
	client.Client
}

// +kubebuilder:rbac:groups=hookline.io,resources=eventtypes,verbs=get;list;watch
// +kubebuilder:rbac:groups=hookline.io,resources=eventtypes/status,verbs=get;update;patch

func (r *EventTypeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var et hooklinev1.EventType
	if err := r.Get(ctx, req.NamespacedName, &et); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := et.DeepCopy()

	ready := metav1.Condition{Type: hooklinev1.ConditionReady, Status: metav1.ConditionTrue, Reason: hooklinev1.ReasonValid,
		Message: "The event type is valid.", ObservedGeneration: et.Generation}
	reason, msg := checkEventType(&et.Spec)
	if reason != "" {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, reason, msg
	} else if et.Spec.Schema != nil {
		ready.Message = "The schema compiles"
		if et.Spec.Example != nil {
			ready.Message += " and the example matches it"
		}
		if et.Spec.Enforce {
			ready.Message += "; the dispatcher refuses events of this type whose data does not match."
		} else {
			ready.Message += "; it is not enforced (spec.enforce is false)."
		}
	}
	meta.SetStatusCondition(&et.Status.Conditions, ready)

	var subs hooklinev1.SubscriptionList
	if err := r.List(ctx, &subs, client.InNamespace(et.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing Subscriptions of %s: %w", et.Namespace, err)
	}
	var n int32
	for i := range subs.Items {
		if m, err := match.Compile(subs.Items[i].Spec.EventTypes); err == nil && m.Match(et.Spec.Type) {
			n++
		}
	}
	et.Status.MatchingSubscriptions = &n
	et.Status.ObservedGeneration = et.Generation
	if err := patchStatus(ctx, r.Client, &et, base); err != nil {
		return ctrl.Result{}, fmt.Errorf("writing status of EventType %s: %w", req.NamespacedName, err)
	}
	return ctrl.Result{}, nil
}

// checkEventType returns the reason and message of what is wrong with spec, or "".
func checkEventType(spec *hooklinev1.EventTypeSpec) (reason, message string) {
	if spec.Schema == nil {
		return "", ""
	}
	sch, err := catalog.Compile(spec.Schema.Raw)
	if err != nil {
		return hooklinev1.ReasonInvalidSchema, err.Error() + ". Fix spec.schema; until then the dispatcher does not enforce it."
	}
	if spec.Example == nil {
		return "", ""
	}
	v, err := catalog.Validate(sch, spec.Example.Raw)
	switch {
	case err != nil:
		return hooklinev1.ReasonInvalidExample, fmt.Sprintf("spec.example: %v", err)
	case v != nil:
		return hooklinev1.ReasonInvalidExample, fmt.Sprintf("spec.example does not match spec.schema at spec.example%s: %s (rule %q at %s). Fix the example or the schema.",
			v.Path, v.Message, v.Rule, v.KeywordLocation)
	}
	return "", ""
}

// SetupWithManager wires the reconciler: EventTypes, and the Subscriptions of their
// namespace, whose count each EventType reports.
func (r *EventTypeReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&hooklinev1.EventType{}).
		Watches(&hooklinev1.Subscription{}, handler.EnqueueRequestsFromMapFunc(allInNamespace(r.Client, &hooklinev1.EventTypeList{}))).
		Named("eventtype").
		Complete(r)
}

// allInNamespace maps an object to every object of list's kind in its namespace.
func allInNamespace(c client.Client, list client.ObjectList) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		l := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, l, client.InNamespace(o.GetNamespace())); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing objects of the namespace", "namespace", o.GetNamespace())
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

// unknownEventTypes returns the UnknownEventTypes warning of a Subscription with
// patterns in a namespace whose catalog lists types, or nil when a pattern matches one of
// them or the namespace has no catalog.
func unknownEventTypes(patterns []string, types []string, generation int64) *metav1.Condition {
	if len(types) == 0 {
		return nil
	}
	m, err := match.Compile(patterns)
	if err != nil {
		return nil
	}
	for _, t := range types {
		if m.Match(t) {
			return nil
		}
	}
	shown := types
	if len(shown) > 10 {
		shown = append(shown[:10:10], "...")
	}
	return &metav1.Condition{
		Type: hooklinev1.ConditionUnknownEventTypes, Status: metav1.ConditionTrue, Reason: hooklinev1.ReasonNoMatchingEventType,
		ObservedGeneration: generation,
		Message: fmt.Sprintf("spec.eventTypes %v match none of the %d event types this namespace's catalog lists (%s); check for a typo, or add an EventType. Delivery is not affected.",
			patterns, len(types), strings.Join(shown, ", ")),
	}
}
