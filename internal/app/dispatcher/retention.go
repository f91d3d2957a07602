package dispatcher

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/hookline/hookline/internal/queue"
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
	d, err := queue.ParseRetention(v)
	if err != nil {
		return fmt.Errorf("%w, got %q", err, v)
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
	n, err := queue.ParseRetentionBytes(v)
	if err != nil {
		return fmt.Errorf("%w, got %q", err, v)
	}
	*f.n = n
	return nil
}
