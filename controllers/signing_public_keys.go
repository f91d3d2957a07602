package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/signing"
)

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=create;patch;delete

// Data keys of the public-key ConfigMap. It holds no secrets, so receivers (and their
// ServiceAccounts) can be allowed to read it without reading the signing Secret.
const (
	// PublicKeysDataAlgorithm is the algorithm of the current key.
	PublicKeysDataAlgorithm = "algorithm"
	// PublicKeysDataCurrent is the current key's "whpk_..." public key.
	PublicKeysDataCurrent = "current"
	// PublicKeysDataCurrentID is the current key's ID.
	PublicKeysDataCurrentID = "current.id"
	// PublicKeysDataKeys lists every public key that may sign now, current first, one
	// per line: a receiver accepts a delivery whose v1a signature verifies with any.
	PublicKeysDataKeys = "keys"
)

// publicKeysFieldOwner is the server-side apply field manager of the public-key ConfigMap.
const publicKeysFieldOwner = "hookline-operator-signing"

// PublicKeysConfigMapName is the name of the ConfigMap holding an endpoint's public keys.
func PublicKeysConfigMapName(endpoint string) string {
	return strings.TrimSuffix(signing.SecretName(endpoint), "-signing") + "-public-keys"
}

// livePublicKeys returns the public halves of the ed25519 keys of keys that sign at now,
// current first. HMAC keys have none and are skipped.
func livePublicKeys(keys signing.KeySet, now time.Time) ([]hooklinev1.SigningPublicKey, error) {
	var out []hooklinev1.SigningPublicKey
	add := func(k signing.Key) error {
		pk, err := signing.PublicKey(k.Secret)
		if err != nil || pk == "" {
			return err
		}
		p := hooklinev1.SigningPublicKey{KeyID: k.ID, PublicKey: pk}
		if !k.ExpiresAt.IsZero() {
			p.ExpiresAt = &metav1.Time{Time: k.ExpiresAt}
		}
		out = append(out, p)
		return nil
	}
	if err := add(keys.Current); err != nil {
		return nil, err
	}
	for _, k := range keys.Retired() {
		if now.Before(k.ExpiresAt) {
			if err := add(k); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// reconcilePublicKeys publishes the public keys of the endpoint's ed25519 keys in
// status.signing and in a ConfigMap the endpoint owns, and removes that ConfigMap once no
// ed25519 key signs any more. st is the new signing status; had is the ConfigMap name the
// previous status reported.
func (r *WebhookEndpointReconciler) reconcilePublicKeys(ctx context.Context, ep *hooklinev1.WebhookEndpoint, keys signing.KeySet, st *hooklinev1.SigningStatus, had string) error {
	st.Algorithm = signing.Algorithm(keys.Current.Secret)
	pks, err := livePublicKeys(keys, r.Clock.Now())
	if err != nil {
		return err
	}
	name := PublicKeysConfigMapName(ep.Name)
	if len(pks) == 0 {
		if had == "" {
			return nil
		}
		err := r.Delete(ctx, &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ep.Namespace, Name: had},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting ConfigMap %s: %w", had, err)
		}
		return nil
	}
	st.PublicKeys = pks
	st.PublicKeysConfigMap = name
	all := make([]string, len(pks))
	for i, p := range pks {
		all[i] = p.PublicKey
	}
	data := map[string]string{
		PublicKeysDataAlgorithm: st.Algorithm,
		PublicKeysDataKeys:      strings.Join(all, "\n") + "\n",
	}
	if st.Algorithm == signing.AlgorithmEd25519 {
		data[PublicKeysDataCurrent] = pks[0].PublicKey
		data[PublicKeysDataCurrentID] = pks[0].KeyID
	}
	gvk := hooklinev1.GroupVersion.WithKind("WebhookEndpoint")
	cm := corev1ac.ConfigMap(name, ep.Namespace).
		WithLabels(map[string]string{hooklinev1.LabelEndpoint: ep.Name}).
		WithData(data).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(gvk.GroupVersion().String()).WithKind(gvk.Kind).
			WithName(ep.Name).WithUID(ep.UID).
			WithController(true).WithBlockOwnerDeletion(true))
	if err := r.Apply(ctx, cm, client.FieldOwner(publicKeysFieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying ConfigMap %s: %w", name, err)
	}
	return nil
}
