package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/queue/queuetest"
)

// jsTap counts what the dispatcher's connection sends to JetStream, by kind: stream
// writes per stream (a subscription on the streams' subjects sees every publish to
// them), and acknowledgements by verb (+ACK, -NAK, +WPI, +TERM on $JS.ACK.>). It
// subscribes on the queue's own connection: one connection's messages reach the
// server, and its subscribers, in the order they were sent, so a sentinel published
// last marks the moment every earlier message has been counted.
type jsTap struct {
	nc  *nats.Conn
	mu  sync.Mutex
	n   map[string]int
	got chan struct{}
}

// The queue's subject roots (internal/queue/subjects.go): a rename that this test
// does not follow shows as zero writes, which fails the lower bounds below.
var tapRoots = []string{"hl.evt", "hl.dlv", "hl.ord", "hl.sch", "hl.park", "hl.dead", "hl.att", "hl.hold", "hl.ret"}

const tapSentinel = "hookline.test.sentinel"

func newJSTap(t *testing.T, nc *nats.Conn) *jsTap {
	tap := &jsTap{nc: nc, n: map[string]int{}, got: make(chan struct{}, 1)}
	handle := func(m *nats.Msg) {
		kind := ""
		switch {
		case m.Subject == tapSentinel:
			tap.got <- struct{}{}
			return
		case strings.HasPrefix(m.Subject, "$JS.ACK."):
			verb, _, _ := strings.Cut(string(m.Data), " ")
			if verb == "" {
				verb = "+ACK" // an empty ack body is an ack
			}
			kind = "ack " + verb
		case strings.HasPrefix(m.Subject, "$JS.API.CONSUMER.MSG.NEXT."):
			kind = "pull request"
		case strings.HasPrefix(m.Subject, "$JS.API."):
			kind = "api"
		default:
			for _, root := range tapRoots {
				if strings.HasPrefix(m.Subject, root+".") {
					kind = "write " + root
				}
			}
			// A message of an atomic batch (group commit under --durability
			// always) is still a write; the batch's last one, the commit, is
			// also counted apart: the server syncs once per commit.
			if m.Header.Get("Nats-Batch-Commit") != "" {
				tap.mu.Lock()
				tap.n["commit "+strings.TrimPrefix(kind, "write ")]++
				tap.mu.Unlock()
			} else if m.Header.Get("Nats-Batch-Id") == "" && kind != "" {
				tap.mu.Lock()
				tap.n["unbatched "+strings.TrimPrefix(kind, "write ")]++
				tap.mu.Unlock()
			}
		}
		tap.mu.Lock()
		tap.n[kind]++
		tap.mu.Unlock()
	}
	for _, subj := range append([]string{"$JS.ACK.>", "$JS.API.>", tapSentinel}, suffixAll(tapRoots, ".>")...) {
		sub, err := nc.Subscribe(subj, handle)
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return tap
}

func suffixAll(ss []string, suffix string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s + suffix
	}
	return out
}

// settle returns the counts once everything the connection sent so far has been
// counted, and resets them.
func (tap *jsTap) settle(t *testing.T) map[string]int {
	t.Helper()
	if err := tap.nc.Publish(tapSentinel, nil); err != nil {
		t.Fatal(err)
	}
	<-tap.got
	tap.mu.Lock()
	defer tap.mu.Unlock()
	out := tap.n
	tap.n = map[string]int{}
	return out
}

