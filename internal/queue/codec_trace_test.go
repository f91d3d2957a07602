package queue

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCodecTraceParent: an event with a traceparent is written as codecV3 and keeps it
// through the event, delivery and dead-letter forms; one without is written exactly as
// before (codecV2), so turning tracing on or off never changes what older dispatchers read.
func TestCodecTraceParent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ev := testEvent("team-a", "evt_1")
	ev.TraceParent = tp
	b := encodeEvent(&ev)
	if b[0] != codecV3 {
		t.Fatalf("version %d, want %d", b[0], codecV3)
	}
	got, err := decodeEvent(b)
	if err != nil || got.TraceParent != tp {
		t.Fatalf("event: %+v, %v", got, err)
	}

	d := Delivery{Event: ev, Subscription: "s", SubscriptionUID: "u", Endpoint: "e", Attempt: 2, FirstAttempt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	gotD, err := decodeDelivery(encodeDelivery(&d))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, gotD); diff != "" {
		t.Fatalf("delivery (-want +got)\n%s", diff)
	}
	info := DeadInfo{StatusCode: 500, Reason: "x", Time: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
	gotD, gotInfo, err := decodeDead(encodeDead(&d, &info))
	if err != nil || gotD.Event.TraceParent != tp || gotInfo != info {
		t.Fatalf("dead: %+v %+v %v", gotD, gotInfo, err)
	}

	// Without a traceparent: byte for byte the codecV2 form, decodable as before.
	plain := testEvent("team-a", "evt_1")
	pb := encodeEvent(&plain)
	if pb[0] != codecV2 {
		t.Fatalf("version %d, want %d", pb[0], codecV2)
	}
	withTrace := encodeEvent(&ev)
	if !bytes.Equal(pb[1:], withTrace[1:len(pb)]) {
		t.Error("codecV3 is not codecV2 followed by the traceparent")
	}
	// A truncated traceparent is damage, not an empty one.
	if _, err := decodeEvent(withTrace[:len(withTrace)-3]); err == nil {
		t.Error("decoding a truncated traceparent succeeded")
	}
}
