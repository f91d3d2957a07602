package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of hookline's resources.
	GroupVersion = schema.GroupVersion{Group: "hookline.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types with a runtime.Scheme. It is apimachinery's, not
	// controller-runtime's, so programs that import these types need nothing else.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types in this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&WebhookEndpoint{}, &WebhookEndpointList{},
		&Subscription{}, &SubscriptionList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
