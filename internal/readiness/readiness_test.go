package readiness

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
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
		{"bad ordering key wins over a missing endpoint", SubscriptionInput{EndpointName: "b", OrderingKeyError: errors.New("spec.delivery.orderingKey does not compile: x")},
			metav1.ConditionFalse, hooklinev1.ReasonInvalidOrderingKey, "spec.delivery.orderingKey does not compile: x."},
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
		{"CA the dispatcher cannot load", EndpointInput{TargetError: errTLSRefusal}, metav1.ConditionFalse, hooklinev1.ReasonTLSInvalid,
			[]string{"CA bundle holds no PEM certificate", "fix the Secret"}},
		{"header value the dispatcher cannot send", EndpointInput{TargetError: errValueRefusal}, metav1.ConditionFalse, hooklinev1.ReasonSecretInvalid,
			[]string{"control characters", "fix the Secret"}},
		{"disabled by the dispatcher", EndpointInput{Disabled: &metav1.Condition{Message: "The receiver answered 410 Gone. To re-enable it: kubectl annotate"}},
			metav1.ConditionFalse, hooklinev1.ReasonEndpointDisabled, []string{"410 Gone", "To re-enable it"}},
		{"disabled wins over suspended", EndpointInput{Suspended: true, Disabled: &metav1.Condition{Message: "x"}},
			metav1.ConditionFalse, hooklinev1.ReasonEndpointDisabled, nil},
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

var (
	errTLSRefusal   = delivery.CheckTarget(delivery.TargetConfig{URL: "https://example.com", CABundle: []byte("not PEM")})
	errValueRefusal = delivery.CheckTarget(delivery.TargetConfig{URL: "https://example.com", Headers: map[string][]string{"X-A": {"a\nb"}}})
)

// TestConditions pins which companion condition each kind of Ready=False gets: kstatus
// and Argo CD fail fast on Stalled and wait on Reconciling.
func TestConditions(t *testing.T) {
	tests := []struct {
		name  string
		r     Result
		types []string
	}{
		{"ready", Endpoint(EndpointInput{}), []string{hooklinev1.ConditionReady}},
		{"suspended", Endpoint(EndpointInput{Suspended: true}), []string{hooklinev1.ConditionReady}},
		{"Secret not there yet", Endpoint(EndpointInput{SecretProblems: []SecretProblem{{Field: "f", Secret: "s", Missing: true}}}),
			[]string{hooklinev1.ConditionReady, hooklinev1.ConditionReconciling}},
		{"Secret without its key", Endpoint(EndpointInput{SecretProblems: []SecretProblem{{Field: "f", Secret: "s", Key: "k"}}}),
			[]string{hooklinev1.ConditionReady, hooklinev1.ConditionStalled}},
		{"TLS", Endpoint(EndpointInput{TargetError: errTLSRefusal}), []string{hooklinev1.ConditionReady, hooklinev1.ConditionStalled}},
		{"signing", Endpoint(EndpointInput{SigningError: errors.New("bad")}), []string{hooklinev1.ConditionReady, hooklinev1.ConditionStalled}},
		{"disabled", Endpoint(EndpointInput{Disabled: &metav1.Condition{}}), []string{hooklinev1.ConditionReady, hooklinev1.ConditionStalled}},
		{"filter", Subscription(SubscriptionInput{FilterError: errors.New("x")}), []string{hooklinev1.ConditionReady, hooklinev1.ConditionStalled}},
		{"endpoint missing", Subscription(SubscriptionInput{EndpointName: "b"}), []string{hooklinev1.ConditionReady, hooklinev1.ConditionReconciling}},
		{"endpoint not ready", Subscription(SubscriptionInput{EndpointName: "b", EndpointFound: true}),
			[]string{hooklinev1.ConditionReady, hooklinev1.ConditionReconciling}},
		{"endpoint stalled", Subscription(SubscriptionInput{EndpointName: "b", EndpointFound: true, EndpointStalled: true}),
			[]string{hooklinev1.ConditionReady, hooklinev1.ConditionStalled}},
	}
	for _, tt := range tests {
		var types []string
		for _, c := range tt.r.Conditions(3) {
			types = append(types, c.Type)
			if c.ObservedGeneration != 3 || c.Reason != tt.r.Reason {
				t.Errorf("%s: condition %+v does not carry Ready's reason and generation", tt.name, c)
			}
			if c.Type != hooklinev1.ConditionReady && c.Status != metav1.ConditionTrue {
				t.Errorf("%s: %s is %s, want True", tt.name, c.Type, c.Status)
			}
		}
		if strings.Join(types, ",") != strings.Join(tt.types, ",") {
			t.Errorf("%s: conditions %v, want %v", tt.name, types, tt.types)
		}
	}
}
