// Package v1alpha1 holds the hookline.io/v1alpha1 API: WebhookEndpoint (where and how to
// deliver) and Subscription (which events go to an endpoint, with what delivery policy).
//
// Validation lives in the types' markers (OpenAPI and CEL rules), so the API server enforces
// it without an admission webhook. Messages name the field and the fix.
//
// +kubebuilder:object:generate=true
// +groupName=hookline.io
package v1alpha1
