package dispatcher

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/queue"
)

// TestRetentionFlags: the retention window and size reach the queue's
// configuration, 0 turning each off, and bad values name the flag.
func TestRetentionFlags(t *testing.T) {
	cfg, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Queue.Retention != queue.DefaultRetention || cfg.Queue.RetentionBytes != queue.DefaultRetentionBytes {
		t.Errorf("defaults: %v, %d", cfg.Queue.Retention, cfg.Queue.RetentionBytes)
	}
	cfg, err = parse(t, "--event-retention=72h", "--event-retention-bytes=512MiB")
	if err != nil || cfg.Queue.Retention != 72*time.Hour || cfg.Queue.RetentionBytes != 512<<20 {
		t.Errorf("72h, 512MiB: %v, %d, %v", cfg.Queue.Retention, cfg.Queue.RetentionBytes, err)
	}
	cfg, err = parse(t, "--event-retention=0", "--event-retention-bytes=0")
	if err != nil || cfg.Queue.Retention >= 0 || cfg.Queue.RetentionBytes >= 0 {
		t.Errorf("0, 0: %v, %d, %v; want both off (negative)", cfg.Queue.Retention, cfg.Queue.RetentionBytes, err)
	}
	for _, arg := range []string{"--event-retention=-1h", "--event-retention=a week", "--event-retention=10ms",
		"--event-retention-bytes=lots", "--event-retention-bytes=-1Gi"} {
		fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		BindFlags(fs)
		name := strings.TrimPrefix(strings.SplitN(arg, "=", 2)[0], "--")
		if err := fs.Parse([]string{arg}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want an error naming -%s", arg, err, name)
		}
	}
}
