package registry

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/match"
)

// DefaultExponentialAttempts is the attempt cap of an exponential policy without
// maxAttempts, as the CRD documents.
const DefaultExponentialAttempts = 20

// Subscription is a Subscription compiled for matching and delivery. Entries are
// immutable; a change yields a new entry.
type Subscription struct {
	Namespace  string
	Name       string
	UID        types.UID
	Generation int64

	// Endpoint is the name of the WebhookEndpoint in the same namespace.
	Endpoint string
	Matcher  match.Matcher
	// Filter is nil when the subscription has none. Matching does not evaluate it: the
	// caller does, with the event's data.
	Filter *match.Filter
	Format delivery.Format
	Policy delivery.Policy
	// Timeout overrides the endpoint's attempt timeout; zero keeps the endpoint's.
	Timeout time.Duration
	Ordered bool
	// OrderKey is nil unless Ordered is per key; then Lanes (at least 1) is
	// how many lanes its keys are hashed onto. Like Filter, the caller
	// evaluates it.
	OrderKey  *match.Key
	Lanes     int
	Suspended bool

	// Usable is false when the spec cannot be compiled; Reason and Message say why.
	Usable  bool
	Reason  string
	Message string
}

// buildSubscription compiles s. A problem yields an entry that is not Usable.
func buildSubscription(s *hooklinev1.Subscription) *Subscription {
	sub := &Subscription{
		Namespace:  s.Namespace,
		Name:       s.Name,
		UID:        s.UID,
		Generation: s.Generation,
		Endpoint:   s.Spec.EndpointRef.Name,
		Suspended:  s.Spec.Suspend,
		Usable:     true,
		Reason:     hooklinev1.ReasonReady,
	}
	unusable := func(reason, msg string) *Subscription {
		sub.Usable, sub.Reason, sub.Message = false, reason, msg
		return sub
	}
	var err error
	if sub.Matcher, err = match.Compile(s.Spec.EventTypes); err != nil {
		return unusable(ReasonInvalidConfiguration, fmt.Sprintf("spec.eventTypes: %v.", err))
	}
	if s.Spec.Filter != "" {
		if sub.Filter, err = match.CompileFilter(s.Spec.Filter); err != nil {
			return unusable(hooklinev1.ReasonInvalidFilter, fmt.Sprintf("spec.filter does not compile: %v.", err))
		}
	}
	if sub.OrderKey, sub.Lanes, err = OrderingKey(s.Spec.Delivery); err != nil {
		return unusable(hooklinev1.ReasonInvalidOrderingKey, err.Error())
	}
	if sub.Format, err = payloadFormat(s.Spec.Payload); err != nil {
		return unusable(ReasonInvalidConfiguration, err.Error())
	}
	if sub.Policy, sub.Timeout, sub.Ordered, err = DeliveryPolicy(s.Spec.Delivery); err != nil {
		return unusable(ReasonInvalidPolicy, err.Error())
	}
	return sub
}

func payloadFormat(p *hooklinev1.Payload) (delivery.Format, error) {
	if p == nil {
		return delivery.StandardWebhooks, nil
	}
	switch p.Format {
	case "", hooklinev1.PayloadStandardWebhooks:
		return delivery.StandardWebhooks, nil
	case hooklinev1.PayloadCloudEventsStructured:
		return delivery.CloudEventsStructured, nil
	case hooklinev1.PayloadCloudEventsBinary:
		return delivery.CloudEventsBinary, nil
	}
	return 0, fmt.Errorf("spec.payload.format %q is not one of StandardWebhooks, CloudEventsStructured, CloudEventsBinary", p.Format)
}

// DeliveryPolicy turns spec.delivery into a retry policy, an attempt timeout override (zero when
// unset) and whether deliveries are ordered. Unset fields take the CRD's defaults: the
// Standard Webhooks schedule, one more attempt than the schedule has steps, 20 attempts
// with exponential backoff, a one-hour Retry-After cap, retrying client errors.
func DeliveryPolicy(d *hooklinev1.DeliveryPolicy) (p delivery.Policy, timeout time.Duration, ordered bool, err error) {
	p = delivery.DefaultPolicy()
	if d == nil {
		return p, 0, false, nil
	}
	var errs []error
	switch {
	case d.Exponential != nil:
		e := &delivery.Exponential{
			Initial:    d.Exponential.InitialInterval.Duration.Duration,
			Max:        d.Exponential.MaxInterval.Duration.Duration,
			Multiplier: float64(d.Exponential.GetMultiplier()),
		}
		p.Schedule, p.Exponential, p.MaxAttempts = nil, e, DefaultExponentialAttempts
	case len(d.Schedule) > 0:
		p.Schedule = make([]time.Duration, len(d.Schedule))
		for i, s := range d.Schedule {
			p.Schedule[i] = s.Duration.Duration
		}
		p.MaxAttempts = len(p.Schedule) + 1
	}
	if d.MaxAttempts != nil {
		p.MaxAttempts = int(*d.MaxAttempts)
	}
	p.MaxAge, p.RetryAfterMax, timeout = d.GetMaxAge(), d.GetRetryAfterMax(), d.GetTimeout()
	switch d.ClientErrors {
	case "", hooklinev1.ClientErrorsRetry:
		p.ClientErrors = delivery.RetryClientErrors
	case hooklinev1.ClientErrorsDrop:
		p.ClientErrors = delivery.DropClientErrors
	default:
		errs = append(errs, fmt.Errorf("spec.delivery.clientErrors %q is not Retry or Drop", d.ClientErrors))
	}
	switch d.Ordering {
	case "", hooklinev1.OrderingUnordered:
	case hooklinev1.OrderingOrdered:
		ordered = true
	default:
		errs = append(errs, fmt.Errorf("spec.delivery.ordering %q is not Unordered or Ordered", d.Ordering))
	}
	if len(errs) == 0 {
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("spec.delivery: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return delivery.Policy{}, 0, false, err
	}
	return p, timeout, ordered, nil
}

// OrderingKey compiles spec.delivery.orderingKey and gives its lane count:
// nil and 0 when deliveries are not ordered per key. The error names the
// field and is a sentence fit for status.
func OrderingKey(d *hooklinev1.DeliveryPolicy) (*match.Key, int, error) {
	if d == nil || d.OrderingKey == "" {
		return nil, 0, nil
	}
	if d.Ordering != hooklinev1.OrderingOrdered {
		return nil, 0, fmt.Errorf("spec.delivery.orderingKey needs spec.delivery.ordering: Ordered; set it, or remove orderingKey")
	}
	k, err := match.CompileKey(d.OrderingKey)
	if err != nil {
		return nil, 0, fmt.Errorf("spec.delivery.orderingKey does not compile: %w. Fix the CEL expression; it can use type, id, time and data and must give a string, e.g. data.customerId", err)
	}
	return k, d.GetOrderingLanes(), nil
}
