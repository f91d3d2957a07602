package readiness

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func TestSubscription(t *testing.T) {
	tests := []struct {
		name    string
		in      SubscriptionInput
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{"ready", SubscriptionInput{EndpointName: "b", EndpointFound: true, EndpointReady: true},
			metav1.ConditionTrue, hooklinev1.ReasonReady, `WebhookEndpoint "b"`},
		{"endpoint missing", SubscriptionInput{EndpointName: "b"},
			metav1.ConditionFalse, hooklinev1.ReasonEndpointNotFound, "fix spec.endpointRef.name"},
		{"endpoint not ready", SubscriptionInput{EndpointName: "b", EndpointFound: true, EndpointReason: "SecretNotFound"},
			metav1.ConditionFalse, hooklinev1.ReasonEndpointNotReady, "(SecretNotFound)"},
		{"endpoint not reconciled yet", SubscriptionInput{EndpointName: "b", EndpointFound: true},
			metav1.ConditionFalse, hooklinev1.ReasonEndpointNotReady, "not reconciled yet"},
		{"bad filter wins over a missing endpoint", SubscriptionInput{EndpointName: "b", FilterError: errors.New("syntax error")},
			metav1.ConditionFalse, hooklinev1.ReasonInvalidFilter, "spec.filter does not compile: syntax error"},
		{"suspended", SubscriptionInput{EndpointName: "b", EndpointFound: true, EndpointReady: true, Suspended: true},
			metav1.ConditionTrue, hooklinev1.ReasonSuspended, "spec.suspend"},
		{"suspended but broken is not ready", SubscriptionInput{EndpointName: "b", Suspended: true},
			metav1.ConditionFalse, hooklinev1.ReasonEndpointNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Subscription(tt.in)
			if got.Status != tt.status || got.Reason != tt.reason || !strings.Contains(got.Message, tt.message) {
				t.Errorf("got %+v, want %s/%s containing %q", got, tt.status, tt.reason, tt.message)
			}
			c := got.Condition(7)
			if c.Type != hooklinev1.ConditionReady || c.ObservedGeneration != 7 {
				t.Errorf("condition %+v: want type Ready and observedGeneration 7", c)
			}
		})
	}
}

func TestEndpoint(t *testing.T) {
	missing := SecretProblem{Field: "spec.auth.bearer", Secret: "tok", Missing: true}
	noKey := SecretProblem{Field: "spec.headers[0].valueFrom", Secret: "cfg", Key: "region"}
	bad := SecretProblem{Field: "spec.tls.ca", Secret: "ca", Key: "ca.crt", Detail: "is not PEM"}
	notOptedIn := SecretProblem{Field: "spec.auth.bearer", Secret: "db-password", NotOptedIn: true}
	notOptedInHeader := SecretProblem{Field: "spec.headers[1].valueFrom", Secret: "db-password", NotOptedIn: true}
	tests := []struct {
		name     string
		in       EndpointInput
		status   metav1.ConditionStatus
		reason   string
		messages []string
	}{
		{"ready", EndpointInput{}, metav1.ConditionTrue, hooklinev1.ReasonReady, []string{"configured"}},
		{"missing Secret", EndpointInput{SecretProblems: []SecretProblem{missing}}, metav1.ConditionFalse, hooklinev1.ReasonSecretNotFound,
			[]string{`spec.auth.bearer refers to Secret "tok", which does not exist`, "Create the Secret or fix the reference"}},
		{"missing key", EndpointInput{SecretProblems: []SecretProblem{noKey}}, metav1.ConditionFalse, hooklinev1.ReasonSecretInvalid,
			[]string{`spec.headers[0].valueFrom: Secret "cfg" has no key "region"`}},
		{"bad value", EndpointInput{SecretProblems: []SecretProblem{bad}}, metav1.ConditionFalse, hooklinev1.ReasonSecretInvalid,
			[]string{`spec.tls.ca: key "ca.crt" of Secret "ca" is not PEM`}},
		{"a missing Secret names the reason even after a bad key", EndpointInput{SecretProblems: []SecretProblem{noKey, missing}},
			metav1.ConditionFalse, hooklinev1.ReasonSecretNotFound, []string{"region", "tok"}},
		{"Secret not opted in", EndpointInput{SecretProblems: []SecretProblem{notOptedIn, notOptedInHeader}}, metav1.ConditionFalse, hooklinev1.ReasonSecretNotOptedIn,
			[]string{`spec.auth.bearer refers to Secret "db-password", which is not labelled hookline.io/endpoint-secret: "true"`,
				"kubectl label secret db-password hookline.io/endpoint-secret=true", "--require-secret-opt-in=false"}},
		{"a missing Secret comes before opting in", EndpointInput{SecretProblems: []SecretProblem{notOptedIn, missing}}, metav1.ConditionFalse, hooklinev1.ReasonSecretNotFound,
			[]string{"Create the Secret", "kubectl label secret db-password "}},
		{"signing problem", EndpointInput{SigningError: errors.New("key is too short")}, metav1.ConditionFalse,
			hooklinev1.ReasonSigningKeyInvalid, []string{"key is too short"}},
		{"suspended", EndpointInput{Suspended: true}, metav1.ConditionTrue, hooklinev1.ReasonSuspended, []string{"spec.suspend"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Endpoint(tt.in)
			if got.Status != tt.status || got.Reason != tt.reason {
				t.Fatalf("got %s/%s, want %s/%s", got.Status, got.Reason, tt.status, tt.reason)
			}
			for _, m := range tt.messages {
				if !strings.Contains(got.Message, m) {
					t.Errorf("message %q does not contain %q", got.Message, m)
				}
			}
		})
	}
}
