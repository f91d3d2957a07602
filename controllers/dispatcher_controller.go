package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/hookline/hookline/internal/workload"
)

// DispatcherReconciler keeps the dispatcher's workload (internal/workload) in the cluster
// exactly as the operator's settings render it.
//
// There is no dispatcher custom resource: the settings are the operator's own, fixed for
// the life of the process, so a settings change is an operator restart. The objects are
// found by their labels (workload.Labels) rather than by owner references, because
// owner references cannot span namespaces (the per-namespace Roles) or point from a
// cluster-scoped object (the ClusterRoles) to a namespaced one, and there is no owner
// whose deletion should take the running dispatcher with it. Every owned kind is watched
// through a label-selected cache, and every event maps to one fixed request, so each
// reconcile applies the whole set: an edit is overwritten (server-side apply, forced) and
// a deleted object is created again.
//
// Labelled objects the settings no longer call for (Roles in a namespace no longer
// watched, a cluster-wide role after switching to per-namespace RBAC, a dispatcher left in
// a previous namespace) are deleted, except the queue's PersistentVolumeClaim: it may hold
// undelivered messages, so it is kept, marked and reported with an Event for a person to
// delete. Turning --manage-dispatcher off leaves everything as it is.
type DispatcherReconciler struct {
	client.Client
	Settings workload.Settings // defaulted and valid
	Recorder events.EventRecorder
	// SecretReader reads the NATS Secrets the settings name (the manager's API reader:
	// its cache may not cover the dispatcher's namespace); nil uses Client.
	SecretReader client.Reader
}

// DispatcherFieldOwner is the server-side apply field manager of the dispatcher's objects.
const DispatcherFieldOwner = "hookline-operator"

// AnnotationRetainedVolume marks a queue volume claim the dispatcher no longer uses and
// the operator keeps, so it is reported once.
const AnnotationRetainedVolume = "hookline.io/retained"

// missingNamespaceRetry is how soon a namespace that does not exist yet is tried again;
// namespaces are not watched, so nothing else would notice it appear.
const missingNamespaceRetry = 30 * time.Second

// The operator needs these to manage the dispatcher's objects. It also holds every
// permission it grants the dispatcher (workload.NamespacedRules are already the
// operator's own; the reviews are added here) rather than `escalate` and `bind` on roles,
// which would let it grant anything at all.
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts;persistentvolumeclaims,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings;clusterroles;clusterrolebindings,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update

// ownedKind is one kind of dispatcher object.
type ownedKind struct {
	kind       string // as in the rendered object's apply configuration
	namespaced bool
	object     func() client.Object
	list       func() client.ObjectList
}

var ownedKinds = []ownedKind{
	{"ServiceAccount", true, func() client.Object { return &corev1.ServiceAccount{} }, func() client.ObjectList { return &corev1.ServiceAccountList{} }},
	{"ClusterRole", false, func() client.Object { return &rbacv1.ClusterRole{} }, func() client.ObjectList { return &rbacv1.ClusterRoleList{} }},
	{"ClusterRoleBinding", false, func() client.Object { return &rbacv1.ClusterRoleBinding{} }, func() client.ObjectList { return &rbacv1.ClusterRoleBindingList{} }},
	{"Role", true, func() client.Object { return &rbacv1.Role{} }, func() client.ObjectList { return &rbacv1.RoleList{} }},
	{"RoleBinding", true, func() client.Object { return &rbacv1.RoleBinding{} }, func() client.ObjectList { return &rbacv1.RoleBindingList{} }},
	{"PersistentVolumeClaim", true, func() client.Object { return &corev1.PersistentVolumeClaim{} }, func() client.ObjectList { return &corev1.PersistentVolumeClaimList{} }},
	{"Service", true, func() client.Object { return &corev1.Service{} }, func() client.ObjectList { return &corev1.ServiceList{} }},
	{"Deployment", true, func() client.Object { return &appsv1.Deployment{} }, func() client.ObjectList { return &appsv1.DeploymentList{} }},
	{"PodDisruptionBudget", true, func() client.Object { return &policyv1.PodDisruptionBudget{} }, func() client.ObjectList { return &policyv1.PodDisruptionBudgetList{} }},
}