// TestJetStreamOperationsPerDelivery counts the JetStream writes and acknowledgements
// that successful deliveries cost, on the real embedded server, for single events and
// for batches, to one subscription and to ten. The bounds are today's costs per
// delivery: an event is written once, retained once and acked once by the fan-out; a
// delivery is written once and acked once, and a batch's deliveries to one
// subscription share one message; attempt log entries are written in batches. A change
// that adds a write or an ack per delivery fails here, without timing anything.
func TestJetStreamOperationsPerDelivery(t *testing.T) {
	t.Parallel()
	const events = 200
	for _, c := range []struct {
		name   string
		subs   int
		batch  int
		always bool
	}{
		{"single events, 1 subscription", 1, 1, false}, {"batches of 100, 1 subscription", 1, 100, false},
		{"single events, 10 subscriptions", 10, 1, false}, {"batches of 100, 1 subscription, durability always", 1, 100, true},
		{"batches of 10, 1 subscription, durability always", 1, 10, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if c.always {
				f.q = queuetest.Open(t, func(cfg *queue.Config) { cfg.Sync = queue.SyncAlways })
			}
			rc := newReceiver(t, false, nil)
			f.endpoint("erp", rc, limits(func(l *hooklinev1.EndpointLimits) { l.MaxInFlight = ptr.To[int32](100) }))
			for i := range c.subs {
				f.subscription(fmt.Sprintf("s%d", i), "erp")
			}
			tap := newJSTap(t, f.q.Conn())
			// Generous waits, so a loaded CI machine does not turn a slow delivery
			// into a busy hold or a lease renewal, which would be counted: those
			// cost operations by design, and are tested elsewhere.
			opts := testOptions()
			opts.BusyWait, opts.LeaseRenewal = 20*time.Second, 20*time.Second
			f.start(opts)
			// Groups are stored once this replica has read that every live
			// one reads them (a beat after the start); counted before, a
			// batch's deliveries would go one by one or grouped by timing.
			eventually(t, "grouped deliveries on", f.q.GroupsOn)
			tap.settle(t) // what starting costs is not per delivery

			// One request (an event or a batch) at a time, each delivered before the
			// next: at most 100 deliveries are outstanding, which the endpoint's queue
			// and send slots take without holding any for want of room however slow
			// the machine, so what is counted does not depend on timing.
			for i := 0; i < events; i += c.batch {
				ids := make([]string, 0, c.batch)
				for k := i; k < min(events, i+c.batch); k++ {
					ids = append(ids, fmt.Sprintf("e%d", k))
				}
				f.publish(ids...)
				want := (i + len(ids)) * c.subs
				eventually(t, "the deliveries so far", func() bool { return rc.count() >= want })
			}
			deliveries := events * c.subs
			// Everything is acknowledged when both work queues are empty; the attempt
			// log is written after the ack, so wait for its last entries too.
			eventually(t, "empty work queues and the attempt log", func() bool {
				evs, dls := streamMsgs(t, f, "HL_EVENTS"), streamMsgs(t, f, "HL_DELIVERIES")
				return evs == 0 && dls == 0 && f.subscriptionStats("s0").Delivered == events && len(f.attempts("s0")) > 0
			})
			if got := rc.count(); got != deliveries {
				t.Fatalf("%d requests at the receiver, want %d (no retries)", got, deliveries)
			}
			n := tap.settle(t)
			t.Logf("per %d deliveries: %v", deliveries, n)
			per := func(kind string) float64 { return float64(n[kind]) / float64(deliveries) }

			// Writes and acks of the event: once per event, shared by its deliveries.
			eventWrites, eventAcks := 1.0/float64(c.subs), 1.0/float64(c.subs)
			dlvMin, dlvMax := deliveryMessageBounds(c.batch)
			bounds := []struct {
				kind     string
				min, max float64
			}{
				{"write hl.evt", eventWrites, eventWrites},
				// The fan-out retains each event (retention is on by default).
				{"write hl.ret", eventWrites, eventWrites},
				{"write hl.dlv", dlvMin, dlvMax},
				// The attempt log: at least one write in all, at most one per delivery.
				{"write hl.att", 1 / float64(deliveries), 1},
				// The fan-out acks each event; the engine acks each delivery
				// message.
				{"ack +ACK", dlvMin + eventAcks, dlvMax + eventAcks},
			}
			for _, b := range bounds {
				if got := per(b.kind); got < b.min-1e-9 || got > b.max+1e-9 {
					t.Errorf("%s: %.3f per delivery, want %.3f to %.3f", b.kind, got, b.min, b.max)
				}
			}
			if c.always && c.batch < 16 {
				// Groups of fewer than 16 messages (queue's groupCommitAtomicMin):
				// an atomic batch would cost more than it saves (the server stages
				// each batch in a file store of its own), so each message is
				// published on its own.
				for _, root := range []string{"hl.evt", "hl.dlv", "hl.ret"} {
					if n["commit "+root] != 0 || n["unbatched "+root] != n["write "+root] {
						t.Errorf("%s: %d atomic batches and %d of %d writes on their own, want none and all", root, n["commit "+root], n["unbatched "+root], n["write "+root])
					}
				}
			}
			if c.always && c.batch >= 16 {
				// Group commit: each batch of 100 events is one atomic batch, one
				// sync, where it was 100; no event goes on its own.
				if got, want := per("commit hl.evt"), 1.0/float64(c.batch); got != want || n["unbatched hl.evt"] != 0 {
					t.Errorf("events: %.3f commits and %d lone writes per delivery, want %.3f and none", got, n["unbatched hl.evt"], want)
				}
				// The fan-out stores what it took at once as one atomic batch per
				// stream: 0.04 syncs per delivery here, 1 before group commit. A
				// fan-out batch of one event goes on its own, so the bound leaves
				// room for a machine slow enough to split the 100 events up.
				for _, root := range []string{"hl.dlv", "hl.ret"} {
					if got := per("commit "+root) + per("unbatched "+root); got > 0.5 {
						t.Errorf("%s: %.3f synced writes per delivery, want at most 0.5", root, got)
					}
				}
			}
			// Nothing else is written or acked on the way of a successful delivery:
			// no holds, schedules, parking, dead letters, NAKs or lease renewals.
			for kind, count := range n {
				if strings.HasPrefix(kind, "write ") || strings.HasPrefix(kind, "ack ") {
					known := false
					for _, b := range bounds {
						known = known || b.kind == kind
					}
					if !known {
						t.Errorf("%s: %d for %d deliveries that all succeeded first time, want none", kind, count, deliveries)
					}
				}
			}
		})
	}
}

// deliveryMessageBounds bounds the delivery messages written (and acked) per
// delivery for requests of batch events. A delivery is written once and acked
// once; a batch's deliveries to one subscription fetched together by the
// fan-out are one message (queue/group.go), at most 64 to a group. A request
// of 100 events stored at once is fetched in a few pieces at most: 5-13
// messages for 200 deliveries here, and the bound leaves room for a slow
// machine. Under SyncAlways a request of fewer than 16 events is stored event
// by event, and the fan-out takes them as they come, one or a few at a time
// (101-103 messages for 200 deliveries).
func deliveryMessageBounds(batch int) (lo, hi float64) {
	switch {
	case batch >= 100:
		return 1.0 / 64, 0.5
	case batch > 1:
		return 1.0 / 64, 1
	}
	return 1, 1
}

func streamMsgs(t *testing.T, f *fixture, stream string) uint64 {
	t.Helper()
	js, err := jetstream.New(f.q.Conn())
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
