// Package ingest is the dispatcher's publishing API: producers POST events to
// /v1/namespaces/{namespace}/events (or up to 100 at once to .../events:batch), and the
// handler validates them, authorises the caller, and answers 202 only once the queue has
// stored them.
//
// Everything is checked before anything is stored: size, content type, JSON shape,
// event type grammar, id charset. A rejected request gets a 4xx with a JSON body that
// names the field and says how to fix it, and nothing is enqueued.
//
// Callers authenticate with their ServiceAccount token and are authorised by RBAC (verb
// create on events.hookline.io in the namespace), through an Authorizer:
// KubernetesAuthorizer asks the API server (TokenReview, SubjectAccessReview) and caches
// its answers briefly; AllowAll is for local development and benchmarks.
package ingest
