// Package queuetest opens a real queue for tests: an embedded nats-server with
// JetStream, stored in the test's own temporary directory and closed when the
// test ends. It is the one way the packages' tests get a queue, so they all run
// against the same configuration. JetStream starts the bare server alone, for
// measurements of the server itself.
package queuetest

import (
	"context"
	"errors"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// JetStream starts a bare embedded nats-server with JetStream stored in dir
// (every store synced when syncAlways) and connects to it in process, for the
// programs that measure the server itself with nothing of hookline in the way
// (test/bench's floor phase, hack/syncalways). stop closes the connection and
// shuts the server down.
func JetStream(dir string, syncAlways bool) (nc *nats.Conn, js jetstream.JetStream, stop func(), err error) {
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, SyncAlways: syncAlways, DontListen: true, NoSigs: true})
	if err != nil {
		return nil, nil, nil, err
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, nil, nil, errors.New("the embedded nats-server did not start within 30s")
	}
	nc, err = nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		srv.Shutdown()
		return nil, nil, nil, err
	}
	stop = func() { nc.Close(); srv.Shutdown() }
	if js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		stop()
		return nil, nil, nil, err
	}
	return nc, js, stop, nil
}
