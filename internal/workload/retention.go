package workload

import (
	"fmt"

	"github.com/hookline/hookline/internal/queue"
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
		if _, err := queue.ParseRetention(r.MaxAge); err != nil {
			errs = append(errs, fmt.Errorf("eventRetention.maxAge %q: %w", r.MaxAge, err))
		}
	}
	if r.MaxBytes != "" {
		if _, err := queue.ParseRetentionBytes(r.MaxBytes); err != nil {
			errs = append(errs, fmt.Errorf("eventRetention.maxBytes %q: %w", r.MaxBytes, err))
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
