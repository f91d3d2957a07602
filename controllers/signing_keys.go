package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/metrics"
	"github.com/hookline/hookline/internal/rotation"
	"github.com/hookline/hookline/internal/signing"
)

// RotationPolicy returns the endpoint's rotation schedule, with the defaults filled in.
// The CRD bounds both durations; Validate guards the combinations it cannot express.
func RotationPolicy(spec *hooklinev1.WebhookEndpointSpec) (rotation.Policy, error) {
	r := spec.GetRotation()
	p := rotation.Policy{Every: r.GetEvery(), Overlap: r.GetOverlap()}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("spec.signing.rotation: %w", err)
	}
	return p, nil
}

// SigningAlgorithm is the algorithm the endpoint's generated keys sign with. An unset
// algorithm is HMAC-SHA256, so removing the field rotates an ed25519 key out.
func SigningAlgorithm(spec *hooklinev1.WebhookEndpointSpec) string {
	if spec.Signing != nil && spec.Signing.Algorithm != "" {
		return spec.Signing.Algorithm
	}
	return signing.AlgorithmHMACSHA256
}

// RotationRequest reads the manual rotation annotations. The token records both values,
// so a new value in either one is a new request, and the same values never rotate twice.
func RotationRequest(annotations map[string]string, lastHandled string) rotation.Request {
	rotate, immediate := annotations[hooklinev1.AnnotationRotate], annotations[hooklinev1.AnnotationRotateImmediately]
	if rotate == "" && immediate == "" {
		return rotation.Request{}
	}
	token := "rotate=" + rotate + ";immediately=" + immediate
	lastImmediate := ""
	if i := strings.Index(lastHandled, ";immediately="); i >= 0 {
		lastImmediate = lastHandled[i+len(";immediately="):]
	}
	return rotation.Request{Token: token, Immediate: immediate != "" && immediate != lastImmediate}
}

// signingKeyError is a problem with the signing key that the user has to fix; it becomes the
// Ready condition's message rather than a reconcile error.
type signingKeyError struct{ msg string }

func (e signingKeyError) Error() string { return e.msg }

