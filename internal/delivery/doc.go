// Package delivery sends one webhook attempt to one endpoint and decides what
// happens next.
//
// It knows nothing of queues or Kubernetes: a Target is an endpoint turned
// into something that can be sent to (URL, headers, auth, TLS, the SSRF
// guard), a Message is one event as one subscription wants it formatted, Send
// makes one HTTP attempt and classifies the answer, and Policy.Next is the
// pure function that says when, if ever, to try again. The dispatcher strings
// these together.
//
// Send is on the hot path of every delivery, so bodies are built by appending
// into one exactly sized buffer and the event data, already validated JSON,
// is copied in as it is, never decoded.
package delivery
