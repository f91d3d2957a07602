package secretrefs

import (
	"reflect"
	"testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func TestEndpoint(t *testing.T) {
	val := "v"
	spec := &hooklinev1.WebhookEndpointSpec{
		Headers: []hooklinev1.Header{
			{Name: "X-Literal", Value: &val},
			{Name: "X-Tenant", ValueFrom: &hooklinev1.SecretKeyRef{Name: "cfg", Key: "tenant"}},
		},
		Auth:    &hooklinev1.EndpointAuth{Basic: &hooklinev1.SecretRef{Name: "creds"}},
		TLS:     &hooklinev1.EndpointTLS{CA: &hooklinev1.SecretKeyRef{Name: "cfg", Key: "ca.crt"}},
		Signing: &hooklinev1.Signing{SecretRef: &hooklinev1.SecretKeyRef{Name: "key", Key: "secret"}},
	}
	want := []Ref{
		{Field: "spec.headers[1].valueFrom", Secret: "cfg", Keys: []string{"tenant"}, SentToEndpoint: true},
		{Field: "spec.auth.basic", Secret: "creds", Keys: []string{"username", "password"}, SentToEndpoint: true},
		{Field: "spec.tls.ca", Secret: "cfg", Keys: []string{"ca.crt"}, SentToEndpoint: true},
		// The signing key is never sent: only signatures made with it.
		{Field: "spec.signing.secretRef", Secret: "key", Keys: []string{"secret"}},
	}
	if got := Endpoint(spec); !reflect.DeepEqual(got, want) {
		t.Errorf("Endpoint() = %+v\nwant %+v", got, want)
	}
	if got, want := Names(spec), []string{"cfg", "creds", "key"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

func TestEndpointAuthKinds(t *testing.T) {
	tests := []struct {
		auth  hooklinev1.EndpointAuth
		field string
		keys  []string
	}{
		{hooklinev1.EndpointAuth{APIKey: &hooklinev1.APIKeyAuth{Name: "X-Key", ValueFrom: hooklinev1.SecretKeyRef{Name: "s", Key: "k"}}}, "spec.auth.apiKey.valueFrom", []string{"k"}},
		{hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: "s", Key: "token"}}, "spec.auth.bearer", []string{"token"}},
		{hooklinev1.EndpointAuth{MTLS: &hooklinev1.SecretRef{Name: "s"}}, "spec.auth.mtls", []string{"tls.crt", "tls.key"}},
		{hooklinev1.EndpointAuth{OAuth2: &hooklinev1.OAuth2Auth{TokenURL: "https://a/t", ClientID: "c", ClientSecret: hooklinev1.SecretKeyRef{Name: "s", Key: "client-secret"}}}, "spec.auth.oauth2.clientSecret", []string{"client-secret"}},
	}
	for _, tt := range tests {
		refs := Endpoint(&hooklinev1.WebhookEndpointSpec{Auth: &tt.auth})
		if len(refs) != 1 || refs[0].Field != tt.field || !reflect.DeepEqual(refs[0].Keys, tt.keys) || !refs[0].SentToEndpoint {
			t.Errorf("%s: got %+v", tt.field, refs)
		}
	}
	if refs := Endpoint(&hooklinev1.WebhookEndpointSpec{}); len(refs) != 0 {
		t.Errorf("an endpoint without references: got %+v", refs)
	}
}

func TestOptedIn(t *testing.T) {
	for labels, want := range map[*map[string]string]bool{
		{hooklinev1.LabelEndpointSecret: "true"}:  true,
		{hooklinev1.LabelEndpointSecret: "yes"}:   false,
		{hooklinev1.LabelEndpointSecret: "false"}: false,
		{"other": "true"}:                         false,
	} {
		if got := OptedIn(*labels); got != want {
			t.Errorf("OptedIn(%v) = %v, want %v", *labels, got, want)
		}
	}
	if OptedIn(nil) {
		t.Error("OptedIn(nil)")
	}
}
