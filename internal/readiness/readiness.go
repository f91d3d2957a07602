package readiness

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/secretrefs"
)

// Result is the Ready condition to write.
type Result struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
	// Stalled marks a Ready=False that only a person can fix. It becomes Stalled=True, so
	// kstatus (Flux) reports Failed and Argo CD Degraded at once instead of waiting out a
	// timeout; any other Ready=False becomes Reconciling=True.
	Stalled bool
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

// OperatorConditions lists the condition types Conditions decides: the operator writes
// exactly these, and removes those Conditions does not return.
var OperatorConditions = []string{hooklinev1.ConditionReady, hooklinev1.ConditionReconciling, hooklinev1.ConditionStalled}

// Conditions returns Ready and, when Ready is False, Stalled or Reconciling with Ready's
// reason and message. A ready object carries neither.
func (r Result) Conditions(generation int64) []metav1.Condition {
	ready := r.Condition(generation)
	if r.Status == metav1.ConditionTrue {
		return []metav1.Condition{ready}
	}
	other := ready
	other.Type, other.Status = hooklinev1.ConditionReconciling, metav1.ConditionTrue
	if r.Stalled {
		other.Type = hooklinev1.ConditionStalled
	}
	return []metav1.Condition{ready, other}
}

// SubscriptionInput is what the Subscription reconciler observed.
type SubscriptionInput struct {
	EndpointName    string
	EndpointFound   bool
	EndpointReady   bool
	EndpointReason  string // the endpoint's Ready reason when it is not ready
	EndpointStalled bool   // the endpoint is Stalled: it needs a person, so this does too
	FilterError     error  // nil when there is no filter or it compiles
	// OrderingKeyError is registry.OrderingKey's refusal of spec.delivery.orderingKey,
	// nil when there is none or it compiles.
	OrderingKeyError error
	Suspended        bool
}

// Subscription decides a Subscription's Ready condition. The order matters: a user fixes
// the problem named first, so the most fundamental one comes first.
func Subscription(in SubscriptionInput) Result {
	switch {
	case in.FilterError != nil:
		return Result{metav1.ConditionFalse, hooklinev1.ReasonInvalidFilter,
			fmt.Sprintf("spec.filter does not compile: %v. Fix the CEL expression; it can use type, id, time and data.", in.FilterError), true}
	case in.OrderingKeyError != nil:
		return Result{metav1.ConditionFalse, hooklinev1.ReasonInvalidOrderingKey, in.OrderingKeyError.Error() + ".", true}
	case !in.EndpointFound:
		return Result{metav1.ConditionFalse, hooklinev1.ReasonEndpointNotFound,
			fmt.Sprintf("WebhookEndpoint %q does not exist in this namespace. Create it or fix spec.endpointRef.name.", in.EndpointName), false}
	case !in.EndpointReady:
		reason := in.EndpointReason
		if reason == "" {
			reason = "not reconciled yet"
		}
		return Result{metav1.ConditionFalse, hooklinev1.ReasonEndpointNotReady,
			fmt.Sprintf("WebhookEndpoint %q is not ready (%s). See its status: kubectl describe whep %s.", in.EndpointName, reason, in.EndpointName),
			in.EndpointStalled}
	case in.Suspended:
		return Result{metav1.ConditionTrue, hooklinev1.ReasonSuspended,
			"Deliveries are suspended; set spec.suspend to false to resume.", false}
	default:
		return Result{metav1.ConditionTrue, hooklinev1.ReasonReady,
			fmt.Sprintf("Events are routed to WebhookEndpoint %q.", in.EndpointName), false}
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
	// TargetError is the dispatcher's refusal of the endpoint's resolved configuration
	// (delivery.CheckTarget), nil when it would deliver.
	TargetError  error
	SigningError error // the signing key could not be set up
	// Disabled is the dispatcher's Disabled condition when it is True: the endpoint was
	// switched off and waits for a person to re-enable it.
	Disabled  *metav1.Condition
	Suspended bool
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
		// A Secret that is not there yet may be on its way (GitOps, an external secrets
		// operator); one that is there and wrong, or not opted in, needs a person.
		msg := strings.Join(msgs, "; ") + "."
		switch {
		case reason == hooklinev1.ReasonSecretNotFound:
			msg += " Create the Secret or fix the reference."
		case notOptedInRefs < len(in.SecretProblems):
			msg += " Fix the Secret or the reference."
		}
		if len(notOptedIn) > 0 {
			msg += " " + secretrefs.OptInHint(notOptedIn) + "."
		}
		return Result{metav1.ConditionFalse, reason, msg, reason != hooklinev1.ReasonSecretNotFound}
	}
	if in.TargetError != nil {
		return TargetRefused(in.TargetError)
	}
	if in.SigningError != nil {
		return Result{metav1.ConditionFalse, hooklinev1.ReasonSigningKeyInvalid, in.SigningError.Error(), true}
	}
	if in.Disabled != nil {
		return Result{metav1.ConditionFalse, hooklinev1.ReasonEndpointDisabled, in.Disabled.Message, true}
	}
	if in.Suspended {
		return Result{metav1.ConditionTrue, hooklinev1.ReasonSuspended,
			"Deliveries are suspended; set spec.suspend to false to resume.", false}
	}
	return Result{metav1.ConditionTrue, hooklinev1.ReasonReady, "The endpoint is configured and its signing key is in place.", false}
}

// TargetRefused turns the dispatcher's refusal of an endpoint's resolved configuration
// (delivery.NewTarget, delivery.CheckTarget) into Ready=False with the fix. The operator
// and the dispatcher both use it, so they give the same reason for the same refusal.
func TargetRefused(err error) Result {
	var te *delivery.TargetError
	refusal := delivery.RefusedConfig
	if errors.As(err, &te) {
		refusal = te.Refusal
	}
	switch refusal {
	case delivery.RefusedTLS:
		return Result{metav1.ConditionFalse, hooklinev1.ReasonTLSInvalid, fmt.Sprintf(
			"The dispatcher cannot load the TLS material: %v. spec.tls.ca must name a Secret key holding PEM certificates "+
				"(-----BEGIN CERTIFICATE-----), and spec.auth.mtls a kubernetes.io/tls Secret whose tls.crt matches its tls.key; fix the Secret.", err), true}
	case delivery.RefusedValue:
		return Result{metav1.ConditionFalse, hooklinev1.ReasonSecretInvalid, fmt.Sprintf(
			"The dispatcher cannot send a value read from a Secret: %v. Header and credential values must be one non-empty line "+
				"of printable text (a final newline is removed, one inside is not); fix the Secret.", err), true}
	default:
		return Result{metav1.ConditionFalse, hooklinev1.ReasonInvalidConfiguration, fmt.Sprintf(
			"The dispatcher refuses this endpoint: %v. Fix the spec.", err), true}
	}
}
