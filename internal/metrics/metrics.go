// Package metrics defines hookline's Prometheus metrics. Labels are bounded: namespace and
// object name, and small enums; never event types, URLs or error strings.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// SigningKeyNextRotation is when each endpoint's generated key rotates next.
	SigningKeyNextRotation = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hookline_signing_key_next_rotation_timestamp_seconds",
		Help: "Unix time of the next scheduled rotation of an endpoint's generated signing key.",
	}, []string{"namespace", "endpoint"})

	// SigningKeyRotations counts rotations by cause (Schedule, Request).
	SigningKeyRotations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookline_signing_key_rotations_total",
		Help: "Signing key rotations, by cause: Schedule or Request (manual).",
	}, []string{"namespace", "endpoint", "cause"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(SigningKeyNextRotation, SigningKeyRotations)
}

// ForgetEndpoint drops the series of a deleted endpoint so they don't linger.
func ForgetEndpoint(namespace, endpoint string) {
	SigningKeyNextRotation.DeleteLabelValues(namespace, endpoint)
	SigningKeyRotations.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "endpoint": endpoint})
}