// DispatcherCacheByObject is the manager's cache configuration for the kinds the
// dispatcher controller watches: only the labelled objects, in every namespace (also when
// the operator watches only some), so the cache holds none of the cluster's other
// Deployments or Roles and a dispatcher left in another namespace is still found. Any
// other reader of these kinds through the manager's client sees only these objects too.
func DispatcherCacheByObject() map[client.Object]cache.ByObject {
	m := make(map[client.Object]cache.ByObject, len(ownedKinds))
	for _, k := range ownedKinds {
		bo := cache.ByObject{Label: workload.Selector()}
		if k.namespaced {
			bo.Namespaces = map[string]cache.Config{} // empty, not nil: all namespaces
		}
		m[k.object()] = bo
	}
	return m
}

func (r *DispatcherReconciler) request() reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: r.Settings.Namespace, Name: workload.Name}}
}

func (r *DispatcherReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	objs := workload.Render(r.Settings)

	var errs []error
	var result ctrl.Result
	for _, o := range objs.All() {
		kind, ns, name := *o.GetKind(), ptr.Deref(o.GetNamespace(), ""), *o.GetName()
		err := r.Apply(ctx, o, client.FieldOwner(DispatcherFieldOwner), client.ForceOwnership)
		switch {
		case err == nil:
		case kind == "PersistentVolumeClaim" && apierrors.IsInvalid(err):
			// A claim's class cannot change, nor its size shrink (or grow, unless bound and
			// the class allows it). The queue stays where it is; a person decides.
			r.reportVolumeClaim(ctx, ns, name, err)
		case isMissingNamespace(err):
			log.Info("namespace does not exist; will try again", "targetNamespace", ns, "kind", kind, "objectName", name)
			result.RequeueAfter = missingNamespaceRetry
		default:
			errs = append(errs, fmt.Errorf("applying %s %s: %w", kind, objectName(ns, name), err))
		}
	}
	if err := r.removeUnwanted(ctx, objs); err != nil {
		errs = append(errs, err)
	}
	if problem, err := r.reportNATSSecrets(ctx); err != nil {
		errs = append(errs, err)
	} else if problem && result.RequeueAfter == 0 {
		// A Secret the operator's cache does not cover raises no event when it is fixed.
		result.RequeueAfter = missingNamespaceRetry
	}
	if objs.VolumeClaim != nil {
		if err := r.unmarkVolume(ctx, r.Settings.Namespace, workload.VolumeClaimName); err != nil {
			errs = append(errs, err)
		}
	}
	return result, errors.Join(errs...)
}

// removeUnwanted deletes labelled objects the settings no longer render, and keeps (and
// reports) a queue volume claim.
func (r *DispatcherReconciler) removeUnwanted(ctx context.Context, objs workload.Objects) error {
	wanted := map[string]bool{}
	for _, o := range objs.All() {
		wanted[*o.GetKind()+"/"+objectName(ptr.Deref(o.GetNamespace(), ""), *o.GetName())] = true
	}
	var errs []error
	for _, k := range ownedKinds {
		list := k.list()
		if err := r.List(ctx, list, client.MatchingLabelsSelector{Selector: workload.Selector()}); err != nil {
			errs = append(errs, fmt.Errorf("listing %ss of the dispatcher: %w", k.kind, err))
			continue
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, item := range items {
			o := item.(client.Object)
			name := objectName(o.GetNamespace(), o.GetName())
			if wanted[k.kind+"/"+name] || !o.GetDeletionTimestamp().IsZero() {
				continue
			}
			if pvc, ok := o.(*corev1.PersistentVolumeClaim); ok {
				if err := r.retainVolume(ctx, pvc); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			uid := o.GetUID()
			err := r.Delete(ctx, o, client.Preconditions{UID: &uid}, client.PropagationPolicy("Background"))
			if client.IgnoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("deleting %s %s, which the dispatcher no longer uses: %w", k.kind, name, err))
				continue
			}
			ctrl.LoggerFrom(ctx).Info("deleted an object the dispatcher no longer uses", "kind", k.kind, "object", name)
		}
	}
	return errors.Join(errs...)
}

