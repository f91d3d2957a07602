package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhookEndpointSpec says where deliveries go, how they authenticate, and how the signing
// key is managed.
//
// +kubebuilder:validation:XValidation:rule="self.url.startsWith('https://') || (self.url.startsWith('http://') && has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",message="spec.url must use https://; to deliver over plain http:// set spec.allowInsecureHTTP: true"
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.mtls) || self.url.startsWith('https://')",message="spec.auth.mtls needs an https:// URL"
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.apiKey) || !has(self.headers) || (has(self.auth.apiKey.__in__) && self.auth.apiKey.__in__ == 'Query') || !self.headers.exists(h, h.name.lowerAscii() == self.auth.apiKey.name.lowerAscii())",message="spec.headers sets the header spec.auth.apiKey sends the key in: remove it from spec.headers"
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !(has(self.auth.basic) || has(self.auth.bearer)) || !has(self.headers) || !self.headers.exists(h, h.name.lowerAscii() == 'authorization')",message="spec.headers must not set Authorization when spec.auth.basic or spec.auth.bearer sends it: remove it from spec.headers"
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.oauth2) || !has(self.headers) || !self.headers.exists(h, h.name.lowerAscii() == 'authorization')",message="spec.headers must not set Authorization when spec.auth.oauth2 sends it: remove it from spec.headers"
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.auth.oauth2) || self.auth.oauth2.tokenURL.startsWith('https://') || (has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",message="spec.auth.oauth2.tokenURL must use https://; to fetch tokens over plain http:// set spec.allowInsecureHTTP: true"
type WebhookEndpointSpec struct {
	// URL receives the deliveries: an absolute https:// URL without credentials.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self)",message="url must be an absolute URL such as https://example.com/webhooks"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getHostname() != ''",message="url must name a host, such as https://example.com/webhooks"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",message="url must not contain credentials (user:password@); put them in spec.auth instead"
	// +kubebuilder:validation:XValidation:rule="!self.contains('#')",message="url must not contain a fragment (#...); receivers never see it"
	URL string `json:"url"`

	// AllowInsecureHTTP permits a plain http:// URL. Deliveries are then readable and
	// changeable on the wire; use it only for receivers inside a trusted network.
	// +optional
	AllowInsecureHTTP bool `json:"allowInsecureHTTP,omitempty"`

	// Headers are added to every delivery. They cannot replace the headers hookline sets
	// (webhook-*, ce-*, content-type, content-length, content-encoding, host,
	// x-idempotency-key) or those that belong to the connection (connection, keep-alive,
	// proxy-*, transfer-encoding, accept-encoding, upgrade, te, trailer, expect), nor the
	// header spec.auth sends.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Headers []Header `json:"headers,omitempty"`

	// Auth authenticates deliveries to the receiver. At most one method may be set.
	// +optional
	Auth *EndpointAuth `json:"auth,omitempty"`

	// TLS configures how the receiver's certificate is verified.
	// +optional
	TLS *EndpointTLS `json:"tls,omitempty"`

	// Signing chooses how the Standard Webhooks signing key is managed. By default hookline
	// generates a key, keeps it in a Secret owned by this endpoint, and rotates it every 90
	// days with a 24 hour overlap.
	// +optional
	Signing *Signing `json:"signing,omitempty"`

	// Limits bound how hard hookline pushes this endpoint.
	// +optional
	Limits *EndpointLimits `json:"limits,omitempty"`

	// Proxy overrides the installation's egress proxy for this endpoint: another proxy,
	// or none at all.
	// +optional
	Proxy *EndpointProxy `json:"proxy,omitempty"`

	// Suspend stops deliveries to this endpoint. Events keep being accepted and wait in the
	// queue until it is resumed.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// Header is one extra HTTP header, with a literal value or a value from a Secret.
//
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="set exactly one of value and valueFrom"
type Header struct {
	// Name of the header, e.g. X-Tenant.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9!#$%&*+.^_|~-]+$')",message="header name may contain only letters, digits and !#$%&*+.^_|~-"
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['content-type', 'content-length', 'content-encoding', 'transfer-encoding', 'accept-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect', 'host', 'x-idempotency-key'] || self.lowerAscii().startsWith('webhook-') || self.lowerAscii().startsWith('ce-') || self.lowerAscii().startsWith('proxy-'))",message="header is set by hookline and cannot be overridden: choose another name (webhook-*, ce-*, proxy-*, content-type, content-length, content-encoding, transfer-encoding, accept-encoding, connection, keep-alive, upgrade, te, trailer, expect, host and x-idempotency-key are reserved)"
	Name string `json:"name"`

	// Value is a literal value. Use valueFrom for anything secret.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule=`!self.matches('[\\x00-\\x08\\x0a-\\x1f\\x7f]')`,message="header value must be one line of printable text: remove line breaks and control characters"
	Value *string `json:"value,omitempty"`

	// ValueFrom reads the value from a Secret in the same namespace.
	// +optional
	ValueFrom *SecretKeyRef `json:"valueFrom,omitempty"`
}

// EndpointAuth authenticates deliveries. Exactly one method is set when auth is present.
//
// +kubebuilder:validation:XValidation:rule="[has(self.apiKey), has(self.basic), has(self.bearer), has(self.mtls), has(self.oauth2)].filter(x, x).size() == 1",message="auth must set exactly one of apiKey, basic, bearer, mtls and oauth2"
type EndpointAuth struct {
	// APIKey sends a key from a Secret in a header or a query parameter.
	// +optional
	APIKey *APIKeyAuth `json:"apiKey,omitempty"`

	// Basic sends HTTP basic credentials from a Secret with keys "username" and "password".
	// +optional
	Basic *SecretRef `json:"basic,omitempty"`

	// Bearer sends "Authorization: Bearer <token>" with the token from a Secret.
	// +optional
	Bearer *SecretKeyRef `json:"bearer,omitempty"`

	// MTLS presents a client certificate from a kubernetes.io/tls Secret (tls.crt, tls.key).
	// +optional
	MTLS *SecretRef `json:"mtls,omitempty"`

	// OAuth2 fetches an access token with the OAuth 2.0 client credentials grant and sends
	// "Authorization: Bearer <token>". Tokens are cached and refreshed before they expire.
	// +optional
	OAuth2 *OAuth2Auth `json:"oauth2,omitempty"`
}

// APIKeyAuth places an API key in a header or a query parameter.
//
// +kubebuilder:validation:XValidation:rule="(has(self.__in__) && self.__in__ == 'Query') || !(self.name.lowerAscii() in ['content-type', 'content-length', 'content-encoding', 'transfer-encoding', 'accept-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect', 'host', 'x-idempotency-key'] || self.name.lowerAscii().startsWith('webhook-') || self.name.lowerAscii().startsWith('ce-') || self.name.lowerAscii().startsWith('proxy-'))",message="spec.auth.apiKey.name: header is set by hookline and cannot carry an API key: choose another name, such as X-Api-Key"
type APIKeyAuth struct {
	// In is where the key goes.
	// +kubebuilder:default=Header
	// +optional
	In APIKeyLocation `json:"in,omitempty"`

	// Name of the header or query parameter, e.g. X-Api-Key or api_key.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&*+.^_|~-]+$`
	Name string `json:"name"`

	// ValueFrom reads the key from a Secret in the same namespace.
	ValueFrom SecretKeyRef `json:"valueFrom"`
}

// APIKeyLocation says where an API key is sent.
// +kubebuilder:validation:Enum=Header;Query
type APIKeyLocation string

const (
	APIKeyInHeader APIKeyLocation = "Header"
	APIKeyInQuery  APIKeyLocation = "Query"
)

// EndpointTLS configures verification of the receiver's certificate.
type EndpointTLS struct {
	// CA is a PEM bundle to trust instead of the system roots, from a Secret key.
	// +optional
	CA *SecretKeyRef `json:"ca,omitempty"`

	// ServerName overrides the name the certificate is checked against.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServerName string `json:"serverName,omitempty"`
}

// Signing chooses between a generated, rotated key and a key the user provides.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.rotation) && has(self.secretRef))",message="set either signing.rotation (hookline generates and rotates the key) or signing.secretRef (you provide the key, never rotated), not both"
// +kubebuilder:validation:XValidation:rule="!(has(self.algorithm) && self.algorithm == 'ed25519' && has(self.secretRef))",message="signing.algorithm: ed25519 keys are generated and rotated by hookline; remove signing.secretRef (it holds an HMAC whsec_ key) or set signing.algorithm to hmac-sha256"
type Signing struct {
	// Algorithm is how deliveries are signed: "hmac-sha256" (the default; Standard Webhooks
	// "v1," signatures with a shared whsec_ secret) or "ed25519" (Standard Webhooks "v1a,"
	// signatures; receivers verify with the public key published in status.signing and in
	// the ConfigMap named there). Changing it rotates to a new key of the new algorithm,
	// with the usual overlap.
	// +kubebuilder:validation:XValidation:rule="self in ['hmac-sha256', 'ed25519']",message="signing.algorithm must be hmac-sha256 or ed25519"
	// +optional
	Algorithm string `json:"algorithm,omitempty"`

	// Rotation schedules rotation of the generated key.
	// +optional
	Rotation *Rotation `json:"rotation,omitempty"`

	// SecretRef names a Secret key holding a user-provided "whsec_..." key. hookline uses it
	// as given and never rotates it.
	// +optional
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`
}

// Rotation schedules key rotation. During the overlap every delivery carries a signature
// from both the new and the previous key, so receivers switch without dropping a delivery.
//
// +kubebuilder:validation:XValidation:rule="duration(self.overlap) < duration(self.every)",message="rotation.overlap must be shorter than rotation.every"
type Rotation struct {
	// Every is how long a key is current before the next one replaces it (at least 1h, at most 8760h).
	// +kubebuilder:default="2160h"
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('8760h')",message="rotation.every must be between 1h and 8760h (one year)"
	Every *Duration `json:"every,omitempty"`

	// Overlap is how long the previous key still signs after a rotation (at most 720h).
	// +kubebuilder:default="24h"
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('720h')",message="rotation.overlap must be at most 720h (30 days)"
	Overlap *Duration `json:"overlap,omitempty"`
}

// EndpointLimits bound how hard hookline pushes an endpoint.
type EndpointLimits struct {
	// Timeout for one delivery attempt, connect to last byte (1s to 60s).
	// +kubebuilder:default="15s"
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('60s')",message="limits.timeout must be between 1s and 60s"
	Timeout *Duration `json:"timeout,omitempty"`

	// RateLimit caps requests per second to this endpoint, across all its subscriptions.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	RateLimit *int32 `json:"rateLimit,omitempty"`

	// Burst is how many requests may go at once above the rate. Default: the rate, at least 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	Burst *int32 `json:"burst,omitempty"`

	// MaxInFlight caps concurrent requests to this endpoint.
	// +kubebuilder:default=32
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxInFlight *int32 `json:"maxInFlight,omitempty"`

	// DisableAfter disables an endpoint that has only failed for this long (at least 1h).
	// The clock starts after repeated failures. The default is 120h (5 days).
	// +kubebuilder:default="120h"
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="limits.disableAfter must be at least 1h"
	DisableAfter *Duration `json:"disableAfter,omitempty"`
}

// WebhookEndpointStatus reports whether the endpoint is usable and how delivery goes.
type WebhookEndpointStatus struct {
	// ObservedGeneration is the spec generation this status describes; -1 until the
	// operator has seen the object, so no health check counts a new object as current
	// before the operator has looked at it.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling, Stalled (the operator); Delivering, Degraded,
	// Disabled (the dispatcher).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Signing reports the key schedule.
	// +optional
	Signing *SigningStatus `json:"signing,omitempty"`

	// Delivery summarises deliveries to this endpoint across all its subscriptions.
	// +optional
	Delivery *DeliveryStatus `json:"delivery,omitempty"`

	// LastHandledEnable is the value of the hookline.io/enable annotation the dispatcher
	// last acted on. Setting the annotation to any other value re-enables the endpoint.
	// +optional
	LastHandledEnable string `json:"lastHandledEnable,omitempty"`
}

// SigningStatus reports where the signing key lives and when it changes next. It never
// holds key material.
type SigningStatus struct {
	// SecretName is the Secret holding the keys.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// CurrentKeyID identifies the key that signs now.
	// +optional
	CurrentKeyID string `json:"currentKeyID,omitempty"`

	// PreviousKeyID identifies the key that still signs during an overlap.
	// +optional
	PreviousKeyID string `json:"previousKeyID,omitempty"`

	// LastRotationTime is when the current key became current.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`

	// NextRotationTime is when the next scheduled rotation happens; empty when the key is
	// user-provided.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`

	// PreviousKeyExpiresAt is when the previous key stops signing.
	// +optional
	PreviousKeyExpiresAt *metav1.Time `json:"previousKeyExpiresAt,omitempty"`

	// Algorithm is the algorithm of the current key: hmac-sha256 or ed25519.
	// +optional
	Algorithm string `json:"algorithm,omitempty"`

	// PublicKeys are the public halves of the ed25519 keys that sign now, current first
	// (during an overlap, the previous keys too). Empty for HMAC keys.
	// +optional
	// +listType=atomic
	PublicKeys []SigningPublicKey `json:"publicKeys,omitempty"`

	// PublicKeysConfigMap names the ConfigMap, in the endpoint's namespace, that holds the
	// same public keys for receivers to read; empty for HMAC keys.
	// +optional
	PublicKeysConfigMap string `json:"publicKeysConfigMap,omitempty"`
}

// SigningPublicKey is the public half of an ed25519 signing key.
type SigningPublicKey struct {
	// KeyID identifies the key, as currentKeyID and previousKeyID do.
	KeyID string `json:"keyID"`

	// PublicKey is "whpk_" followed by the standard base64 of the 32-byte ed25519 public key.
	PublicKey string `json:"publicKey"`

	// ExpiresAt is when the key stops signing; empty for the current key.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// WebhookEndpoint is a receiver of webhooks: its URL, authentication, signing key and limits.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whep,categories=hookline
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Last Delivery",type=date,JSONPath=`.status.delivery.lastDeliveryTime`
// +kubebuilder:printcolumn:name="Failures",type=integer,JSONPath=`.status.delivery.consecutiveFailures`
// +kubebuilder:printcolumn:name="Next Rotation",type=string,JSONPath=`.status.signing.nextRotationTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type WebhookEndpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec WebhookEndpointSpec `json:"spec"`
	// +kubebuilder:default={"observedGeneration":-1}
	Status WebhookEndpointStatus `json:"status,omitempty"`
}

// WebhookEndpointList is a list of WebhookEndpoints.
//
// +kubebuilder:object:root=true
type WebhookEndpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebhookEndpoint `json:"items"`
}
