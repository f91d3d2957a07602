package signing

import (
	"crypto/sha256"
	"encoding/hex"

	corev1 "k8s.io/api/core/v1"
)

// SecretType marks the Secrets hookline manages for signing keys.
const SecretType corev1.SecretType = "hookline.io/signing-key"

// SecretName is the name of the Secret holding an endpoint's signing keys, in the
// endpoint's namespace. Long endpoint names are shortened with a hash so the result stays a
// valid name.
func SecretName(endpoint string) string {
	const suffix = "-hookline-signing"
	if len(endpoint)+len(suffix) <= 253 {
		return endpoint + suffix
	}
	sum := sha256.Sum256([]byte(endpoint))
	return endpoint[:253-len(suffix)-9] + "-" + hex.EncodeToString(sum[:4]) + suffix
}
