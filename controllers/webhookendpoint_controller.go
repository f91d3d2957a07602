package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/metrics"
	"github.com/hookline/hookline/internal/readiness"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/secretrefs"
	"github.com/hookline/hookline/internal/wakeup"
)

// WebhookEndpointReconciler checks an endpoint's Secret references, keeps its signing keys
// in place and on schedule, and reports both in status.
type WebhookEndpointReconciler struct {
	client.Client
	Clock    clock.WithDelayedExecution
	Recorder events.EventRecorder
	// AllowUnlabelledSecrets turns off the rule that a Secret whose value is
	// sent to the endpoint must carry hookline.io/endpoint-secret: "true"
	// (--require-secret-opt-in=false).
	AllowUnlabelledSecrets bool

	wakeups *wakeup.Scheduler
}

// +kubebuilder:rbac:groups=hookline.io,resources=webhookendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups=hookline.io,resources=webhookendpoints/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func (r *WebhookEndpointReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ep hooklinev1.WebhookEndpoint
	if err := r.Get(ctx, req.NamespacedName, &ep); err != nil {
		if apierrors.IsNotFound(err) {
			// The generated Secret is owned by the endpoint; garbage collection removes it.
			r.wakeups.Forget(req.NamespacedName)
			metrics.ForgetEndpoint(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ep.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	base := ep.DeepCopy()

	problems, userSecrets, err := r.checkSecrets(ctx, &ep)
	if err != nil {
		return ctrl.Result{}, err
	}
	in := readiness.EndpointInput{SecretProblems: problems, Suspended: ep.Spec.Suspend}
	if c := meta.FindStatusCondition(ep.Status.Conditions, hooklinev1.ConditionDisabled); c != nil && c.Status == metav1.ConditionTrue {
		in.Disabled = c
	}
	if len(problems) == 0 {
		// The same resolution and checks as the dispatcher's, so an endpoint it would
		// refuse never shows Ready=True.
		var cfg delivery.TargetConfig
		if cfg, in.SecretProblems = registry.TargetConfig(&ep.Spec, userSecrets); len(in.SecretProblems) == 0 {
			in.TargetError = delivery.CheckTarget(cfg)
		}
		in.SigningError, err = r.reconcileSigningKeys(ctx, &ep, userSecrets)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("reconciling signing keys of WebhookEndpoint %s: %w", req.NamespacedName, err)
		}
	}

	setConditions(&ep.Status.Conditions, readiness.Endpoint(in), ep.Generation)
	ep.Status.ObservedGeneration = ep.Generation
	if err := patchStatus(ctx, r.Client, &ep, base); err != nil {
		return ctrl.Result{}, fmt.Errorf("writing status of WebhookEndpoint %s: %w", req.NamespacedName, err)
	}
	return ctrl.Result{}, nil
}

// checkSecrets verifies every Secret the spec refers to exists and holds the keys it needs.
// It returns the Secrets it read, by name, for the steps that use their values.
func (r *WebhookEndpointReconciler) checkSecrets(ctx context.Context, ep *hooklinev1.WebhookEndpoint) ([]readiness.SecretProblem, map[string]*corev1.Secret, error) {
	refs := secretrefs.Endpoint(&ep.Spec)
	read := map[string]*corev1.Secret{}
	for _, ref := range refs {
		if _, ok := read[ref.Secret]; ok {
			continue
		}
		var secret corev1.Secret
		err := r.Get(ctx, client.ObjectKey{Namespace: ep.Namespace, Name: ref.Secret}, &secret)
		switch {
		case apierrors.IsNotFound(err):
			read[ref.Secret] = nil
		case err != nil:
			return nil, nil, fmt.Errorf("reading Secret %s/%s: %w", ep.Namespace, ref.Secret, err)
		default:
			read[ref.Secret] = &secret
		}
	}
	problems := readiness.SecretProblems(refs, read, r.AllowUnlabelledSecrets)
	for name, s := range read {
		if s == nil {
			delete(read, name)
		}
	}
	return problems, read, nil
}

// disabledChanged passes the dispatcher's status writes that disable or re-enable an
// endpoint: Ready follows its Disabled condition. Its other status writes (counters, every
// few seconds) pass no predicate.
var disabledChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		disabled := func(o client.Object) bool {
			ep, ok := o.(*hooklinev1.WebhookEndpoint)
			return ok && meta.IsStatusConditionTrue(ep.Status.Conditions, hooklinev1.ConditionDisabled)
		}
		return disabled(e.ObjectOld) != disabled(e.ObjectNew)
	},
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// SetupWithManager wires the reconciler: endpoints (spec and annotation changes, which
// carry manual rotation requests, and disables), the generated Secrets they own, the Secrets they refer
// to, and scheduled wake-ups for rotations.
func (r *WebhookEndpointReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.wakeups = wakeup.New(r.Clock)
	return ctrl.NewControllerManagedBy(mgr).
		For(&hooklinev1.WebhookEndpoint{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, disabledChanged))).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(referrers(r.Client, &hooklinev1.WebhookEndpointList{}, indexEndpointSecrets))).
		WatchesRawSource(r.wakeups.Source()).
		Named("webhookendpoint").
		Complete(r)
}
