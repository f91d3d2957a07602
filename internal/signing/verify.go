package signing

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock, the value the Standard Webhooks libraries use. It bounds
// how long a captured delivery can be replayed.
const DefaultTolerance = 5 * time.Minute

// Errors returned by Verify, wrapped with details; test with errors.Is.
var (
	ErrMissingHeader       = errors.New("missing webhook header")
	ErrInvalidTimestamp    = errors.New("invalid webhook-timestamp header")
	ErrTimestampTooOld     = errors.New("webhook timestamp too old")
	ErrTimestampTooNew     = errors.New("webhook timestamp too new")
	ErrNoMatchingSignature = errors.New("no matching webhook signature")
)

// Verify checks a delivery the way a Standard Webhooks receiver does: the
// three headers must be present, the timestamp within tolerance of now
// (DefaultTolerance when tolerance is zero), and at least one v1 signature in
// webhook-signature must match one of the secrets for this id, timestamp and
// body. Signatures of other versions are ignored, as the specification asks.
//
// A secret may also be an ed25519 key: a "whpk_" public key (what receivers are given)
// or a "whsk_" private key; it matches a "v1a" signature.
func Verify(secrets []string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id := h.Get(HeaderID)
	tsRaw := h.Get(HeaderTimestamp)
	sigs := h.Get(HeaderSignature)
	for _, hv := range [...]struct{ name, value string }{{HeaderID, id}, {HeaderTimestamp, tsRaw}, {HeaderSignature, sigs}} {
		if hv.value == "" {
			return fmt.Errorf("%w %s", ErrMissingHeader, hv.name)
		}
	}
	ts, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: want Unix seconds as a decimal integer", ErrInvalidTimestamp)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	// Compared in whole seconds so that an extreme header value cannot
	// overflow a time.Duration.
	tol := int64(tolerance / time.Second)
	switch {
	case ts < now.Unix()-tol:
		return fmt.Errorf("%w: more than %s before the receiver's clock", ErrTimestampTooOld, tolerance)
	case ts > now.Unix()+tol:
		return fmt.Errorf("%w: more than %s after the receiver's clock", ErrTimestampTooNew, tolerance)
	}

	signed := make([]byte, 0, len(id)+len(tsRaw)+2+len(body))
	signed = append(signed, id...)
	signed = append(signed, '.')
	signed = append(signed, tsRaw...)
	signed = append(signed, '.')
	signed = append(signed, body...)

	expected := make([][]byte, 0, len(secrets))
	var publics []ed25519.PublicKey
	for i, s := range secrets {
		if pub, ok, err := ed25519PublicOf(s); ok {
			if err != nil {
				return fmt.Errorf("verifying with secret %d: %w", i, err)
			}
			publics = append(publics, pub)
			continue
		}
		key, err := ParseSecret(s)
		if err != nil {
			return fmt.Errorf("verifying with secret %d: %w", i, err)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write(signed)
		enc := make([]byte, encodedSumLen)
		base64.StdEncoding.Encode(enc, mac.Sum(nil))
		expected = append(expected, enc)
	}
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if ok && version == "v1a" && len(publics) > 0 {
			if raw, err := base64.StdEncoding.DecodeString(sig); err == nil {
				for _, pub := range publics {
					if ed25519.Verify(pub, signed, raw) {
						return nil
					}
				}
			}
			continue
		}
		if !ok || version != "v1" {
			continue
		}
		for _, want := range expected {
			if hmac.Equal([]byte(sig), want) {
				return nil
			}
		}
	}
	return ErrNoMatchingSignature
}

// ed25519PublicOf returns the public key of a "whpk_" or "whsk_" key; ok is false for
// anything else (an HMAC secret).
func ed25519PublicOf(s string) (pub ed25519.PublicKey, ok bool, err error) {
	switch {
	case strings.HasPrefix(s, PrivateKeyPrefix):
		priv, err := ParseEd25519Secret(s)
		if err != nil {
			return nil, true, err
		}
		return priv.Public().(ed25519.PublicKey), true, nil
	case strings.HasPrefix(s, PublicKeyPrefix):
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, PublicKeyPrefix))
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, true, fmt.Errorf("%w: a public key is %q followed by the standard base64 of 32 bytes", ErrMalformedSecret, PublicKeyPrefix)
		}
		return ed25519.PublicKey(raw), true, nil
	}
	return nil, false, nil
}
