// Package signing implements Standard Webhooks signatures for hookline: the
// whsec_ secret format, the set of keys an endpoint signs with (and how that
// set is laid out in a Kubernetes Secret), signing on the dispatcher's hot
// path, and verification for receivers and tests.
//
// A delivery carries one "v1,<signature>" per live key in its
// webhook-signature header, current key first, so that during a rotation's
// overlap a receiver that still holds only the previous key keeps accepting
// deliveries. Any official Standard Webhooks library verifies what Signer
// produces.
//
// A key may instead be an ed25519 private key ("whsk_", see ed25519.go): it
// signs "v1a,<signature>" entries, verified with its "whpk_" public key. A set
// may mix both kinds while an endpoint changes algorithm.
//
// Nothing in this package puts a secret into an error, a log line or a key ID:
// key IDs of user-provided keys are a truncated SHA-256 fingerprint, and
// parse errors describe the problem, not the input.
package signing
