package queue

import (
	"errors"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// ParseRetention reads a retention window as the dispatcher's --event-retention
// and the operator's eventRetention.maxAge take it: a duration of at least 1s,
// or 0 to keep no events, which is Config.Retention's negative value.
func ParseRetention(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil || d < 0:
		return 0, errors.New("give a duration such as 168h (7 days), or 0 to keep no events")
	case d > 0 && d < time.Second:
		return 0, errors.New("give at least 1s, or 0 to keep no events")
	case d == 0:
		return -1, nil
	}
	return d, nil
}

// ParseRetentionBytes reads a retention size as --event-retention-bytes and
// eventRetention.maxBytes take it: 1GiB, 512Mi or 2000000000, 0 meaning no
// bound, which is Config.RetentionBytes's negative value.
func ParseRetentionBytes(v string) (int64, error) {
	q, err := resource.ParseQuantity(strings.TrimSuffix(v, "B"))
	n, ok := q.AsInt64()
	if err != nil || !ok || n < 0 {
		return 0, errors.New("give a size such as 1GiB or 512Mi, or 0 to bound the events by age only")
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}
