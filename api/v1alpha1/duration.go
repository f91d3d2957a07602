package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Duration is a length of time in Go's notation: decimal numbers each followed by a unit
// (ns, us, ms, s, m, h), such as 30s, 1m30s or 2160h. There is no day unit: write 72h.
//
// It wraps metav1.Duration, so it is a string on the wire and a time.Duration in Go, and
// every field of this type shares the one syntax rule below; a field adds only its bounds.
//
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
// +kubebuilder:validation:MaxLength=32
type Duration struct {
	metav1.Duration `json:",inline"`
}

// DurationOf returns d as an API Duration.
func DurationOf(d time.Duration) *Duration {
	return &Duration{Duration: metav1.Duration{Duration: d}}
}

// Or returns the duration, or def when d is unset.
func (d *Duration) Or(def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration.Duration
}
