package engine

import (
	"fmt"
	"time"
)

// SignalKind says what changed.
type SignalKind uint8

const (
	// SignalCircuitChanged: an endpoint's circuit breaker moved from
	// PreviousCircuit to Circuit.
	SignalCircuitChanged SignalKind = iota
	// SignalEndpointDisabled: the endpoint answered 410 Gone or
	// webhook-delivery: disable, failed for disableAfter, or Disable was
	// called. Its deliveries are held until Enable.
	SignalEndpointDisabled
	// SignalEndpointEnabled: Enable re-enabled the endpoint.
	SignalEndpointEnabled
	// SignalDeliveryDead: a delivery ran out of attempts or will not be
	// retried, and was moved to the dead letters.
	SignalDeliveryDead
)

func (k SignalKind) String() string {
	switch k {
	case SignalCircuitChanged:
		return "CircuitChanged"
	case SignalEndpointDisabled:
		return "EndpointDisabled"
	case SignalEndpointEnabled:
		return "EndpointEnabled"
	case SignalDeliveryDead:
		return "DeliveryDead"
	}
	return fmt.Sprintf("SignalKind(%d)", uint8(k))
}

// Signal is a change worth a Kubernetes Event or an alert.
type Signal struct {
	Kind      SignalKind
	Time      time.Time
	Namespace string
	// Endpoint is set on every signal; Subscription and EventID on
	// SignalDeliveryDead.
	Endpoint     string
	Subscription string
	EventID      string
	// Circuit and PreviousCircuit are set on SignalCircuitChanged.
	Circuit         CircuitState
	PreviousCircuit CircuitState
	// StatusCode is the HTTP status of the attempt behind the signal, 0 if
	// none.
	StatusCode int
	// Reason is a sentence fit for an Event; it never holds a secret or a
	// response body.
	Reason string
}

// Observer receives signals. Observe is called synchronously from delivery
// goroutines, never under the engine's locks, and must not block.
type Observer interface {
	Observe(Signal)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Signal)

func (f ObserverFunc) Observe(s Signal) { f(s) }

func (e *Engine) signal(s Signal) {
	if e.obs != nil {
		e.obs.Observe(s)
	}
}
