// Package registry is the dispatcher's live, in-memory view of WebhookEndpoints,
// Subscriptions and signing keys.
//
// It watches the API with informers (signing Secrets by label only) and keeps, per
// namespace, an immutable view behind an atomic pointer, so the lookups made for every
// event and every delivery (Matching, Endpoint, Subscription) take no lock. A change to a
// resource rebuilds only its namespace's view and is live within about a second.
//
// Everything an endpoint needs to send is resolved when the endpoint is built: the
// Secrets its spec refers to (auth, header values, CA) are read with direct GETs, because
// the dispatcher only watches the labelled signing Secrets; the operator stamps the
// referenced Secrets' versions on the signing Secret (hookline.io/referenced-secrets), so a
// change of either rebuilds the endpoint. A change of the signing keys alone swaps the
// endpoint's signer in place.
//
// NewStatic builds a registry from objects without Kubernetes, with the same code, for
// the delivery engine's tests and benchmarks.
package registry
