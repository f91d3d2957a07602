package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/readiness"
)

// FieldOwner is the operator's server-side apply field manager. The dispatcher writes the
// delivery part of status under its own manager; because conditions are a map keyed by
// type, each writer owns its own conditions and neither can undo the other's.
const FieldOwner = "hookline-operator"

// operatorStatus is the part of a status the operator owns: observedGeneration, the Ready,
// Reconciling and Stalled conditions and, for endpoints, the signing schedule. A condition
// it leaves out of an apply is removed, because it was the only owner.
type operatorStatus struct {
	ObservedGeneration int64                     `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition        `json:"conditions,omitempty"`
	Signing            *hooklinev1.SigningStatus `json:"signing,omitempty"`
	// MatchingSubscriptions is an EventType's.
	MatchingSubscriptions *int32 `json:"matchingSubscriptions,omitempty"`
}

func ownedStatus(obj client.Object) operatorStatus {
	var st operatorStatus
	var conds []metav1.Condition
	switch o := obj.(type) {
	case *hooklinev1.WebhookEndpoint:
		st.ObservedGeneration, st.Signing, conds = o.Status.ObservedGeneration, o.Status.Signing, o.Status.Conditions
	case *hooklinev1.Subscription:
		st.ObservedGeneration, conds = o.Status.ObservedGeneration, o.Status.Conditions
	case *hooklinev1.EventType:
		st.ObservedGeneration, st.MatchingSubscriptions, conds = o.Status.ObservedGeneration, o.Status.MatchingSubscriptions, o.Status.Conditions
	}
	for _, t := range readiness.OperatorConditions {
		if c := meta.FindStatusCondition(conds, t); c != nil {
			st.Conditions = append(st.Conditions, *c)
		}
	}
	// The event catalog's warning on a Subscription is the operator's too.
	if _, ok := obj.(*hooklinev1.Subscription); ok {
		if c := meta.FindStatusCondition(conds, hooklinev1.ConditionUnknownEventTypes); c != nil {
			st.Conditions = append(st.Conditions, *c)
		}
	}
	return st
}

// setConditions replaces the operator's conditions in conds with r's.
func setConditions(conds *[]metav1.Condition, r readiness.Result, generation int64) {
	for _, t := range readiness.OperatorConditions {
		if t != hooklinev1.ConditionReady {
			meta.RemoveStatusCondition(conds, t)
		}
	}
	for _, c := range r.Conditions(generation) {
		meta.SetStatusCondition(conds, c)
	}
}

// patchStatus applies the operator's part of obj's status, and writes nothing when that
// part did not change from base, so a reconcile that observes nothing new causes no write
// (and no watch event for everyone else).
func patchStatus(ctx context.Context, c client.Client, obj, base client.Object) error {
	owned := ownedStatus(obj)
	if equality.Semantic.DeepEqual(owned, ownedStatus(base)) {
		return nil
	}
	gvk, err := apiutil.GVKForObject(obj, c.Scheme())
	if err != nil {
		return err
	}
	status, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&owned)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": status}}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(obj.GetNamespace())
	u.SetName(obj.GetName())
	return c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership)
}
