package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// Standard Webhooks asymmetric keys: "whsk_" prefixes a secret (private) key and
// "whpk_" a public key, each followed by standard base64. hookline stores an
// ed25519 private key as its 32-byte seed, which is what the Standard Webhooks
// libraries (and crypto/ed25519.NewKeyFromSeed) take.
const (
	PrivateKeyPrefix = "whsk_"
	PublicKeyPrefix  = "whpk_"
)

// Algorithms a key can sign with; they are also the values of the
// WebhookEndpoint field spec.signing.algorithm.
const (
	AlgorithmHMACSHA256 = "hmac-sha256"
	AlgorithmEd25519    = "ed25519"
)

// signatureVersionEd25519 prefixes each ed25519 signature in webhook-signature.
const signatureVersionEd25519 = "v1a,"

const validEd25519Hint = `a valid ed25519 key is "whsk_" followed by the standard base64 encoding of a 32-byte seed ` +
	`(or a 64-byte private key); hookline generates these itself`

// Algorithm returns the algorithm a stored key signs with, judged by its prefix:
// "whsk_" keys are ed25519, everything else is an HMAC secret.
func Algorithm(secret string) string {
	if strings.HasPrefix(secret, PrivateKeyPrefix) {
		return AlgorithmEd25519
	}
	return AlgorithmHMACSHA256
}

// GenerateEd25519Secret returns a new random "whsk_" ed25519 private key.
func GenerateEd25519Secret() (string, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return "", fmt.Errorf("generating ed25519 signing key: %w", err)
	}
	return PrivateKeyPrefix + base64.StdEncoding.EncodeToString(seed), nil
}

// GenerateSecretFor returns a generator of new keys for algorithm ("" means
// HMAC-SHA256, the default).
func GenerateSecretFor(algorithm string) (func() (string, error), error) {
	switch algorithm {
	case "", AlgorithmHMACSHA256:
		return GenerateSecret, nil
	case AlgorithmEd25519:
		return GenerateEd25519Secret, nil
	}
	return nil, fmt.Errorf("unknown signing algorithm %q; use %q or %q", algorithm, AlgorithmHMACSHA256, AlgorithmEd25519)
}

// ParseEd25519Secret decodes a "whsk_" key into an ed25519 private key.
func ParseEd25519Secret(s string) (ed25519.PrivateKey, error) {
	encoded, ok := strings.CutPrefix(s, PrivateKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: an ed25519 key must start with %q; %s", ErrMalformedSecret, PrivateKeyPrefix, validEd25519Hint)
	}
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("%w: the part after %q is not standard base64; %s", ErrMalformedSecret, PrivateKeyPrefix, validEd25519Hint)
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		priv := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if string(priv[ed25519.SeedSize:]) != string(raw[ed25519.SeedSize:]) {
			return nil, fmt.Errorf("%w: the public half of the 64-byte key does not match its seed; %s", ErrMalformedSecret, validEd25519Hint)
		}
		return priv, nil
	}
	return nil, fmt.Errorf("%w: the key decodes to %d bytes, not %d or %d; %s",
		ErrMalformedSecret, len(raw), ed25519.SeedSize, ed25519.PrivateKeySize, validEd25519Hint)
}

// CheckSecret reports whether a stored key of either algorithm is usable.
func CheckSecret(s string) error {
	if Algorithm(s) == AlgorithmEd25519 {
		_, err := ParseEd25519Secret(s)
		return err
	}
	_, err := ParseSecret(s)
	return err
}

// PublicKey returns the "whpk_" public key of an ed25519 key, or "" for an
// HMAC secret, which has no public half.
func PublicKey(secret string) (string, error) {
	if Algorithm(secret) != AlgorithmEd25519 {
		return "", nil
	}
	priv, err := ParseEd25519Secret(secret)
	if err != nil {
		return "", err
	}
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)), nil
}
