package workload

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// EventRetention is how long, and in how much space, the dispatcher keeps accepted
// events after fan-out, to list them and recover subscriptions (docs/publishing.md).
// Empty fields keep the dispatcher's defaults: 7 days and 1 GiB.
type EventRetention struct {
	// MaxAge is a duration such as 72h (--event-retention); "0" keeps no events.
	MaxAge string `json:"maxAge,omitempty"`
	// MaxBytes is a size such as 4GiB or 512Mi (--event-retention-bytes); "0" bounds the
	// events by age only.
	MaxBytes string `json:"maxBytes,omitempty"`
}

func (r *EventRetention) problems() []error {
	if r == nil {
		return nil
	}
	var errs []error
	if r.MaxAge != "" {
		d, err := time.ParseDuration(r.MaxAge)
		switch {
		case err != nil || d < 0:
			errs = append(errs, fmt.Errorf("eventRetention.maxAge %q: give a duration such as 168h (7 days), or 0 to keep no events", r.MaxAge))
		case d > 0 && d < time.Second:
			errs = append(errs, fmt.Errorf("eventRetention.maxAge %q: give at least 1s, or 0 to keep no events", r.MaxAge))
		}
	}
	if r.MaxBytes != "" {
		q, err := resource.ParseQuantity(strings.TrimSuffix(r.MaxBytes, "B"))
		if n, ok := q.AsInt64(); err != nil || !ok || n < 0 {
			errs = append(errs, fmt.Errorf("eventRetention.maxBytes %q: give a size such as 1GiB or 512Mi, or 0 to bound the events by age only", r.MaxBytes))
		}
	}
	return errs
}

func (r *EventRetention) args() []string {
	if r == nil {
		return nil
	}
	var args []string
	if r.MaxAge != "" {
		args = append(args, "--event-retention="+r.MaxAge)
	}
	if r.MaxBytes != "" {
		args = append(args, "--event-retention-bytes="+r.MaxBytes)
	}
	return args
}
