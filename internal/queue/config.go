package queue

import (
	"errors"
	"fmt"
	"time"
)

// SyncMode says when the embedded server flushes its store to disk.
type SyncMode int

const (
	// SyncDefault is JetStream's default: a stored message is in the kernel
	// before it is acknowledged and fsynced every two minutes. It survives any
	// crash of the process (measured: no acknowledged message lost after
	// kill -9), not a crash of the machine.
	SyncDefault SyncMode = iota
	// SyncAlways fsyncs before every acknowledgement. It also survives power
	// loss, at roughly a tenth of the publish rate.
	SyncAlways
)

func (m SyncMode) String() string {
	switch m {
	case SyncDefault:
		return "Default"
	case SyncAlways:
		return "Always"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// Defaults applied by Open to zero fields.
const (
	DefaultDedupeWindow  = 10 * time.Minute
	DefaultDeadMaxAge    = 14 * 24 * time.Hour
	DefaultAttemptLog    = 100
	DefaultMaxAckPending = 10000
)

// Config says where the queue lives and how it behaves.
type Config struct {
	// Embedded runs a nats-server inside this process with its file store in
	// DataDir. Otherwise the queue connects to URL.
	Embedded bool
	DataDir  string
	// Listen, for the embedded server only, is a host:port to accept
	// clients on (for the nats CLI or tests). Empty means in-process only:
	// no port is opened.
	Listen string
	Sync   SyncMode

	URL string
	// CredsFile, Auth and TLS authenticate and secure the connection to an
	// external server (connect.go): files, read again on every reconnect.
	CredsFile string
	Auth      Auth
	TLS       TLSFiles
	// Replicas of every stream on an external cluster; the embedded server
	// has one.
	Replicas int

	// DedupeWindow is how long a repeated event id is recognised.
	DedupeWindow time.Duration

	// MaxRequestTimeout is the longest HTTP request any delivery may make.
	// AckWait must be longer, or a slow receiver's delivery would be handed to
	// a second worker while the first is still waiting for the answer.
	MaxRequestTimeout time.Duration
	// AckWait is the delivery lease. Zero means twice MaxRequestTimeout.
	AckWait time.Duration
	// MaxAckPending bounds the deliveries handed out and not yet resolved,
	// across all dispatcher replicas.
	MaxAckPending int

	// DeadMaxAge is how long dead deliveries are kept for replay.
	DeadMaxAge time.Duration
	// AttemptLog is how many attempts are kept per subscription. Attempts
	// are stored in batches of up to 100 entries and 64 KiB, and the stream
	// keeps AttemptLog batches per subscription, so a subscription's log
	// takes at most AttemptLog × 64 KiB on disk (6.4 MiB with the default);
	// RecentAttempts returns the latest AttemptLog of them.
	AttemptLog int

	// Retention is how long events are kept after their fan-out, for
	// listing and recovery (retained.go); RetentionBytes bounds the space
	// they take, the oldest going first. Zero takes DefaultRetention and
	// DefaultRetentionBytes; a negative Retention keeps no events, a
	// negative RetentionBytes bounds them by age only.
	Retention      time.Duration
	RetentionBytes int64

	// Ungrouped stores every delivery as a message of its own, even when
	// every live replica reads groups (group.go): for rolling back to a
	// release that does not.
	Ungrouped bool
}

func (c Config) withDefaults() Config {
	if c.DedupeWindow == 0 {
		c.DedupeWindow = DefaultDedupeWindow
	}
	if c.AckWait == 0 && c.MaxRequestTimeout > 0 {
		c.AckWait = 2 * c.MaxRequestTimeout
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.DeadMaxAge == 0 {
		c.DeadMaxAge = DefaultDeadMaxAge
	}
	if c.AttemptLog == 0 {
		c.AttemptLog = DefaultAttemptLog
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.RetentionBytes == 0 {
		c.RetentionBytes = DefaultRetentionBytes
	}
	return c
}

// validate expects defaults applied.
func (c Config) validate() error {
	var errs []error
	if c.Embedded {
		if c.DataDir == "" {
			errs = append(errs, errors.New("the embedded server needs a DataDir for its file store"))
		}
		if c.URL != "" {
			errs = append(errs, errors.New("set either Embedded or URL, not both"))
		}
		if c.Replicas != 1 {
			errs = append(errs, fmt.Errorf("the embedded server keeps one copy of each stream; Replicas is %d", c.Replicas))
		}
	} else {
		if c.URL == "" {
			errs = append(errs, errors.New("set URL to an external NATS server, or Embedded"))
		}
		if c.Sync != SyncDefault {
			errs = append(errs, errors.New("sync applies to the embedded server only; set sync_interval in the external server's configuration"))
		}
		if c.Listen != "" {
			errs = append(errs, errors.New("listen applies to the embedded server only"))
		}
		if c.Replicas < 1 || c.Replicas > 5 {
			errs = append(errs, fmt.Errorf("replicas must be between 1 and 5, got %d", c.Replicas))
		}
	}
	errs = append(errs, c.connectionProblems()...)
	if c.Sync != SyncDefault && c.Sync != SyncAlways {
		errs = append(errs, fmt.Errorf("unknown sync mode %v", c.Sync))
	}
	if c.MaxRequestTimeout <= 0 {
		errs = append(errs, errors.New("MaxRequestTimeout must be set to the longest delivery request timeout"))
	} else if c.AckWait <= c.MaxRequestTimeout {
		errs = append(errs, fmt.Errorf("AckWait (%s) must be longer than the longest request timeout (%s), "+
			"or a slow receiver gets the same delivery from two workers", c.AckWait, c.MaxRequestTimeout))
	}
	if c.DedupeWindow < 0 || c.DeadMaxAge < 0 || c.AttemptLog < 0 || c.MaxAckPending < 0 {
		errs = append(errs, errors.New("DedupeWindow, DeadMaxAge, AttemptLog and MaxAckPending must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid queue configuration: %w", err)
	}
	return nil
}
