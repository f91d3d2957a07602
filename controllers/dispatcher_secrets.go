package controllers

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/workload"
)

// ConditionNATSSecretsReady, on the dispatcher's Deployment, says whether the Secrets the
// settings name for the connection to the external NATS cluster exist and hold what the
// dispatcher needs. There is no dispatcher resource: the Deployment is where
// `kubectl describe` shows the dispatcher's state, next to the Events about it. The
// Deployment controller keeps conditions of types it does not own.
const ConditionNATSSecretsReady = "NATSSecretsReady"

// Reasons of ConditionNATSSecretsReady.
const (
	ReasonNATSSecretsFound = "SecretsFound"
	ReasonSecretNotFound   = "SecretNotFound"
	ReasonSecretKeyMissing = "SecretKeyMissing"
	ReasonSecretInvalid    = "SecretInvalid"
)

// natsSecretsFieldOwner is the field manager of the condition, apart from the one that
// applies the Deployment's spec.
const natsSecretsFieldOwner = "hookline-operator-nats-secrets"

// secretProblem is what is wrong with one referenced Secret. Its message names the
// Secret, the key and the setting, never a value.
type secretProblem struct{ reason, message string }

// checkNATSSecrets reads the Secrets the settings name and returns what is wrong with
// them. They are read from the API server, not the cache, which may not cover the
// dispatcher's namespace when the operator watches only some.
func (r *DispatcherReconciler) checkNATSSecrets(ctx context.Context) ([]secretProblem, error) {
	reader := r.SecretReader
	if reader == nil {
		reader = r.Client
	}
	var problems []secretProblem
	for _, ref := range r.Settings.NATSSecrets() {
		name := objectName(r.Settings.Namespace, ref.Secret)
		var s corev1.Secret
		err := reader.Get(ctx, types.NamespacedName{Namespace: r.Settings.Namespace, Name: ref.Secret}, &s)
		if apierrors.IsNotFound(err) {
			problems = append(problems, secretProblem{ReasonSecretNotFound, fmt.Sprintf(
				"Secret %s (%s) does not exist: create it with the %s under key %s.", name, ref.Setting, ref.Kind, quoteKeys(ref.Keys))})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s (%s): %w", name, ref.Setting, err)
		}
		var missing []string
		for _, k := range ref.Keys {
			if len(s.Data[k]) == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			problems = append(problems, secretProblem{ReasonSecretKeyMissing, fmt.Sprintf(
				"Secret %s (%s) has no key %s, or it is empty: it should hold the %s under key %s.", name, ref.Setting, quoteKeys(missing), ref.Kind, quoteKeys(ref.Keys))})
			continue
		}
		if err := checkSecretContent(ref, s.Data); err != nil {
			problems = append(problems, secretProblem{ReasonSecretInvalid, fmt.Sprintf(
				"Secret %s (%s), key %s: %v; it should hold the %s.", name, ref.Setting, quoteKeys(ref.Keys), err, ref.Kind)})
		}
	}
	return problems, nil
}

// checkSecretContent parses what can be parsed, so a wrong file is reported here and not
// only when the dispatcher fails to connect.
func checkSecretContent(ref workload.SecretRef, data map[string][]byte) error {
	switch ref.Kind {
	case workload.SecretNATSCreds:
		return queue.CheckCredentials(data[workload.NATSCredentialsKey])
	case workload.SecretCA:
		return queue.CheckCA(data[workload.NATSCAKey])
	case workload.SecretClientTLS:
		return queue.CheckClientCert(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	}
	return nil
}

func quoteKeys(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = fmt.Sprintf("%q", k)
	}
	return strings.Join(q, " and ")
}

// reportNATSSecrets sets ConditionNATSSecretsReady on the Deployment, and raises a
// Warning Event when it turns to a new problem. Without NATS Secrets the condition is
// removed (its field manager lets go of it). It says whether there is a problem, for the
// caller to look again later: Secrets outside the operator's cache raise no watch event.
func (r *DispatcherReconciler) reportNATSSecrets(ctx context.Context) (bool, error) {
	problems, err := r.checkNATSSecrets(ctx)
	if err != nil {
		return false, err
	}
	var d appsv1.Deployment
	if err := r.Get(ctx, types.NamespacedName{Namespace: r.Settings.Namespace, Name: workload.Name}, &d); err != nil {
		// Not applied (yet): the namespace is missing, reported already.
		return len(problems) > 0, client.IgnoreNotFound(err)
	}
	var current *appsv1.DeploymentCondition
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == ConditionNATSSecretsReady {
			current = &d.Status.Conditions[i]
		}
	}
	status := appsv1ac.DeploymentStatus()
	if len(r.Settings.NATSSecrets()) == 0 {
		if current == nil {
			return false, nil
		}
	} else {
		want := appsv1.DeploymentCondition{Type: ConditionNATSSecretsReady, Status: corev1.ConditionTrue, Reason: ReasonNATSSecretsFound,
			Message: "The NATS Secrets exist and hold what the dispatcher needs; it reads them again on every reconnect."}
		if len(problems) > 0 {
			msgs := make([]string, len(problems))
			for i, p := range problems {
				msgs[i] = p.message
			}
			want.Status, want.Reason, want.Message = corev1.ConditionFalse, problems[0].reason, strings.Join(msgs, " ")
		}
		if current != nil && current.Status == want.Status && current.Reason == want.Reason && current.Message == want.Message {
			return len(problems) > 0, nil
		}
		now := metav1.Now()
		transition := now
		if current != nil && current.Status == want.Status {
			transition = current.LastTransitionTime
		}
		status.WithConditions(appsv1ac.DeploymentCondition().WithType(want.Type).WithStatus(want.Status).
			WithReason(want.Reason).WithMessage(want.Message).WithLastUpdateTime(now).WithLastTransitionTime(transition))
		if len(problems) > 0 {
			ctrl.LoggerFrom(ctx).Info("the NATS Secrets of the dispatcher are not usable", "reason", want.Reason, "problem", want.Message)
			r.Recorder.Eventf(&d, nil, corev1.EventTypeWarning, want.Reason, "CheckNATSSecrets", "%s", want.Message)
		}
	}
	ac := appsv1ac.Deployment(workload.Name, r.Settings.Namespace).WithStatus(status)
	if err := r.Status().Apply(ctx, ac, client.FieldOwner(natsSecretsFieldOwner), client.ForceOwnership); err != nil {
		return len(problems) > 0, fmt.Errorf("setting the %s condition of Deployment %s: %w", ConditionNATSSecretsReady, objectName(r.Settings.Namespace, workload.Name), err)
	}
	return len(problems) > 0, nil
}

// natsSecret passes events of the Secrets the settings name.
func (r *DispatcherReconciler) natsSecret() predicate.Predicate {
	names := map[string]bool{}
	for _, ref := range r.Settings.NATSSecrets() {
		names[ref.Secret] = true
	}
	is := func(o client.Object) bool { return o.GetNamespace() == r.Settings.Namespace && names[o.GetName()] }
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return is(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return is(e.ObjectNew) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return is(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return is(e.Object) },
	}
}
