// Package server is the dispatcher's whole HTTP surface, served by one Handler and
// authorised by one Authorizer:
//
//   - the publishing API: producers POST events to /v1/namespaces/{namespace}/events (or
//     up to 100 at once to .../events:batch); the handler validates them, authorises the
//     caller, and answers 202 only once the queue has stored them;
//   - the admin API under /v1/namespaces/{namespace}/subscriptions/{name}/: the attempt
//     log, dead letters and replay (admin.go);
//   - /healthz, /readyz and /metrics.
//
// Everything is checked before anything is stored: size, content type, JSON shape,
// event type grammar, id charset. A rejected request gets a 4xx with one JSON shape,
// {"error": {"status", "reason", "field" or "parameter", "message"}}, that names what is
// at fault and says how to fix it, and nothing is enqueued.
//
// Callers authenticate with their ServiceAccount token and are authorised by RBAC on
// hookline.io resources in the namespace, one Access per purpose: publishing is create on
// events; reading the attempt log, reading dead letters (they carry payloads) and
// replaying are separate rights on subscriptions, so none comes with another.
// KubernetesAuthorizer asks the API server (TokenReview, SubjectAccessReview) and caches
// its answers briefly; AllowAll is for local development and benchmarks. An API server
// that cannot answer makes a 503 with Retry-After, never a 403. Before any review, a token
// must look like a ServiceAccount token and the client address must have failures left
// (authguard.go), so no client can spend the API server's capacity.
//
// Every listener is served by NewHTTPServer behind LimitListener (limits.go): header,
// body and write timeouts, a minimum body rate, a header size limit, a bound on requests
// in flight and on connections per client address. Bodies are read as they arrive, never
// allocated from their announced length. CertReloader serves HTTPS from files that a
// renewal replaces.
package server
