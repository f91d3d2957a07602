package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// EventTypeSpec describes one event type a namespace publishes: its name, what it means,
// the shape of its data and an example.
//
// +kubebuilder:validation:XValidation:rule="!has(self.enforce) || !self.enforce || has(self.schema)",message="spec.enforce needs spec.schema: there is nothing to enforce without a schema"
type EventTypeSpec struct {
	// Type is the event type, exactly as events carry it in their type field: dotted
	// segments of letters, digits, '_' and '-', such as invoice.paid. No wildcards.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_-]+([.][A-Za-z0-9_-]+)*$')",message="spec.type must be an event type: dotted segments of letters, digits, '_' or '-', without wildcards (e.g. invoice.paid)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.type cannot be changed; create another EventType for another type"
	Type string `json:"type"`

	// Version is a free-form label for this revision of the type's contract, e.g. v1 or
	// 2026-11-01. It is shown by kubectl get and not interpreted.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version,omitempty"`

	// Description says what the event means and when it is published.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Description string `json:"description,omitempty"`

	// Schema is a JSON Schema (draft 2020-12 unless it names another draft in $schema)
	// for the event's data. Only the schema itself is read: a $ref to another document
	// is refused. The API server cannot check JSON Schema, so the operator does: an
	// invalid schema makes the EventType Ready=False with reason InvalidSchema, and the
	// dispatcher does not enforce it. It must be a JSON object (the boolean schemas true
	// and false are refused: neither describes data).
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Schema *apiextensionsv1.JSON `json:"schema,omitempty"`

	// Example is a sample of the event's data. It must validate against Schema; test sends
	// (POST .../webhookendpoints/{name}/test) send it.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	Example *apiextensionsv1.JSON `json:"example,omitempty"`

	// Deprecated marks a type that producers should stop publishing. Events of the type
	// are still accepted and delivered.
	// +optional
	Deprecated bool `json:"deprecated,omitempty"`

	// Enforce has the dispatcher refuse events of this type whose data does not match
	// Schema: the producer gets 422 naming the JSON path and the rule, and nothing is
	// stored. Without it the schema is documentation.
	// +optional
	Enforce bool `json:"enforce,omitempty"`
}

// EventTypeStatus reports whether the schema and example are valid and who subscribes.
type EventTypeStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (the schema compiles and the example matches it).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// MatchingSubscriptions counts the Subscriptions of the namespace whose eventTypes
	// patterns match this type.
	// +optional
	MatchingSubscriptions *int32 `json:"matchingSubscriptions,omitempty"`
}

// EventType is one entry of a namespace's event catalog.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=whet,categories=hookline
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Enforce",type=boolean,JSONPath=`.spec.enforce`
// +kubebuilder:printcolumn:name="Deprecated",type=boolean,JSONPath=`.spec.deprecated`
// +kubebuilder:printcolumn:name="Subscriptions",type=integer,JSONPath=`.status.matchingSubscriptions`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EventType struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   EventTypeSpec   `json:"spec"`
	Status EventTypeStatus `json:"status,omitempty"`
}

// EventTypeList is a list of EventTypes.
//
// +kubebuilder:object:root=true
type EventTypeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EventType `json:"items"`
}

// Reasons and conditions of the event catalog.
const (
	// ReasonValid: the schema compiles and the example (if any) matches it.
	ReasonValid = "Valid"
	// ReasonInvalidSchema: spec.schema is not a valid JSON Schema.
	ReasonInvalidSchema = "InvalidSchema"
	// ReasonInvalidExample: spec.example does not match spec.schema.
	ReasonInvalidExample = "InvalidExample"

	// ConditionUnknownEventTypes, on a Subscription, warns that its patterns match no
	// EventType of a namespace that has a catalog. It does not affect Ready.
	ConditionUnknownEventTypes = "UnknownEventTypes"
	// ReasonNoMatchingEventType is UnknownEventTypes=True's reason.
	ReasonNoMatchingEventType = "NoMatchingEventType"
)

func init() {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &EventType{}, &EventTypeList{})
		return nil
	})
}
