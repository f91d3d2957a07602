package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats.go/jetstream"
)

// testConfig is an embedded queue in dir. AckWait is short so tests that
// leave a delivery unresolved see it again quickly.
func testConfig(dir string) Config {
	return Config{
		Embedded:          true,
		DataDir:           dir,
		MaxRequestTimeout: 500 * time.Millisecond,
		AckWait:           time.Second,
	}
}

func openTest(t testing.TB, cfg Config) *Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := Open(ctx, cfg, testr.NewWithInterface(t, testr.Options{}))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(q.Close)
	return q
}

// run starts f in the background; the returned stop cancels it and waits
// for it to return.
func run(t testing.TB, f func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually waits for cond, for outcomes only: it never asserts how fast.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testEvent(ns, id string) Event {
	return Event{
		Namespace: ns,
		ID:        id,
		Type:      "invoice.paid",
		Time:      time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC),
		Data:      json.RawMessage(fmt.Sprintf(`{"id":%q}`, id)),
	}
}

func publish(t testing.TB, q *Queue, evs ...Event) {
	t.Helper()
	for _, ev := range evs {
		if _, err := q.PublishEvent(context.Background(), ev); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
	}
}

// toEndpoint matches every event to one unordered subscription.
func toEndpoint(sub, endpoint string) MatchFunc {
	return func(_ context.Context, ev Event) ([]Delivery, error) {
		return []Delivery{{Subscription: sub, SubscriptionUID: "uid-" + sub, Endpoint: endpoint}}, nil
	}
}

// recorder collects what a handler saw.
type recorder struct {
	mu   sync.Mutex
	seen []seen
}

type seen struct {
	d  Delivery
	at time.Time
}

func (r *recorder) add(d Delivery) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, seen{d, time.Now()})
	return len(r.seen)
}

func (r *recorder) all() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.seen...)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// storedDeliveries reads every message the deliveries stream holds, in
// stream order.
func storedDeliveries(t testing.TB, q *Queue) []*jetstream.RawStreamMsg {
	t.Helper()
	name := streamDeliveries
	ctx := context.Background()
	s, err := q.js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // removed: acknowledged from the work queue
		}
		if err != nil {
			t.Fatalf("stream %s message %d: %v", name, seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func streamMsgs(t testing.TB, q *Queue, name string) uint64 {
	t.Helper()
	s, err := q.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info.State.Msgs
}
