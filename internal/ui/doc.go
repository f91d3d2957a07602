// Package ui is `hookline ui`: a dashboard for the people who own endpoints, served on
// 127.0.0.1 by the user's own machine, the way `kubectl proxy` is. It reads endpoints and
// subscriptions from the API server and attempts, dead letters and retained events from
// the dispatcher's admin API, always with the user's kubeconfig credentials, so
// Kubernetes RBAC decides what each person sees and may do; the dashboard itself holds
// no rights.
//
// Pages are rendered on the server with html/template; a little plain JavaScript
// (embedded) refreshes the parts marked live. Every action is one real API call (a patch
// of the endpoint's annotations, or a POST to the dispatcher), asked for with a
// confirmation page, and shown with what the API answered. Before a page is rendered,
// SelfSubjectAccessReviews say which actions the user may take; the others are rendered
// disabled with the reason.
//
// The local server trusts nobody by default: every request must carry the session cookie
// set from the one-time URL the command prints (another user of the machine cannot use
// the user's credentials through the port), its Host must be the loopback address it
// listens on (no DNS rebinding), and every POST must come from the same origin and carry
// the page's CSRF token.
//
// The dispatcher can serve the same pages behind the cluster's authenticating proxy
// (Options.Proxied, hookline dispatcher --ui-listen; see proxied.go): each request then
// carries the user's bearer token, and every call is made with that token instead of a
// kubeconfig's, so RBAC still decides per person.
package ui
