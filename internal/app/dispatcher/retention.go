package dispatcher

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// retentionFlag is --event-retention: a duration, 0 keeping no events (the
// queue's negative Retention).
type retentionFlag struct{ d *time.Duration }

func (f retentionFlag) String() string {
	if f.d == nil || *f.d < 0 {
		return "0s"
	}
	return f.d.String()
}

func (f retentionFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration such as 168h (7 days), or 0 to keep no events, got %q", v)
	}
	if d > 0 && d < time.Second {
		return fmt.Errorf("want at least 1s, or 0 to keep no events, got %q", v)
	}
	if d == 0 {
		d = -1
	}
	*f.d = d
	return nil
}

// byteSizeFlag is --event-retention-bytes: a size such as 1GiB, 512Mi or
// 2000000000, 0 meaning no bound (the queue's negative RetentionBytes).
type byteSizeFlag struct{ n *int64 }

func (f byteSizeFlag) String() string {
	if f.n == nil || *f.n <= 0 {
		return "0"
	}
	return resource.NewQuantity(*f.n, resource.BinarySI).String()
}

func (f byteSizeFlag) Set(v string) error {
	q, err := resource.ParseQuantity(strings.TrimSuffix(v, "B"))
	n, ok := q.AsInt64()
	if err != nil || !ok || n < 0 {
		return fmt.Errorf("want a size such as 1GiB, 512Mi or 0 for no bound, got %q", v)
	}
	if n == 0 {
		n = -1
	}
	*f.n = n
	return nil
}
