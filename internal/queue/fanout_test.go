package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestFanoutPublishesDeliveriesAndAcksEvents(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	publish(t, q, testEvent("team-a", "e1"), testEvent("team-a", "e2"), testEvent("team-b", "e3"))

	var failed atomic.Bool
	stop := run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			// A matching error (say, a cache not yet synced) must not lose
			// the event: it comes back.
			if ev.ID == "e2" && failed.CompareAndSwap(false, true) {
				return nil, errors.New("not ready")
			}
			return []Delivery{
				{Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp"},
				{Subscription: "audit.all", SubscriptionUID: "u2", Endpoint: "siem.prod"},
			}, nil
		})
	})
	eventually(t, "all events fanned out and acknowledged", func() bool {
		return streamMsgs(t, q, streamEvents) == 0 && streamMsgs(t, q, streamDeliveries) == 6
	})
	stop()
	if !failed.Load() {
		t.Fatal("the failing match was never called")
	}

	b, err := q.Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[EndpointKey]uint64{
		{"team-a", "erp"}: 2, {"team-a", "siem.prod"}: 2,
		{"team-b", "erp"}: 1, {"team-b", "siem.prod"}: 1,
	}
	if len(b.Endpoints) != len(want) {
		t.Fatalf("backlog %v, want %v", b.Endpoints, want)
	}
	for k, n := range want {
		if b.Endpoints[k] != n {
			t.Errorf("backlog of %v = %d, want %d", k, b.Endpoints[k], n)
		}
	}

	// A fan-out repeated after a crash publishes the same ids: nothing new
	// is stored, also when the repeat parks a delivery the first one
	// stored for delivery (the endpoint's circuit opened in between).
	for _, park := range []bool{false, true} {
		futures, _, err := q.publishDeliveries(q.publishAsync, q.publishAsync, testEvent("team-a", "e1"),
			[]Delivery{{Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp", Park: park}}, false, false, nil)
		if err == nil {
			err = await(context.Background(), futures)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n := streamMsgs(t, q, streamDeliveries); n != 6 {
			t.Fatalf("a repeated fan-out (park %v) stored a copy: %d deliveries", park, n)
		}
	}
}

// While the deliveries stream refuses writes (as when the NATS node holding
// it is away), the fan-out must not store the deliveries of later events on
// an ordered lane before those of the event that failed: the lane hands
// them out in the order they are stored.
func TestFanoutKeepsLaneOrderWhileStoringFails(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	ids := func(from, to int) []Event {
		var evs []Event
		for n := from; n <= to; n++ {
			evs = append(evs, testEvent("team-a", fmt.Sprintf("e%02d", n)))
		}
		return evs
	}
	var matched sync.Map
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			matched.Store(ev.ID, true)
			return []Delivery{
				{Subscription: "ledger", SubscriptionUID: "u1", Endpoint: "erp", Ordered: true},
				{Subscription: "audit", SubscriptionUID: "u2", Endpoint: "siem"},
			}, nil
		})
	})
	publish(t, q, ids(1, 10)...)
	eventually(t, "the first events fanned out", func() bool { return streamMsgs(t, q, streamEvents) == 0 })

	// The stream refuses every new message for a while (none fits).
	s, err := q.js.Stream(ctx, streamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	open := cfg
	cfg.MaxMsgSize = 16
	if _, err := q.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	publish(t, q, ids(11, 20)...)
	eventually(t, "the refused events matched", func() bool { _, ok := matched.Load("e20"); return ok })
	// Give the fan-out time to see its publishes refused (the old code NAKed
	// them for a second); the order asserted below does not depend on it.
	time.Sleep(300 * time.Millisecond)
	if _, err := q.js.UpdateStream(ctx, open); err != nil {
		t.Fatal(err)
	}
	publish(t, q, ids(21, 30)...)
	eventually(t, "every event fanned out", func() bool {
		return streamMsgs(t, q, streamEvents) == 0 && streamMsgs(t, q, streamDeliveries) == 60
	})

	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lane := laneSubjectOf("team-a", "ledger", 0)
	var got []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if m.Subject != lane {
			continue
		}
		d, err := decodeDelivery(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Event.ID)
	}
	var want []string
	for _, ev := range ids(1, 30) {
		want = append(want, ev.ID)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the ordered lane holds\n%s\nwant\n%s", strings.Join(got, " "), strings.Join(want, " "))
	}
}

