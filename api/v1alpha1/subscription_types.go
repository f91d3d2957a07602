package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SubscriptionSpec says which events go to an endpoint and how they are delivered.
type SubscriptionSpec struct {
	// EndpointRef names the WebhookEndpoint in the same namespace.
	EndpointRef EndpointRef `json:"endpointRef"`

	// EventTypes are the event-type patterns this subscription receives: dotted segments of
	// letters, digits, '_' and '-', where a segment may be '*'. A '*' in the middle matches
	// one segment; a trailing '*' matches one or more, so "invoice.*" matches "invoice.paid"
	// and "invoice.paid.late", and "*" matches every event.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^([A-Za-z0-9_-]+|[*])([.]([A-Za-z0-9_-]+|[*]))*$')",message="event type pattern must be dotted segments of letters, digits, '_' or '-', where a whole segment may be '*' (e.g. invoice.paid, invoice.*, *)"
	EventTypes []string `json:"eventTypes"`

	// Filter is a CEL expression over the event that must return true for the event to be
	// delivered, e.g. `data.amount > 1000`. Variables: type (string), id (string), time
	// (timestamp) and data (the event's JSON payload, dynamically typed). The namespace is
	// not a variable: a Subscription only ever sees its own namespace's events.
	// An expression that does not compile makes the Subscription Ready=False and
	// Stalled=True with reason InvalidFilter and the compiler's message.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Filter string `json:"filter,omitempty"`

	// Payload chooses the body format.
	// +optional
	Payload *Payload `json:"payload,omitempty"`

	// Delivery overrides the default retry policy.
	// +optional
	Delivery *DeliveryPolicy `json:"delivery,omitempty"`

	// Suspend stops deliveries for this subscription; matching events are not queued for it
	// while it is suspended.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// EndpointRef names a WebhookEndpoint in the same namespace.
type EndpointRef struct {
	// Name of the WebhookEndpoint.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="endpointRef.name must be the name of a WebhookEndpoint in this namespace (a lowercase DNS subdomain)"
	Name string `json:"name"`
}

// Payload chooses how an event is put on the wire.
type Payload struct {
	// Format: StandardWebhooks (JSON envelope {type, timestamp, data}), CloudEventsStructured
	// (application/cloudevents+json) or CloudEventsBinary (ce-* headers, data as the body).
	// Every format carries the Standard Webhooks signature headers.
	// +kubebuilder:default=StandardWebhooks
	// +optional
	Format PayloadFormat `json:"format,omitempty"`
}

// PayloadFormat names a body format.
// +kubebuilder:validation:Enum=StandardWebhooks;CloudEventsStructured;CloudEventsBinary
type PayloadFormat string

const (
	PayloadStandardWebhooks      PayloadFormat = "StandardWebhooks"
	PayloadCloudEventsStructured PayloadFormat = "CloudEventsStructured"
	PayloadCloudEventsBinary     PayloadFormat = "CloudEventsBinary"
)

// DeliveryPolicy controls retries. The default schedule is the Standard Webhooks one: right
// away, then 5s, 5m, 30m, 2h, 5h, 10h, 14h, 20h and 24h later (about three days), each with
// ±20% jitter.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.schedule) && has(self.exponential))",message="set either delivery.schedule or delivery.exponential, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.orderingKey) || (has(self.ordering) && self.ordering == 'Ordered')",message="delivery.orderingKey needs delivery.ordering: Ordered (ordering per key is ordered delivery with one order per key); set it, or remove orderingKey"
// +kubebuilder:validation:XValidation:rule="!has(self.orderingLanes) || has(self.orderingKey)",message="delivery.orderingLanes needs delivery.orderingKey: lanes split an ordered subscription's keys; set orderingKey, or remove orderingLanes"
type DeliveryPolicy struct {
	// Schedule lists the delay before each retry, e.g. ["5s", "5m", "30m"].
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:XValidation:rule="duration(self) <= duration('168h')",message="each delay in delivery.schedule must be at most 168h"
	Schedule []Duration `json:"schedule,omitempty"`

	// Exponential retries with growing delays instead of a fixed schedule.
	// +optional
	Exponential *ExponentialBackoff `json:"exponential,omitempty"`

	// MaxAttempts caps attempts, the first one included. Default: one more than the
	// schedule's length (11 with the default schedule); 20 with exponential backoff.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxAttempts *int32 `json:"maxAttempts,omitempty"`

	// MaxAge stops retrying a delivery this long after its first attempt (1m to 720h).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('720h')",message="delivery.maxAge must be between 1m and 720h (30 days)"
	MaxAge *Duration `json:"maxAge,omitempty"`

	// Timeout for one attempt; overrides the endpoint's limits.timeout (1s to 60s).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('60s')",message="delivery.timeout must be between 1s and 60s"
	Timeout *Duration `json:"timeout,omitempty"`

	// RetryAfterMax caps how long a receiver's Retry-After header can delay a retry
	// (1s to 24h).
	// +kubebuilder:default="1h"
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="delivery.retryAfterMax must be between 1s and 24h"
	RetryAfterMax *Duration `json:"retryAfterMax,omitempty"`

	// ClientErrors says what a 4xx answer means: Retry (default; every non-2xx is retried) or
	// Drop (a 4xx other than 408 and 429 fails the delivery at once, as HubSpot does).
	// 410 Gone always disables the endpoint.
	// +kubebuilder:default=Retry
	// +optional
	ClientErrors ClientErrorPolicy `json:"clientErrors,omitempty"`

	// Ordering: Unordered (default, deliveries run in parallel) or Ordered (one in flight at a
	// time, in publish order; a failing delivery holds the ones behind it). With orderingKey,
	// Ordered keeps one order per key instead of one for the whole subscription.
	// +kubebuilder:default=Unordered
	// +optional
	Ordering Ordering `json:"ordering,omitempty"`

	// OrderingKey makes Ordered delivery per key: a CEL expression over the event that gives
	// its key, e.g. `data.customerId`, with the variables of spec.filter (type, id, time,
	// data). Deliveries with the same key arrive in publish order, one at a time; different
	// keys go in parallel, up to the endpoint's limits.maxInFlight. Keys are hashed onto
	// orderingLanes lanes, each delivering one at a time; a failing delivery holds only the
	// later deliveries of its own key, which wait on disk while its lane goes on. The
	// expression must give a string (write string(data.id) for a number); an event for which
	// it fails (a missing field) or gives no string gets the empty key, and those events keep
	// one order among themselves. An expression that does not compile, or may cost more
	// than a filter may, makes the Subscription Ready=False and Stalled=True with reason
	// InvalidOrderingKey. Requires ordering: Ordered.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	OrderingKey string `json:"orderingKey,omitempty"`

	// OrderingLanes is how many lanes the keys of orderingKey are hashed onto (1 to 256,
	// default 16): at most this many keys are delivered at once, and the rest wait on disk
	// in their lane. Changing it, or the key, while deliveries are queued moves later
	// deliveries of a key to another lane; the queued ones are still delivered, but may
	// arrive after those later ones. Requires orderingKey.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	OrderingLanes *int32 `json:"orderingLanes,omitempty"`
}

// ExponentialBackoff grows the delay by Multiplier after each failure, up to MaxInterval.
type ExponentialBackoff struct {
	// InitialInterval before the first retry (1s to 1h).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="exponential.initialInterval must be between 1s and 1h"
	InitialInterval Duration `json:"initialInterval"`

	// MaxInterval caps one delay (1s to 168h).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('168h')",message="exponential.maxInterval must be between 1s and 168h"
	MaxInterval Duration `json:"maxInterval"`

	// Multiplier applied after each failure (2 to 10).
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=10
	Multiplier int32 `json:"multiplier,omitempty"`
}

// ClientErrorPolicy says whether 4xx answers are retried.
// +kubebuilder:validation:Enum=Retry;Drop
type ClientErrorPolicy string

const (
	ClientErrorsRetry ClientErrorPolicy = "Retry"
	ClientErrorsDrop  ClientErrorPolicy = "Drop"
)

// Ordering says whether deliveries keep publish order.
// +kubebuilder:validation:Enum=Unordered;Ordered
type Ordering string

const (
	OrderingUnordered Ordering = "Unordered"
	OrderingOrdered   Ordering = "Ordered"
)

// SubscriptionStatus reports whether the subscription is live and how delivery goes.
type SubscriptionStatus struct {
	// ObservedGeneration is the spec generation this status describes; -1 until the
	// operator has seen the object, so no health check counts a new object as current
	// before the operator has looked at it.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling, Stalled (the operator); Delivering, Degraded
	// (the dispatcher).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Delivery summarises this subscription's deliveries.
	// +optional
	Delivery *DeliveryStatus `json:"delivery,omitempty"`
}

// Subscription routes event types (optionally filtered) to a WebhookEndpoint.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whsub,categories=hookline
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpointRef.name`
// +kubebuilder:printcolumn:name="Event Types",type=string,JSONPath=`.spec.eventTypes`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Delivered",type=integer,JSONPath=`.status.delivery.delivered`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.delivery.failed`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Subscription struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec SubscriptionSpec `json:"spec"`
	// +kubebuilder:default={"observedGeneration":-1}
	Status SubscriptionStatus `json:"status,omitempty"`
}

// SubscriptionList is a list of Subscriptions.
//
// +kubebuilder:object:root=true
type SubscriptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Subscription `json:"items"`
}