// reconcileSigningKeys keeps the endpoint's signing Secret in place: generated and rotated
// on schedule, or mirrored from the user's Secret, so the dispatcher reads keys from one
// kind of Secret only. It returns a user-facing problem, or an error to retry.
func (r *WebhookEndpointReconciler) reconcileSigningKeys(ctx context.Context, ep *hooklinev1.WebhookEndpoint, userSecrets map[string]*corev1.Secret) (problem error, err error) {
	now := r.Clock.Now()
	name := signing.SecretName(ep.Name)
	var secret corev1.Secret
	err = r.Get(ctx, client.ObjectKey{Namespace: ep.Namespace, Name: name}, &secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	if exists && !metav1.IsControlledBy(&secret, ep) {
		return signingKeyError{fmt.Sprintf("Secret %q exists and is not managed by this endpoint; hookline keeps the signing keys there. Rename or delete that Secret.", name)}, nil
	}

	var keys signing.KeySet
	var decision rotation.Decision
	user := ep.Spec.Signing != nil && ep.Spec.Signing.SecretRef != nil
	if user {
		ref := ep.Spec.Signing.SecretRef
		keys, err = signing.KeySetFromUserSecret(userSecrets[ref.Name].Data, ref.Key)
		if err != nil {
			return signingKeyError{fmt.Sprintf("spec.signing.secretRef: key %q of Secret %q is not a usable signing key: %v", ref.Key, ref.Name, err)}, nil
		}
	} else {
		policy, perr := RotationPolicy(&ep.Spec)
		if perr != nil {
			return signingKeyError{perr.Error()}, nil
		}
		policy.Algorithm = SigningAlgorithm(&ep.Spec)
		var current signing.KeySet
		hasKeys := false
		if exists {
			current, err = signing.KeySetFromSecretData(secret.Data)
			// Keys mirrored from a user Secret before a switch to generated keys are replaced
			// at once; anything else unreadable is left for a person to look at, because
			// replacing it would silently break every receiver.
			hasKeys = err == nil && secret.Annotations[annotationKeySource] != keySourceUser
			if err != nil && secret.Annotations[annotationKeySource] != keySourceUser {
				return signingKeyError{fmt.Sprintf("Secret %q does not hold valid signing keys (%v). Delete it to have a new key generated (receivers must then be given the new key).", name, err)}, nil
			}
		}
		decision = rotation.Plan(current, hasKeys, policy, RotationRequest(ep.Annotations, current.LastRequest), now)
		newSecret, gerr := signing.GenerateSecretFor(policy.Algorithm)
		if gerr != nil {
			return signingKeyError{"spec.signing.algorithm: " + gerr.Error()}, nil
		}
		keys, err = rotation.Apply(current, decision, newSecret, signing.NewKeyID)
		if err != nil {
			return nil, err
		}
		r.wakeups.At(client.ObjectKeyFromObject(ep), decision.Next)
		metrics.SigningKeyNextRotation.WithLabelValues(ep.Namespace, ep.Name).Set(float64(rotation.NextRotation(keys, policy).Unix()))
	}

	if err := r.writeSigningSecret(ctx, ep, &secret, exists, keys, user, referencedVersions(userSecrets)); err != nil {
		return nil, err
	}
	if decision.Action == rotation.ActionRotate {
		metrics.SigningKeyRotations.WithLabelValues(ep.Namespace, ep.Name, string(decision.Cause)).Inc()
		note := fmt.Sprintf("Signing key %s replaced by %s (%s)", previousID(keys), keys.Current.ID, decision.Cause)
		if decision.KeepPrevious {
			note += fmt.Sprintf("; the previous key keeps signing until %s", decision.PreviousExpiresAt.Format(time.RFC3339))
		} else {
			note += "; the previous key no longer signs"
		}
		r.Recorder.Eventf(ep, nil, corev1.EventTypeNormal, "SigningKeyRotated", "RotateSigningKey", note)
	}
	had := ""
	if ep.Status.Signing != nil {
		had = ep.Status.Signing.PublicKeysConfigMap
	}
	st := signingStatus(name, keys, user, ep)
	if err := r.reconcilePublicKeys(ctx, ep, keys, st, had); err != nil {
		return nil, err
	}
	ep.Status.Signing = st
	return nil, nil
}

func previousID(keys signing.KeySet) string {
	if keys.Previous != nil {
		return keys.Previous.ID
	}
	return "(dropped)"
}

const (
	annotationKeySource = "hookline.io/key-source"
	keySourceUser       = "user"
	keySourceGenerated  = "generated"
)

// writeSigningSecret creates or updates the Secret when its content differs. An update is
// optimistic-locked on the resourceVersion read, so two reconciles never both rotate.
func (r *WebhookEndpointReconciler) writeSigningSecret(ctx context.Context, ep *hooklinev1.WebhookEndpoint, secret *corev1.Secret, exists bool, keys signing.KeySet, user bool, refs string) error {
	source := keySourceGenerated
	if user {
		source = keySourceUser
	}
	data := keys.ToSecretData()
	if exists && secret.Type == signing.SecretType && secret.Annotations[annotationKeySource] == source &&
		secret.Annotations[hooklinev1.AnnotationReferencedSecrets] == refs &&
		secret.Labels[hooklinev1.LabelSigningSecret] == "true" && equalData(secret.Data, data) {
		return nil
	}
	desired := secret.DeepCopy()
	if !exists {
		desired = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ep.Namespace, Name: signing.SecretName(ep.Name)}, Type: signing.SecretType}
	}
	if desired.Labels == nil {
		desired.Labels = map[string]string{}
	}
	if desired.Annotations == nil {
		desired.Annotations = map[string]string{}
	}
	desired.Labels[hooklinev1.LabelSigningSecret] = "true"
	desired.Labels[hooklinev1.LabelEndpoint] = ep.Name
	desired.Annotations[annotationKeySource] = source
	if refs == "" {
		delete(desired.Annotations, hooklinev1.AnnotationReferencedSecrets)
	} else {
		desired.Annotations[hooklinev1.AnnotationReferencedSecrets] = refs
	}
	desired.Data = data
	if err := controllerutil.SetControllerReference(ep, desired, r.Scheme()); err != nil {
		return err
	}
	if !exists {
		if err := r.Create(ctx, desired); err != nil {
			return fmt.Errorf("creating Secret %s: %w", desired.Name, err)
		}
		return nil
	}
	if err := r.Update(ctx, desired); err != nil {
		return fmt.Errorf("updating Secret %s: %w", desired.Name, err)
	}
	return nil
}

// referencedVersions lists name@resourceVersion of the Secrets an endpoint refers to, in
// name order.
func referencedVersions(secrets map[string]*corev1.Secret) string {
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		names[i] = n + "@" + secrets[n].ResourceVersion
	}
	return strings.Join(names, ",")
}

func equalData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}

func signingStatus(secretName string, keys signing.KeySet, user bool, ep *hooklinev1.WebhookEndpoint) *hooklinev1.SigningStatus {
	st := &hooklinev1.SigningStatus{SecretName: secretName, CurrentKeyID: keys.Current.ID}
	if !keys.Current.CreatedAt.IsZero() {
		st.LastRotationTime = &metav1.Time{Time: keys.Current.CreatedAt}
	}
	if keys.Previous != nil {
		st.PreviousKeyID = keys.Previous.ID
		st.PreviousKeyExpiresAt = &metav1.Time{Time: keys.Previous.ExpiresAt}
	}
	if !user {
		if p, err := RotationPolicy(&ep.Spec); err == nil {
			st.NextRotationTime = &metav1.Time{Time: rotation.NextRotation(keys, p)}
		}
	}
	return st
}
