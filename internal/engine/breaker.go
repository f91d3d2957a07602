package engine

import (
	"fmt"
	"time"
)

// CircuitState is where an endpoint's circuit breaker stands.
type CircuitState uint8

const (
	// CircuitClosed: deliveries flow.
	CircuitClosed CircuitState = iota
	// CircuitOpen: the endpoint keeps failing; deliveries are held, without
	// spending attempts, until the cool-down ends.
	CircuitOpen
	// CircuitHalfOpen: the cool-down ended and one probe delivery is allowed
	// through; its outcome closes or reopens the circuit.
	CircuitHalfOpen
)

func (s CircuitState) String() string {
	switch s {
	case CircuitClosed:
		return "Closed"
	case CircuitOpen:
		return "Open"
	case CircuitHalfOpen:
		return "HalfOpen"
	}
	return fmt.Sprintf("CircuitState(%d)", uint8(s))
}

// MarshalText makes the state read as its name in JSON.
func (s CircuitState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// BreakerConfig tunes the circuit breakers; zero fields take the defaults.
type BreakerConfig struct {
	// Threshold is how many consecutive failed attempts open the circuit.
	Threshold int
	// MinCooldown is the first cool-down; each failed probe doubles it, up to
	// MaxCooldown.
	MinCooldown time.Duration
	MaxCooldown time.Duration
}

// Breaker defaults.
const (
	DefaultBreakerThreshold = 5
	DefaultMinCooldown      = 5 * time.Second
	DefaultMaxCooldown      = 5 * time.Minute
)

func (c BreakerConfig) withDefaults() BreakerConfig {
	if c.Threshold <= 0 {
		c.Threshold = DefaultBreakerThreshold
	}
	if c.MinCooldown <= 0 {
		c.MinCooldown = DefaultMinCooldown
	}
	if c.MaxCooldown < c.MinCooldown {
		c.MaxCooldown = max(DefaultMaxCooldown, c.MinCooldown)
	}
	return c
}

// admission is what health says about starting a send now.
type admission uint8

const (
	admitSend admission = iota
	// admitProbe: send, as the one probe of a half-open circuit.
	admitProbe
	admitHold
)

// health is one endpoint's circuit breaker and auto-disable clock. It is a
// plain state machine over the times it is given, so it is tested with
// literal times; the endpoint's mutex guards it.
type health struct {
	cfg   BreakerConfig
	state CircuitState
	// consecutive counts failed attempts since the last success.
	consecutive int
	cooldown    time.Duration
	openUntil   time.Time
	probing     bool
	// failingSince starts the auto-disable clock: set when a streak of
	// failures first opens the circuit, so a few stray errors never start it.
	failingSince time.Time
}

// peek reports whether a delivery arriving now should be held without
// queueing it, and until when. It claims nothing; admit decides at send
// time.
func (h *health) peek(now time.Time) (hold bool, until time.Time) {
	switch {
	case h.state == CircuitOpen && now.Before(h.openUntil):
		return true, h.openUntil
	case h.state == CircuitHalfOpen && h.probing:
		return true, now.Add(h.cfg.MinCooldown)
	}
	return false, time.Time{}
}

// admit decides whether a send may start now. The first send after the
// cool-down is the probe; while it runs, everything else is held.
func (h *health) admit(now time.Time) (admission, time.Time) {
	switch h.state {
	case CircuitOpen:
		if now.Before(h.openUntil) {
			return admitHold, h.openUntil
		}
		h.state, h.probing = CircuitHalfOpen, true
		return admitProbe, time.Time{}
	case CircuitHalfOpen:
		if h.probing {
			return admitHold, now.Add(h.cfg.MinCooldown)
		}
		h.probing = true
		return admitProbe, time.Time{}
	}
	return admitSend, time.Time{}
}

// success records an answer that shows the endpoint works. Any success
// closes the circuit, even one from a request started before it opened: a
// delivered message is better evidence than a count.
func (h *health) success() {
	h.consecutive = 0
	h.failingSince = time.Time{}
	h.state, h.probing, h.cooldown, h.openUntil = CircuitClosed, false, 0, time.Time{}
}

// failure records a failed attempt. Failures of requests that were already
// in flight when the circuit opened do not extend the cool-down.
func (h *health) failure(now time.Time, probe bool) {
	h.consecutive++
	switch {
	case probe && h.state == CircuitHalfOpen:
		h.cooldown = min(2*h.cooldown, h.cfg.MaxCooldown)
		h.state, h.probing, h.openUntil = CircuitOpen, false, now.Add(h.cooldown)
	case h.state == CircuitClosed && h.consecutive >= h.cfg.Threshold:
		h.cooldown = h.cfg.MinCooldown
		h.state, h.openUntil = CircuitOpen, now.Add(h.cooldown)
		if h.failingSince.IsZero() {
			h.failingSince = now
		}
	}
}

// neutral ends a probe that said nothing about the endpoint (the message
// itself was bad, the receiver aborted it, the dispatcher is stopping): the
// next send probes instead.
func (h *health) neutral(probe bool) {
	if probe && h.state == CircuitHalfOpen {
		h.probing = false
	}
}

// failedFor reports whether the endpoint has done nothing but fail for at
// least d.
func (h *health) failedFor(now time.Time, d time.Duration) bool {
	return !h.failingSince.IsZero() && now.Sub(h.failingSince) >= d
}

// reset forgets the history, for an endpoint a person re-enabled.
func (h *health) reset() {
	h.success()
}