// retainVolume keeps a queue volume claim the dispatcher no longer mounts (the queue moved
// to an external JetStream, or the dispatcher to another namespace): it may hold messages
// not yet delivered, and deleting it would lose them without a trace. It is marked and
// reported once.
func (r *DispatcherReconciler) retainVolume(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if _, marked := pvc.Annotations[AnnotationRetainedVolume]; marked {
		return nil
	}
	base := pvc.DeepCopy()
	if pvc.Annotations == nil {
		pvc.Annotations = map[string]string{}
	}
	pvc.Annotations[AnnotationRetainedVolume] = "true"
	if err := r.Patch(ctx, pvc, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("marking volume claim %s as retained: %w", objectName(pvc.Namespace, pvc.Name), err)
	}
	note := "The dispatcher no longer uses this volume (queue %s, namespace %s). It may still hold messages of the embedded queue, so hookline keeps it; delete it once they are no longer needed."
	ctrl.LoggerFrom(ctx).Info("keeping a queue volume the dispatcher no longer uses; delete it by hand once its messages are not needed",
		"persistentVolumeClaim", objectName(pvc.Namespace, pvc.Name))
	r.Recorder.Eventf(pvc, nil, corev1.EventTypeWarning, "QueueVolumeRetained", "RetainVolume", note, r.Settings.Queue, r.Settings.Namespace)
	return nil
}

// unmarkVolume clears the retained mark when the embedded queue is back on its volume.
func (r *DispatcherReconciler) unmarkVolume(ctx context.Context, ns, name string) error {
	var pvc corev1.PersistentVolumeClaim
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &pvc); err != nil {
		return client.IgnoreNotFound(err)
	}
	if _, marked := pvc.Annotations[AnnotationRetainedVolume]; !marked {
		return nil
	}
	base := pvc.DeepCopy()
	delete(pvc.Annotations, AnnotationRetainedVolume)
	if err := r.Patch(ctx, &pvc, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("clearing the retained mark of volume claim %s/%s: %w", ns, name, err)
	}
	return nil
}

// reportVolumeClaim tells a person why the queue's claim keeps its old spec.
func (r *DispatcherReconciler) reportVolumeClaim(ctx context.Context, ns, name string, applyErr error) {
	ctrl.LoggerFrom(ctx).Info("the queue volume claim cannot take the new storage settings; it keeps its current ones",
		"persistentVolumeClaim", objectName(ns, name), "reason", applyErr.Error())
	var pvc corev1.PersistentVolumeClaim
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &pvc); err != nil {
		return
	}
	r.Recorder.Eventf(&pvc, nil, corev1.EventTypeWarning, "VolumeClaimUnchanged", "ApplyStorageSettings",
		"The storage settings (--dispatcher-storage-size, --dispatcher-storage-class) cannot be applied to the queue's existing volume claim, which keeps its current ones: %v",
		applyErr)
}

// SetupWithManager wires the reconciler: one request when the manager starts, and one
// for every change to a labelled object of an owned kind. The manager's cache must be
// set up with DispatcherCacheByObject.
func (r *DispatcherReconciler) SetupWithManager(mgr ctrl.Manager) error {
	enqueue := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{r.request()}
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("dispatcher").
		WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			q.Add(r.request())
			return nil
		}))
	for _, k := range ownedKinds {
		preds := []predicate.Predicate{labelled}
		if k.kind == "Deployment" {
			// The Deployment's status changes with every pod; only what is applied matters.
			preds = append(preds, predicate.Or(predicate.GenerationChangedPredicate{},
				predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))
		}
		b = b.Watches(k.object(), enqueue, builder.WithPredicates(preds...))
	}
	if len(r.Settings.NATSSecrets()) > 0 {
		b = b.Watches(&corev1.Secret{}, enqueue, builder.WithPredicates(r.natsSecret()))
	}
	return b.Complete(r)
}

// labelled passes the dispatcher's objects, including one whose labels were just edited
// away (so they are put back).
var labelled = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return isDispatcherObject(e.Object) },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return isDispatcherObject(e.ObjectOld) || isDispatcherObject(e.ObjectNew)
	},
	DeleteFunc:  func(e event.DeleteEvent) bool { return isDispatcherObject(e.Object) },
	GenericFunc: func(e event.GenericEvent) bool { return isDispatcherObject(e.Object) },
}

func isDispatcherObject(o client.Object) bool {
	return workload.Selector().Matches(labels.Set(o.GetLabels()))
}

// isMissingNamespace tells a namespace that does not exist (yet) from any other NotFound,
// such as a binding's role that could not be created.
func isMissingNamespace(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Kind == "namespaces"
}

func objectName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
