// Package hostile holds the hostile-input suite: what an attacker inside the
// cluster would try against the CRDs (on a real API server), the dispatcher's
// HTTP API (with real TokenReviews and SubjectAccessReviews, and the real
// NATS queue behind it) and the SSRF guard (real dials on loopback). Every
// case asserts the refusal (a status code, an API error or an SSRF denial)
// and that nothing was stored or delivered. It runs in `make test`.
package hostile
