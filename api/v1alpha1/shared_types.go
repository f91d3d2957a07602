package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// SecretKeyRef selects one key of a Secret in the same namespace as the object that refers
// to it. References never cross namespaces.
type SecretKeyRef struct {
	// Name of the Secret, in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="name must be a lowercase DNS subdomain (letters, digits, '-' and '.'), like my-secret"
	Name string `json:"name"`

	// Key within the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// SecretRef names a whole Secret in the same namespace.
type SecretRef struct {
	// Name of the Secret, in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="name must be a lowercase DNS subdomain (letters, digits, '-' and '.'), like my-secret"
	Name string `json:"name"`
}

// DeliveryStatus summarises how delivery is going, aggregated across dispatcher replicas.
type DeliveryStatus struct {
	// Delivered counts deliveries that got a 2xx answer.
	// +optional
	Delivered int64 `json:"delivered,omitempty"`

	// Failed counts attempts that did not get a 2xx answer (each retry counts).
	// +optional
	Failed int64 `json:"failed,omitempty"`

	// Dead counts deliveries that used up their retries; they are kept and can be replayed.
	// +optional
	Dead int64 `json:"dead,omitempty"`

	// Backlog is the number of deliveries queued to be sent now or being sent. It does
	// not count retries waiting for their scheduled time, nor deliveries held while the
	// circuit is open or the endpoint is disabled: those wait as schedules, which the
	// queue cannot count cheaply. On a Subscription it is set only for ordered delivery;
	// unordered subscriptions share their endpoint's queue, whose backlog the endpoint
	// reports.
	// +optional
	Backlog int64 `json:"backlog,omitempty"`

	// ConsecutiveFailures counts failed attempts since the last success.
	// +optional
	ConsecutiveFailures int64 `json:"consecutiveFailures,omitempty"`

	// LastDeliveryTime is when the last successful delivery was made.
	// +optional
	LastDeliveryTime *metav1.Time `json:"lastDeliveryTime,omitempty"`

	// LastFailure describes the most recent failed attempt.
	// +optional
	LastFailure *DeliveryFailure `json:"lastFailure,omitempty"`
}

// DeliveryFailure describes one failed attempt without response secrets.
type DeliveryFailure struct {
	// Time of the attempt.
	Time metav1.Time `json:"time"`

	// StatusCode is the HTTP status the receiver answered, or 0 when there was no answer.
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`

	// Reason says what went wrong, e.g. "timeout after 15s" or "HTTP 503".
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
}

// Condition types and reasons shared by both kinds. The operator writes Ready, Reconciling
// and Stalled (the kstatus contract, see docs/status.md); the dispatcher writes Delivering,
// Degraded and Disabled. Ready summarises them: the operator reads Disabled and turns it
// into Ready=False, so a GitOps tool needs to read only Ready, Reconciling and Stalled.
const (
	// ConditionReady is the kstatus readiness condition that Argo CD and Flux read.
	ConditionReady = "Ready"
	// ConditionReconciling is True while Ready is False for a reason that passes without a
	// person: a referenced Secret or endpoint that is not there yet.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True while Ready is False for a configuration error that only a
	// person can fix; the reason and message are Ready's.
	ConditionStalled = "Stalled"
	// ConditionDelivering is True while deliveries succeed.
	ConditionDelivering = "Delivering"
	// ConditionDegraded is True while deliveries fail.
	ConditionDegraded = "Degraded"
	// ConditionDisabled is True when an endpoint was disabled and needs a person to re-enable it.
	ConditionDisabled = "Disabled"

	// Reasons of the dispatcher's conditions (Delivering, Degraded, Disabled).

	// ReasonDelivering: the last attempt succeeded.
	ReasonDelivering = "Delivering"
	// ReasonNoDeliveries: nothing has been attempted yet.
	ReasonNoDeliveries = "NoDeliveries"
	// ReasonDeliveryFailing: the last attempts failed.
	ReasonDeliveryFailing = "DeliveryFailing"
	// ReasonCircuitOpen: the endpoint failed repeatedly; deliveries are held until a probe
	// succeeds.
	ReasonCircuitOpen = "CircuitOpen"
	// ReasonEndpointDisabled: the endpoint is disabled; deliveries are held until it is
	// re-enabled (see the Disabled condition).
	ReasonEndpointDisabled = "EndpointDisabled"
	// ReasonEndpointGone: the receiver answered 410 Gone.
	ReasonEndpointGone = "EndpointGone"
	// ReasonReceiverRequested: the receiver answered webhook-delivery: disable.
	ReasonReceiverRequested = "ReceiverRequested"
	// ReasonFailingTooLong: every delivery failed for longer than limits.disableAfter.
	ReasonFailingTooLong = "FailingTooLong"
	// ReasonEnabled: the endpoint is not disabled.
	ReasonEnabled = "Enabled"

	// Reasons of the operator's conditions (Ready, Reconciling, Stalled).

	ReasonReady     = "Ready"
	ReasonSuspended = "Suspended"
	// ReasonSecretNotFound: a referenced Secret does not exist (yet). Reconciling.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretInvalid: a referenced Secret lacks a key or holds a value the dispatcher
	// cannot send (e.g. a control character in a header value). Stalled.
	ReasonSecretInvalid = "SecretInvalid"
	// ReasonTLSInvalid: the CA bundle holds no PEM certificate, or the client certificate
	// does not load or match its key. Stalled.
	ReasonTLSInvalid = "TLSInvalid"
	// ReasonInvalidConfiguration: the dispatcher refuses the spec for a reason the CRD's
	// rules do not catch (an object stored before a rule existed). Stalled.
	ReasonInvalidConfiguration = "InvalidConfiguration"
	ReasonEndpointNotFound     = "EndpointNotFound"
	ReasonEndpointNotReady     = "EndpointNotReady"
	// ReasonInvalidFilter: spec.filter does not compile. Stalled.
	ReasonInvalidFilter = "InvalidFilter"
	// ReasonInvalidOrderingKey: spec.delivery.orderingKey does not compile. Stalled.
	ReasonInvalidOrderingKey = "InvalidOrderingKey"
	// ReasonSigningKeyInvalid: the signing key cannot be set up. Stalled.
	ReasonSigningKeyInvalid = "SigningKeyInvalid"
)
