package delivery

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
)

// The attempt log keeps the headers of each attempt's request so a person can
// see what the receiver was sent. It must never keep a credential: the
// values of the auth header (basic, bearer, API key, an OAuth2 token), of
// headers whose values come from Secrets, and the signatures (they are not
// keys, but a stored signature is a forgery kit for that one message) are
// replaced by masked. The signature keeps its scheme prefixes ("v1,", "v1a,")
// so one can still see how many keys signed and with which scheme.
//
// The record is built from values Send has already computed and is one
// string, one allocation, per attempt: "Name: value" lines in a fixed order,
// hookline's own headers first, then the endpoint's configured ones sorted
// by name (rendered once, when the target is built).

// masked replaces a secret value in Result.Headers.
const masked = "****"

// shownOrder is the order of the per-attempt headers in Result.Headers.
var shownOrder = [...]string{
	"Content-Type", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature",
	"Ce-Specversion", "Ce-Id", "Ce-Source", "Ce-Type", "Ce-Time", "Traceparent",
}

// secretHeaderNames carry credentials whatever their value's source.
var secretHeaderNames = map[string]bool{"Authorization": true, "Proxy-Authorization": true, "Cookie": true}

// secretNameParts mark a configured header as a credential by its name, even with a
// literal value (the API asks for valueFrom for anything secret, but a literal key in
// X-Api-Key must not end up in the attempt log either).
var secretNameParts = []string{"auth", "token", "secret", "key", "pass", "signature", "cookie", "session", "credential"}

// renderConfiguredHeaders renders the endpoint's own headers, its static auth
// header included, for Result.Headers: sorted, and masked when the header
// carries a credential or a value from a Secret. Called once per target.
func (t *Target) renderConfiguredHeaders() {
	names := make([]string, 0, len(t.header))
	for name := range t.header {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		for _, v := range t.header[name] {
			b.WriteString(name)
			b.WriteString(": ")
			if t.secretHeader(name, v) {
				b.WriteString(masked)
			} else {
				b.WriteString(v)
			}
			b.WriteByte('\n')
		}
	}
	t.shownHeader = b.String()
	_, t.userAgentSet = t.header["User-Agent"]
}

func (t *Target) secretHeader(name, value string) bool {
	if secretHeaderNames[name] || name == t.authHeader {
		return true
	}
	lower := strings.ToLower(name)
	for _, p := range secretNameParts {
		if strings.Contains(lower, p) {
			return true
		}
	}
	for _, s := range t.secrets {
		if strings.Contains(value, string(s)) {
			return true
		}
	}
	return false
}

// shownHeaders renders the request headers h of an attempt for
// Result.Headers. oauth is set when h carries an OAuth2 token; protoMajor is
// the response's HTTP major version (0 without a response), which decides
// the User-Agent net/http sent when the endpoint does not configure one.
func (t *Target) shownHeaders(h http.Header, oauth bool, protoMajor int) string {
	var b strings.Builder
	b.Grow(512 + len(t.shownHeader))
	for _, name := range shownOrder {
		vs := h[name]
		if len(vs) == 0 {
			continue
		}
		b.WriteString(name)
		b.WriteString(": ")
		if name == "Webhook-Signature" {
			writeMaskedSignature(&b, vs[0])
		} else {
			b.WriteString(vs[0])
		}
		b.WriteByte('\n')
	}
	if !t.userAgentSet {
		switch protoMajor {
		case 1:
			b.WriteString("User-Agent: Go-http-client/1.1\n")
		case 2:
			b.WriteString("User-Agent: Go-http-client/2.0\n")
		}
	}
	if oauth {
		b.WriteString("Authorization: " + masked + "\n")
	}
	b.WriteString(t.shownHeader)
	return b.String()
}

// writeMaskedSignature writes a webhook-signature value with each signature
// replaced by masked, keeping its "v1," or "v1a," scheme prefix:
// "v1,abc= v1a,def=" becomes "v1,**** v1a,****".
func writeMaskedSignature(b *strings.Builder, sig string) {
	first := true
	for tok := range strings.FieldsSeq(sig) {
		if !first {
			b.WriteByte(' ')
		}
		first = false
		if i := strings.IndexByte(tok, ','); i >= 0 {
			b.WriteString(tok[:i+1])
		}
		b.WriteString(masked)
	}
}

// scrubSignatures blanks out the attempt's signatures in a response body: a
// receiver that echoes the request would otherwise put them in the attempt
// log, which shows them masked.
func scrubSignatures(body []byte, h http.Header) []byte {
	if len(body) == 0 || len(h["Webhook-Signature"]) == 0 {
		return body
	}
	for tok := range strings.FieldsSeq(h["Webhook-Signature"][0]) {
		_, sig, _ := strings.Cut(tok, ",")
		if sig != "" && bytes.Contains(body, []byte(sig)) {
			body = bytes.ReplaceAll(body, []byte(sig), []byte("[redacted]"))
		}
	}
	return body
}
