package queue

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCodecRoundTrip(t *testing.T) {
	ev := testEvent("team-a", "evt_1")
	d := Delivery{
		Event: ev, Subscription: "billing.hooks", SubscriptionUID: "0b7c", Endpoint: "erp",
		Ordered: true, Lane: 7, Attempt: 3, Holds: 2, Replay: 99,
		FirstAttempt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
	}
	t.Run("event", func(t *testing.T) {
		got, err := decodeEvent(encodeEvent(&ev))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ev, got); diff != "" {
			t.Fatalf("(-want +got)\n%s", diff)
		}
	})
	t.Run("event without time or data", func(t *testing.T) {
		in := Event{Namespace: "a", ID: "b"}
		got, err := decodeEvent(encodeEvent(&in))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(in, got); diff != "" {
			t.Fatalf("(-want +got)\n%s", diff)
		}
	})
	t.Run("delivery", func(t *testing.T) {
		got, err := decodeDelivery(encodeDelivery(&d))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Fatalf("(-want +got)\n%s", diff)
		}
	})
	t.Run("dead", func(t *testing.T) {
		info := DeadInfo{StatusCode: 503, Reason: "Service Unavailable", Time: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
		gotD, gotInfo, err := decodeDead(encodeDead(&d, &info))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d, gotD); diff != "" {
			t.Fatalf("(-want +got)\n%s", diff)
		}
		if diff := cmp.Diff(info, gotInfo); diff != "" {
			t.Fatalf("(-want +got)\n%s", diff)
		}
	})
	t.Run("attempt", func(t *testing.T) {
		a := Attempt{Time: time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC), Attempt: 4, StatusCode: 500,
			Latency: 1234 * time.Millisecond, Error: "boom", Response: `{"error":"x"}`}
		got, err := decodeAttempt(encodeAttempt(&a))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Fatalf("(-want +got)\n%s", diff)
		}
	})
}

func TestCodecRejectsDamage(t *testing.T) {
	b := encodeDelivery(&Delivery{Event: testEvent("ns", "id"), Subscription: "s", SubscriptionUID: "u", Endpoint: "e", Attempt: 1})
	for _, n := range []int{0, 1, 5, len(b) - 1} {
		if _, err := decodeDelivery(b[:n]); err == nil {
			t.Errorf("decoding %d of %d bytes succeeded", n, len(b))
		}
	}
	bad := append([]byte{9}, b[1:]...)
	if _, err := decodeDelivery(bad); err == nil {
		t.Error("decoding an unknown version succeeded")
	}
}

func TestSubjectTokens(t *testing.T) {
	tests := []struct{ name, token string }{
		{"plain-name", "plain-name"},
		{"my.hook", "my_2ehook"},
		{"under_score", "under_5fscore"},
		{"a*b>c d", "a_2ab_3ec_20d"},
		{"", "_"},
	}
	for _, tt := range tests {
		if got := token(tt.name); got != tt.token {
			t.Errorf("token(%q) = %q, want %q", tt.name, got, tt.token)
		}
		if back, err := untoken(tt.token); err != nil || back != tt.name {
			t.Errorf("untoken(%q) = %q, %v; want %q", tt.token, back, err, tt.name)
		}
	}
	ns, ep, err := splitDeliverySubject(deliverySubject("team-a", "erp.prod"))
	if err != nil || ns != "team-a" || ep != "erp.prod" {
		t.Errorf("splitDeliverySubject = %q, %q, %v", ns, ep, err)
	}
	// Deliveries stored before partitioning still parse.
	ns, ep, err = splitDeliverySubject(subjDeliver + ".team-a.erp_2eprod")
	if err != nil || ns != "team-a" || ep != "erp.prod" {
		t.Errorf("splitDeliverySubject(legacy) = %q, %q, %v", ns, ep, err)
	}
	if a, b := orderedConsumerName("a_b", "c"), orderedConsumerName("a", "b_c"); a == b {
		t.Errorf("consumer names collide: %q", a)
	}
}

