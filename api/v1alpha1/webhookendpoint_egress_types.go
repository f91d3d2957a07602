package v1alpha1

// OAuth2Auth is the OAuth 2.0 client credentials grant (RFC 6749 section 4.4): hookline
// asks the token URL for an access token with the client ID and secret, and sends it to
// the receiver as a bearer token.
type OAuth2Auth struct {
	// TokenURL is the authorization server's token endpoint, e.g.
	// https://auth.example.com/oauth2/token. It passes the same SSRF checks as deliveries.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="spec.auth.oauth2.tokenURL must be an absolute http(s) URL such as https://auth.example.com/oauth2/token"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getHostname() != ''",message="spec.auth.oauth2.tokenURL must name a host, such as https://auth.example.com/oauth2/token"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",message="spec.auth.oauth2.tokenURL must not contain credentials (user:password@); set clientID and clientSecret instead"
	TokenURL string `json:"tokenURL"`

	// ClientID identifies hookline to the authorization server.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule=`!self.matches('[\\x00-\\x1f\\x7f]')`,message="spec.auth.oauth2.clientID must be one line of printable text"
	ClientID string `json:"clientID"`

	// ClientSecret reads the client secret from a Secret in the same namespace. Like
	// every Secret an endpoint sends, it must be labelled hookline.io/endpoint-secret:
	// "true" unless the installation turns that rule off.
	ClientSecret SecretKeyRef `json:"clientSecret"`

	// Scopes requested, sent space-separated in the scope parameter.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^[!#-\[\]-~]+$`
	Scopes []string `json:"scopes,omitempty"`

	// Audience, sent as the audience parameter, which Auth0, Okta and others use to name
	// the API the token is for.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Audience string `json:"audience,omitempty"`

	// Params are extra form parameters of the token request, e.g. resource. They cannot
	// replace grant_type, client_id, client_secret, scope or audience.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="!['grant_type', 'client_id', 'client_secret', 'scope', 'audience'].exists(k, k in self)",message="spec.auth.oauth2.params cannot set grant_type, client_id, client_secret, scope or audience: use the fields of spec.auth.oauth2"
	Params map[string]string `json:"params,omitempty"`
}

// EndpointProxy overrides the installation's egress proxy (the dispatcher's
// --egress-proxy) for one endpoint.
//
// +kubebuilder:validation:XValidation:rule="has(self.url) != (has(self.direct) && self.direct)",message="spec.proxy: set exactly one of url (send through this proxy) and direct: true (send without a proxy)"
type EndpointProxy struct {
	// URL of an HTTP proxy, http://host:port or https://host:port: deliveries to an
	// https:// URL tunnel through it with CONNECT. The proxy's own address passes the
	// SSRF checks; credentials are not accepted here.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="spec.proxy.url must be an http:// or https:// URL such as http://proxy.example.com:3128"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",message="spec.proxy.url must not contain credentials (user:password@)"
	URL string `json:"url,omitempty"`

	// Direct sends this endpoint's deliveries without any proxy, even when the
	// installation has one.
	// +optional
	Direct bool `json:"direct,omitempty"`
}
