package readiness

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/secretrefs"
)

// Result is the Ready condition to write.
type Result struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
}

// Condition turns the result into a Ready condition for the given generation.
func (r Result) Condition(generation int64) metav1.Condition {
	return metav1.Condition{
		Type:               hooklinev1.ConditionReady,
		Status:             r.Status,
		Reason:             r.Reason,
		Message:            r.Message,
		ObservedGeneration: generation,
	}
}

// SubscriptionInput is what the Subscription reconciler observed.
type SubscriptionInput struct {
	EndpointName   string
	EndpointFound  bool
	EndpointReady  bool
	EndpointReason string // the endpoint's Ready reason when it is not ready
	FilterError    error  // nil when there is no filter or it compiles
	Suspended      bool
}

// Subscription decides a Subscription's Ready condition. The order matters: a user fixes
// the problem named first, so the most fundamental one comes first.
func Subscription(in SubscriptionInput) Result {
	switch {
	case in.FilterError != nil:
		return Result{metav1.ConditionFalse, hooklinev1.ReasonInvalidFilter,
			fmt.Sprintf("spec.filter does not compile: %v. Fix the CEL expression; it can use type, id, time and data.", in.FilterError)}
	case !in.EndpointFound:
		return Result{metav1.ConditionFalse, hooklinev1.ReasonEndpointNotFound,
			fmt.Sprintf("WebhookEndpoint %q does not exist in this namespace. Create it or fix spec.endpointRef.name.", in.EndpointName)}
	case !in.EndpointReady:
		reason := in.EndpointReason
		if reason == "" {
			reason = "not reconciled yet"
		}
		return Result{metav1.ConditionFalse, hooklinev1.ReasonEndpointNotReady,
			fmt.Sprintf("WebhookEndpoint %q is not ready (%s). See its status: kubectl describe whep %s.", in.EndpointName, reason, in.EndpointName)}
	case in.Suspended:
		return Result{metav1.ConditionTrue, hooklinev1.ReasonSuspended,
			"Deliveries are suspended; set spec.suspend to false to resume."}
	default:
		return Result{metav1.ConditionTrue, hooklinev1.ReasonReady,
			fmt.Sprintf("Events are routed to WebhookEndpoint %q.", in.EndpointName)}
	}
}

// SecretProblem is a referenced Secret that cannot be used.
type SecretProblem struct {
	Field   string // the spec field that refers to it, e.g. spec.auth.bearer
	Secret  string
	Key     string // empty when the whole Secret is missing
	Missing bool   // the Secret does not exist (otherwise the key is missing or invalid)
	Detail  string // what is wrong with the value, never the value itself
	// NotOptedIn: the value would be sent to the endpoint, and the Secret does
	// not carry the opt-in label.
	NotOptedIn bool
}

func (p SecretProblem) String() string {
	switch {
	case p.Missing:
		return fmt.Sprintf("%s refers to Secret %q, which does not exist", p.Field, p.Secret)
	case p.NotOptedIn:
		return secretrefs.NotOptedIn(secretrefs.Ref{Field: p.Field, Secret: p.Secret})
	case p.Detail != "":
		return fmt.Sprintf("%s: key %q of Secret %q %s", p.Field, p.Key, p.Secret, p.Detail)
	default:
		return fmt.Sprintf("%s: Secret %q has no key %q", p.Field, p.Secret, p.Key)
	}
}

// EndpointInput is what the WebhookEndpoint reconciler observed.
type EndpointInput struct {
	SecretProblems []SecretProblem
	SigningError   error // the signing key could not be set up
	Suspended      bool
}

// Endpoint decides a WebhookEndpoint's Ready condition.
func Endpoint(in EndpointInput) Result {
	if len(in.SecretProblems) > 0 {
		reason := ""
		msgs := make([]string, 0, len(in.SecretProblems))
		var notOptedIn []string
		notOptedInRefs := 0
		for _, p := range in.SecretProblems {
			switch {
			case p.Missing:
				reason = hooklinev1.ReasonSecretNotFound
			case p.NotOptedIn:
				notOptedInRefs++
				if reason == "" {
					reason = hooklinev1.ReasonSecretNotOptedIn
				}
				if !slices.Contains(notOptedIn, p.Secret) {
					notOptedIn = append(notOptedIn, p.Secret)
				}
			case reason != hooklinev1.ReasonSecretNotFound:
				reason = hooklinev1.ReasonSecretInvalid
			}
			msgs = append(msgs, p.String())
		}
		msg := strings.Join(msgs, "; ") + "."
		if notOptedInRefs < len(in.SecretProblems) {
			msg += " Create the Secret or fix the reference."
		}
		if len(notOptedIn) > 0 {
			msg += " " + secretrefs.OptInHint(notOptedIn) + "."
		}
		return Result{metav1.ConditionFalse, reason, msg}
	}
	if in.SigningError != nil {
		return Result{metav1.ConditionFalse, hooklinev1.ReasonSigningKeyInvalid, in.SigningError.Error()}
	}
	if in.Suspended {
		return Result{metav1.ConditionTrue, hooklinev1.ReasonSuspended,
			"Deliveries are suspended; set spec.suspend to false to resume."}
	}
	return Result{metav1.ConditionTrue, hooklinev1.ReasonReady, "The endpoint is configured and its signing key is in place."}
}
