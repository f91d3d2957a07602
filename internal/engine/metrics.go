package engine

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookline/hookline/internal/delivery"
)

// Label values are bounded: namespace, object name and small enums, never
// event types, URLs or error text.
const (
	outcomeDelivered = "delivered"
	outcomeDead      = "dead"
	// outcomeDropped: the subscription was deleted (or recreated) after the
	// delivery was queued.
	outcomeDropped = "dropped"

	attemptSuccess      = "success"
	attemptRedirect     = "redirect"
	attemptClientError  = "client_error"
	attemptServerError  = "server_error"
	attemptTimeout      = "timeout"
	attemptNetworkError = "network_error"
	attemptInvalid      = "invalid"
)

// Why a delivery was held (put back without spending an attempt).
const (
	holdCircuitOpen = "circuit_open"
	holdBusy        = "busy"
	holdSuspended   = "suspended"
	holdDisabled    = "disabled"
	holdNotReady    = "not_ready"
	holdShutdown    = "shutdown"
	// holdUnknownSubscription: the subscription is not (yet) known here.
	holdUnknownSubscription = "unknown_subscription"
)

type metrics struct {
	deliveries   *prometheus.CounterVec
	attempts     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	dead         *prometheus.CounterVec
	circuitOpen  *prometheus.GaugeVec
	disabled     *prometheus.GaugeVec
	holds        *prometheus.CounterVec
	parks        *prometheus.CounterVec
	unparks      *prometheus.CounterVec
	filterErrors *prometheus.CounterVec
	keyMissing   *prometheus.CounterVec
	blockedKeys  *blockedKeys
	fanoutPaused prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_deliveries_total",
			Help: "Deliveries that ended, by outcome: delivered, dead, or dropped (the subscription was deleted).",
		}, []string{"namespace", "subscription", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_delivery_attempts_total",
			Help: "HTTP delivery attempts, by outcome class: success, redirect, client_error, server_error, timeout, network_error, invalid.",
		}, []string{"namespace", "subscription", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookline_delivery_latency_seconds",
			Help:    "Time from sending a delivery attempt to its response or error.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"namespace", "endpoint"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_deliveries_dead_total",
			Help: "Deliveries given up on and kept as dead letters for replay.",
		}, []string{"namespace", "subscription"}),
		circuitOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hookline_endpoint_circuit_open",
			Help: "1 while an endpoint's circuit breaker is open or half-open in this process.",
		}, []string{"namespace", "endpoint"}),
		disabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hookline_endpoints_disabled",
			Help: "1 while an endpoint is disabled (410 Gone, webhook-delivery: disable, or failing for disableAfter).",
		}, []string{"namespace", "endpoint"}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_delivery_holds_total",
			Help: "Deliveries put back for later without spending an attempt, by reason; parked ones included.",
		}, []string{"namespace", "endpoint", "reason"}),
		parks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_delivery_parks_total",
			Help: "Deliveries parked until their endpoint can take them again, by reason: by the fan-out as it stores them, or when taken.",
		}, []string{"namespace", "endpoint", "reason"}),
		unparks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_delivery_unparks_total",
			Help: "Parked deliveries moved back for delivery.",
		}, []string{"namespace", "endpoint"}),
		filterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_filter_errors_total",
			Help: "Events a subscription's filter failed to evaluate on; the event is not delivered to it.",
		}, []string{"namespace", "subscription"}),
		keyMissing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_ordering_key_missing_total",
			Help: "Events a subscription ordered per key got the empty key for: its orderingKey failed on them (a missing field) or gave no string.",
		}, []string{"namespace", "subscription"}),
		blockedKeys: newBlockedKeys(),
		fanoutPaused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookline_fanout_memory_pause_seconds_total",
			Help: "Time fan-out workers waited because the heap was close to the memory limit (GOMEMLIMIT); accepted events wait in the queue meanwhile.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.deliveries, m.attempts, m.latency, m.dead, m.circuitOpen, m.disabled, m.holds, m.parks, m.unparks, m.filterErrors, m.keyMissing, m.blockedKeys, m.fanoutPaused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering delivery metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) forgetSubscription(ns, name string) {
	l := prometheus.Labels{"namespace": ns, "subscription": name}
	m.deliveries.DeletePartialMatch(l)
	m.attempts.DeletePartialMatch(l)
	m.dead.DeletePartialMatch(l)
	m.filterErrors.DeletePartialMatch(l)
	m.keyMissing.DeletePartialMatch(l)
}

func (m *metrics) forgetEndpoint(ns, name string) {
	l := prometheus.Labels{"namespace": ns, "endpoint": name}
	m.latency.DeletePartialMatch(l)
	m.circuitOpen.DeletePartialMatch(l)
	m.disabled.DeletePartialMatch(l)
	m.holds.DeletePartialMatch(l)
	m.parks.DeletePartialMatch(l)
	m.unparks.DeletePartialMatch(l)
}

// attemptClass sorts an attempt into a label value.
func attemptClass(res *delivery.Result) string {
	switch {
	case res.Verdict == delivery.Failed:
		return attemptInvalid
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return attemptSuccess
	case res.StatusCode >= 300 && res.StatusCode < 400:
		return attemptRedirect
	case res.StatusCode >= 400 && res.StatusCode < 500:
		return attemptClientError
	case res.StatusCode >= 500:
		return attemptServerError
	case res.Throttled || isTimeout(res.Err):
		return attemptTimeout
	}
	return attemptNetworkError
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