// The delivery's message id is what makes a repeated fan-out or retry a no-op:
// the same delivery and attempt always give the same id, and anything that tells
// two deliveries apart gives another. It is pinned, because an id that changes
// between versions lets a fan-out repeated across an upgrade store its deliveries
// twice.
func TestDeliveryMsgID(t *testing.T) {
	d := Delivery{Event: Event{Namespace: "ns", ID: "evt"}, SubscriptionUID: "uid", Attempt: 2}
	// base64url(SHA-256("ns\x00evt\x00uid\x000\x002\x000")[:16]), worked out apart from the code.
	if got, want := deliveryMsgID(&d), "Amq_r6cQaRxnDLy1hu9vvA"; got != want {
		t.Errorf("deliveryMsgID = %q, want %q (pinned)", got, want)
	}
	base := deliveryMsgID(&d)
	seen := map[string]string{base: "base"}
	for name, change := range map[string]func(*Delivery){
		"namespace":     func(d *Delivery) { d.Event.Namespace = "ns2" },
		"event":         func(d *Delivery) { d.Event.ID = "evt2" },
		"uid":           func(d *Delivery) { d.SubscriptionUID = "uid2" },
		"attempt":       func(d *Delivery) { d.Attempt = 3 },
		"holds":         func(d *Delivery) { d.Holds = 1 },
		"replay":        func(d *Delivery) { d.Replay = 7 },
		"names shifted": func(d *Delivery) { d.Event.Namespace, d.Event.ID = "ns/evt", "" },
		"long names":    func(d *Delivery) { d.Event.ID = strings.Repeat("e", 300) },
	} {
		c := d
		change(&c)
		id := deliveryMsgID(&c)
		if other, ok := seen[id]; ok {
			t.Errorf("%s: id %q is also %s's", name, id, other)
		}
		seen[id] = name
		if len(id) != 22 {
			t.Errorf("%s: id %q is %d characters, want 22", name, id, len(id))
		}
		if again := deliveryMsgID(&c); again != id {
			t.Errorf("%s: id %q then %q", name, id, again)
		}
	}
	// Fields the id does not depend on: the endpoint (a retargeted retry is the
	// same delivery) and the subscription's name.
	c := d
	c.Endpoint, c.Subscription = "other", "renamed"
	if got := deliveryMsgID(&c); got != base {
		t.Errorf("endpoint and name changed the id: %q, want %q", got, base)
	}
}

func TestCeilSecond(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	for in, want := range map[time.Duration]time.Duration{0: 0, time.Nanosecond: time.Second, 999 * time.Millisecond: time.Second, time.Second: time.Second} {
		if got := ceilSecond(base.Add(in)); !got.Equal(base.Add(want)) {
			t.Errorf("ceilSecond(+%v) = %v, want +%v", in, got, want)
		}
	}
}

// TestEventTimesRoundTrip: every time the API accepts comes back exactly,
// the Unix epoch and times outside UnixNano's range (1678-2262) included;
// records of the old format are still read.
func TestEventTimesRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1677, 9, 21, 0, 12, 43, 145224191, time.UTC),
		time.Unix(0, 0).UTC(),
		time.Date(2026, 11, 26, 20, 0, 0, 123456789, time.UTC),
		time.Date(2262, 4, 11, 23, 47, 16, 854775808, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		{},
	} {
		ev := Event{Namespace: "ns", ID: "e", Type: "t", Time: tm}
		got, err := decodeEvent(encodeEvent(&ev))
		if err != nil || !got.Time.Equal(tm) || got.Time.IsZero() != tm.IsZero() {
			t.Errorf("event time %s came back as %s (%v)", tm, got.Time, err)
		}
		d := Delivery{Event: ev, Subscription: "s", SubscriptionUID: "u", Endpoint: "e", Attempt: 1, FirstAttempt: tm}
		gd, info, err := decodeDead(encodeDead(&d, &DeadInfo{Time: tm}))
		if err != nil || !gd.Event.Time.Equal(tm) || !gd.FirstAttempt.Equal(tm) || !info.Time.Equal(tm) {
			t.Errorf("dead delivery times for %s came back as %s, %s, %s (%v)", tm, gd.Event.Time, gd.FirstAttempt, info.Time, err)
		}
	}
	// A delivery stored by the previous format.
	old := encoder{legacyTimes: true}
	old.byte(codecV1)
	ev := Event{Namespace: "ns", ID: "e", Type: "t", Time: time.Date(2026, 11, 26, 20, 0, 0, 5, time.UTC)}
	old.event(&ev)
	if got, err := decodeEvent(old.b); err != nil || !got.Time.Equal(ev.Time) {
		t.Errorf("old-format event: %s, %v", got.Time, err)
	}
}
