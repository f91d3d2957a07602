package v1alpha1

// Secrets whose values a WebhookEndpoint sends to its URL (headers, auth, the
// TLS CA) must opt in with this label, set to "true", unless the
// installation turns the rule off. Whoever may create a WebhookEndpoint may
// choose its URL, so without the rule that right would read any Secret of the
// namespace.
const LabelEndpointSecret = "hookline.io/endpoint-secret" //nolint:gosec // G101: a label name, not a credential

// ReasonSecretNotOptedIn: the endpoint refers to a Secret that does not carry
// LabelEndpointSecret: "true".
const ReasonSecretNotOptedIn = "SecretNotOptedIn"
