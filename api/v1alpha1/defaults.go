package v1alpha1

import "time"

// Defaults of optional fields. The API server fills them in from the +kubebuilder:default
// markers (so `kubectl explain` and `kubectl get -o yaml` show them) whenever the enclosing
// object is present; the accessors below apply the same values when it is not, so no caller
// handles an unset field itself.
const (
	DefaultTimeout         = 15 * time.Second
	DefaultMaxInFlight     = 32
	DefaultDisableAfter    = 120 * time.Hour
	DefaultRotationEvery   = 2160 * time.Hour
	DefaultRotationOverlap = 24 * time.Hour
	DefaultRetryAfterMax   = time.Hour
	DefaultMultiplier      = 2
)

// GetTimeout is the attempt timeout, limits.timeout or DefaultTimeout.
func (l *EndpointLimits) GetTimeout() time.Duration {
	if l == nil {
		return DefaultTimeout
	}
	return l.Timeout.Or(DefaultTimeout)
}

// GetMaxInFlight is limits.maxInFlight or DefaultMaxInFlight.
func (l *EndpointLimits) GetMaxInFlight() int32 {
	if l == nil || l.MaxInFlight == nil {
		return DefaultMaxInFlight
	}
	return *l.MaxInFlight
}

// GetDisableAfter is limits.disableAfter or DefaultDisableAfter.
func (l *EndpointLimits) GetDisableAfter() time.Duration {
	if l == nil {
		return DefaultDisableAfter
	}
	return l.DisableAfter.Or(DefaultDisableAfter)
}

// GetRateLimit is limits.rateLimit, 0 meaning no limit.
func (l *EndpointLimits) GetRateLimit() int32 {
	if l == nil || l.RateLimit == nil {
		return 0
	}
	return *l.RateLimit
}

// GetBurst is limits.burst, or the rate when unset; 0 when there is no rate limit.
func (l *EndpointLimits) GetBurst() int32 {
	rate := l.GetRateLimit()
	if rate == 0 {
		return 0
	}
	if l.Burst == nil {
		return rate
	}
	return *l.Burst
}

// GetRotation returns the rotation schedule, spec.signing.rotation with its defaults, or
// nil when the key is user-provided (spec.signing.secretRef) and never rotates.
func (s *WebhookEndpointSpec) GetRotation() *Rotation {
	if s.Signing != nil && s.Signing.SecretRef != nil {
		return nil
	}
	if s.Signing == nil || s.Signing.Rotation == nil {
		return &Rotation{}
	}
	return s.Signing.Rotation
}

// GetEvery is rotation.every or DefaultRotationEvery.
func (r *Rotation) GetEvery() time.Duration {
	if r == nil {
		return DefaultRotationEvery
	}
	return r.Every.Or(DefaultRotationEvery)
}

// GetOverlap is rotation.overlap or DefaultRotationOverlap.
func (r *Rotation) GetOverlap() time.Duration {
	if r == nil {
		return DefaultRotationOverlap
	}
	return r.Overlap.Or(DefaultRotationOverlap)
}

// GetTimeout is delivery.timeout, or 0 when unset: the endpoint's limits.timeout applies.
func (d *DeliveryPolicy) GetTimeout() time.Duration {
	if d == nil {
		return 0
	}
	return d.Timeout.Or(0)
}

// GetMaxAge is delivery.maxAge, or 0 when unset: retries stop only at maxAttempts.
func (d *DeliveryPolicy) GetMaxAge() time.Duration {
	if d == nil {
		return 0
	}
	return d.MaxAge.Or(0)
}

// GetRetryAfterMax is delivery.retryAfterMax or DefaultRetryAfterMax.
func (d *DeliveryPolicy) GetRetryAfterMax() time.Duration {
	if d == nil {
		return DefaultRetryAfterMax
	}
	return d.RetryAfterMax.Or(DefaultRetryAfterMax)
}

// GetMultiplier is exponential.multiplier or DefaultMultiplier.
func (e *ExponentialBackoff) GetMultiplier() int32 {
	if e == nil || e.Multiplier == 0 {
		return DefaultMultiplier
	}
	return e.Multiplier
}

// DefaultOrderingLanes is how many lanes the keys of delivery.orderingKey are hashed onto
// when delivery.orderingLanes is unset.
const DefaultOrderingLanes = 16

// GetOrderingLanes is how many lanes an ordered subscription's deliveries are spread over:
// 0 without delivery.orderingKey (one order for the whole subscription), else
// delivery.orderingLanes or DefaultOrderingLanes.
func (d *DeliveryPolicy) GetOrderingLanes() int {
	switch {
	case d == nil || d.OrderingKey == "":
		return 0
	case d.OrderingLanes == nil:
		return DefaultOrderingLanes
	}
	return int(*d.OrderingLanes)
}
