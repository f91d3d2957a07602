// Package secretrefs lists the Secrets a WebhookEndpoint refers to, with the spec field of
// each reference, so the operator can check them and index endpoints by Secret name, and
// the dispatcher can resolve them.
package secretrefs

import (
	"fmt"
	"strconv"
	"strings"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Ref is one reference from an endpoint's spec to a Secret in its namespace.
type Ref struct {
	Field  string   // e.g. spec.auth.bearer
	Secret string   // Secret name
	Keys   []string // data keys that must be present
	// SentToEndpoint: the value goes to (or shapes the connection to) the
	// endpoint's URL, so the Secret must opt in (LabelEndpointSecret).
	SentToEndpoint bool
}

// Default data keys of the Secrets that auth methods read.
const (
	BasicUsernameKey = "username"
	BasicPasswordKey = "password"
	TLSCertKey       = "tls.crt"
	TLSKeyKey        = "tls.key"
)

// Endpoint returns every Secret reference in spec, in a stable order.
func Endpoint(spec *hooklinev1.WebhookEndpointSpec) []Ref {
	var refs []Ref
	for i, h := range spec.Headers {
		if h.ValueFrom != nil {
			refs = append(refs, Ref{Field: "spec.headers[" + strconv.Itoa(i) + "].valueFrom", Secret: h.ValueFrom.Name, Keys: []string{h.ValueFrom.Key}, SentToEndpoint: true})
		}
	}
	if a := spec.Auth; a != nil {
		switch {
		case a.APIKey != nil:
			refs = append(refs, Ref{Field: "spec.auth.apiKey.valueFrom", Secret: a.APIKey.ValueFrom.Name, Keys: []string{a.APIKey.ValueFrom.Key}, SentToEndpoint: true})
		case a.Basic != nil:
			refs = append(refs, Ref{Field: "spec.auth.basic", Secret: a.Basic.Name, Keys: []string{BasicUsernameKey, BasicPasswordKey}, SentToEndpoint: true})
		case a.Bearer != nil:
			refs = append(refs, Ref{Field: "spec.auth.bearer", Secret: a.Bearer.Name, Keys: []string{a.Bearer.Key}, SentToEndpoint: true})
		case a.MTLS != nil:
			refs = append(refs, Ref{Field: "spec.auth.mtls", Secret: a.MTLS.Name, Keys: []string{TLSCertKey, TLSKeyKey}, SentToEndpoint: true})
		case a.OAuth2 != nil:
			// Sent to the token URL, which whoever writes the endpoint chooses as freely
			// as its URL: the same opt-in rule applies.
			refs = append(refs, Ref{Field: "spec.auth.oauth2.clientSecret", Secret: a.OAuth2.ClientSecret.Name, Keys: []string{a.OAuth2.ClientSecret.Key}, SentToEndpoint: true})
		}
	}
	if t := spec.TLS; t != nil && t.CA != nil {
		refs = append(refs, Ref{Field: "spec.tls.ca", Secret: t.CA.Name, Keys: []string{t.CA.Key}, SentToEndpoint: true})
	}
	if s := spec.Signing; s != nil && s.SecretRef != nil {
		refs = append(refs, Ref{Field: "spec.signing.secretRef", Secret: s.SecretRef.Name, Keys: []string{s.SecretRef.Key}})
	}
	return refs
}

// Names returns the distinct Secret names spec refers to, for a field index.
func Names(spec *hooklinev1.WebhookEndpointSpec) []string {
	seen := map[string]bool{}
	var names []string
	for _, r := range Endpoint(spec) {
		if !seen[r.Secret] {
			seen[r.Secret] = true
			names = append(names, r.Secret)
		}
	}
	return names
}

// OptedIn reports whether a Secret with these labels may be referenced where
// its value is sent to an endpoint.
func OptedIn(labels map[string]string) bool {
	return labels[hooklinev1.LabelEndpointSecret] == "true"
}

// NotOptedIn words the problem of one reference to a Secret that has not
// opted in.
func NotOptedIn(r Ref) string {
	return fmt.Sprintf("%s refers to Secret %q, which is not labelled %s: \"true\"", r.Field, r.Secret, hooklinev1.LabelEndpointSecret)
}

// OptInHint says how to fix NotOptedIn problems, naming the Secrets.
func OptInHint(secrets []string) string {
	return fmt.Sprintf("An endpoint sends what it reads from a Secret to the URL it names, so the Secret must opt in: kubectl label secret %s %s=true "+
		"(or, for the whole installation, turn the rule off with the operator's and dispatcher's --require-secret-opt-in=false)",
		strings.Join(secrets, " "), hooklinev1.LabelEndpointSecret)
}
