// Package queuetest opens a real queue for tests: an embedded nats-server with
// JetStream, stored in the test's own temporary directory and closed when the
// test ends. It is the one way the packages' tests get a queue, so they all run
// against the same configuration.
package queuetest

import (
	"context"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/hookline/hookline/internal/queue"
)

// TB is what Open needs of a test; *testing.T, *testing.B and Ginkgo's GinkgoT()
// all have it.
type TB interface {
	Helper()
	TempDir() string
	Cleanup(func())
	Fatalf(format string, args ...any)
	Log(args ...any)
}

// Open opens an embedded queue in a new directory, with mod (when not nil)
// applied to the tests' configuration, and closes it when the test ends. Its
// log goes to the test's log.
func Open(t TB, mod func(*queue.Config)) *queue.Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := queue.Config{
		Embedded:          true,
		DataDir:           t.TempDir(),
		MaxRequestTimeout: 30 * time.Second,
		AckWait:           time.Minute,
	}
	if mod != nil {
		mod(&cfg)
	}
	q, err := queue.Open(ctx, cfg, testr.NewWithInterface(t, testr.Options{LogTimestamp: true}))
	if err != nil {
		t.Fatalf("opening the queue: %v", err)
	}
	t.Cleanup(q.Close)
	return q
}
