package signing

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// SecretPrefix marks a Standard Webhooks symmetric signing secret.
const SecretPrefix = "whsec_"

const (
	// generatedSecretBytes matches HMAC-SHA256's output size: more adds no
	// strength, and every Standard Webhooks library accepts it.
	generatedSecretBytes = 32

	// MinSecretBytes is the smallest decoded key the Standard Webhooks
	// specification recommends (192 bits). Shorter keys are refused rather
	// than silently accepted, because a user-provided key is the only one we
	// cannot vouch for.
	MinSecretBytes = 24
)

// validSecretHint tells a user what to put in a Secret instead; it is appended
// to every parse error so the message is actionable on its own.
const validSecretHint = `a valid key is "whsec_" followed by the standard base64 encoding of at least 24 random bytes, ` +
	`e.g. generated with: echo "whsec_$(head -c 32 /dev/urandom | base64)"`

// ErrMalformedSecret is wrapped by every ParseSecret error.
var ErrMalformedSecret = errors.New("malformed signing secret")

// GenerateSecret returns a new random whsec_ secret.
func GenerateSecret() (string, error) {
	var b [generatedSecretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating signing secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// ParseSecret decodes a whsec_ secret into the HMAC key. The prefix is
// optional because the Standard Webhooks libraries accept bare base64 too, and
// users migrating from them may have stored it that way.
func ParseSecret(s string) ([]byte, error) {
	encoded := strings.TrimPrefix(s, SecretPrefix)
	if encoded == "" {
		return nil, fmt.Errorf("%w: the key is empty; %s", ErrMalformedSecret, validSecretHint)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		// The base64 error names the offending byte offset, which is safe to
		// show; the input itself is not.
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			return nil, fmt.Errorf("%w: the part after %q is not standard base64 (bad character or padding at offset %d); %s",
				ErrMalformedSecret, SecretPrefix, int64(corrupt), validSecretHint)
		}
		return nil, fmt.Errorf("%w: the part after %q is not standard base64; %s", ErrMalformedSecret, SecretPrefix, validSecretHint)
	}
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("%w: the key decodes to %d bytes, fewer than the %d required; %s",
			ErrMalformedSecret, len(key), MinSecretBytes, validSecretHint)
	}
	return key, nil
}

// NewKeyID returns a random ID for a generated key. IDs appear in status and
// logs, so they must be unrelated to the secret.
func NewKeyID() string {
	var b [8]byte
	// crypto/rand.Read never returns an error since Go 1.24; it aborts the
	// program instead, so there is nothing to handle here.
	_, _ = rand.Read(b[:])
	return keyIDPrefix + hex.EncodeToString(b[:])
}

const keyIDPrefix = "key_"