// When the replica holding the fan-out dies with events taken and not
// acknowledged, the next holder must store their deliveries before those of
// the events published after: an ordered lane delivers in stored order.
// Without the takeover's catch-up (fantakeover.go) the dead holder's events
// came back after their lease, behind the 50 later ones.
func TestFanoutKeepsLaneOrderWhenItsHolderDies(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.Listen = "127.0.0.1:-1"
	server := openTest(t, cfg)
	peer := func() *Queue {
		return openTest(t, Config{URL: server.ClientURL(), MaxRequestTimeout: cfg.MaxRequestTimeout, AckWait: cfg.AckWait})
	}
	ctx := context.Background()
	ids := func(from, to int) []Event {
		var evs []Event
		for n := from; n <= to; n++ {
			evs = append(evs, testEvent("team-a", fmt.Sprintf("e%03d", n)))
		}
		return evs
	}
	toLane := []Delivery{{Subscription: "ledger", SubscriptionUID: "u1", Endpoint: "erp", Ordered: true}}
	if _, err := server.PublishEvents(ctx, ids(1, 30)); err != nil {
		t.Fatal(err)
	}

	// The first holder fans out e001-e030, then takes e031-e100, hangs on
	// them, and dies.
	doomed := peer()
	stopDoomed := run(t, func(ctx context.Context) error {
		return runFanout(ctx, doomed, func(ctx context.Context, ev Event) ([]Delivery, error) {
			if ev.ID > "e030" {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return toLane, nil
		})
	})
	eventually(t, "the first 30 events fanned out", func() bool { return streamMsgs(t, server, streamDeliveries) == 30 })
	if _, err := server.PublishEvents(ctx, ids(31, 100)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first holder to take the next 70", func() bool {
		c, err := server.events.Consumer(ctx, consumerFanout)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending == 70
	})
	doomed.Conn().Close()
	stopDoomed()

	// Later events, and another replica that takes the fan-out over.
	if _, err := server.PublishEvents(ctx, ids(101, 150)); err != nil {
		t.Fatal(err)
	}
	next := peer()
	run(t, func(ctx context.Context) error {
		return runFanout(ctx, next, func(context.Context, Event) ([]Delivery, error) { return toLane, nil })
	})
	deadline := time.Now().Add(2 * time.Minute)
	for streamMsgs(t, server, streamEvents) > 0 || streamMsgs(t, server, streamDeliveries) < 150 {
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes: %d events not fanned out, %d deliveries", streamMsgs(t, server, streamEvents), streamMsgs(t, server, streamDeliveries))
		}
		time.Sleep(50 * time.Millisecond)
	}

	s, err := server.js.Stream(ctx, streamDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		d, err := decodeDelivery(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Event.ID)
	}
	var want []string
	for _, ev := range ids(1, 150) {
		want = append(want, ev.ID)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the ordered lane holds\n%s\nwant\n%s", strings.Join(got, " "), strings.Join(want, " "))
	}
}

// A delivery parked on its event's first fan-out is stored without a message
// id, so a burst to an endpoint that is down costs the server no memory per
// delivery; every other delivery carries one, and so do the parks of a
// fan-out that repeats its event, so that repeats add at most one copy.
func TestFanoutParksWithoutIDsOnlyOnFirstFanout(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	publish(t, q, testEvent("team-a", "e1"), testEvent("team-a", "e2"))

	var failed atomic.Bool
	match := func(_ context.Context, ev Event) ([]Delivery, error) {
		// e2's first fan-out fails before anything is stored: it comes
		// back, handed out a second time.
		if ev.ID == "e2" && failed.CompareAndSwap(false, true) {
			return nil, errors.New("not ready")
		}
		return []Delivery{
			{Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp"},
			{Subscription: "audit", SubscriptionUID: "u2", Endpoint: "down", Park: true},
		}, nil
	}
	stop := run(t, func(ctx context.Context) error { return runFanout(ctx, q, match) })
	eventually(t, "both events fanned out", func() bool {
		return streamMsgs(t, q, streamEvents) == 0 && streamMsgs(t, q, streamDeliveries) == 4
	})
	stop()

	withID := func(m *jetstream.RawStreamMsg) bool { return m.Header.Get(jetstream.MsgIDHeader) != "" }
	got := map[string]bool{}
	for _, m := range storedDeliveries(t, q) {
		d, err := decodeDelivery(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		got[d.Event.ID+"/"+d.Subscription] = withID(m)
	}
	want := map[string]bool{
		"e1/billing": true, "e1/audit": false, // parked on e1's first fan-out
		"e2/billing": true, "e2/audit": true, // e2 came back: its park carries its id
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored with a message id: %v, want %v", got, want)
	}

	// e1 fanned out again (its lease ran out, say): its delivery is
	// recognised, its park is stored a second time, with its id, and a
	// third fan-out adds nothing.
	for n, want := range []uint64{5, 5} {
		futures, _, err := q.publishDeliveries(q.publishAsync, q.publishAsync, testEvent("team-a", "e1"), []Delivery{
			{Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp"},
			{Subscription: "audit", SubscriptionUID: "u2", Endpoint: "down", Park: true},
		}, false, false, nil)
		if err == nil {
			err = await(context.Background(), futures)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := streamMsgs(t, q, streamDeliveries); got != want {
			t.Errorf("after repeat %d: %d deliveries stored, want %d", n+1, got, want)
		}
	}
}
