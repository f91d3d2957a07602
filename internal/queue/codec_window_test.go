package queue

import (
	"strings"
	"testing"
	"time"
)

// TestDecodeStringWindow round-trips deliveries whose names fall inside one
// string window, cross its end, or are longer than a window, with and without
// a traceparent after the data: each field must come back exactly.
func TestDecodeStringWindow(t *testing.T) {
	for _, n := range []int{0, 1, 40, 90, stringWindow - 1, stringWindow, stringWindow + 1, 3 * stringWindow} {
		for _, trace := range []string{"", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"} {
			name := strings.Repeat("n", n)
			dv := Delivery{
				Subscription: "sub-" + name, SubscriptionUID: "8d1e4a52-7c1e-4f0e-9a43-0d6a3c1b2e77", Endpoint: name + "-ep",
				Attempt: 2, Holds: 1, FirstAttempt: time.Unix(1700000000, 5).UTC(),
				Event: Event{Namespace: "ns" + name, ID: name + "id", Type: "t." + name, Time: time.Unix(1700000001, 7).UTC(),
					Data: []byte(`{"k":"` + name + `"}`), TraceParent: trace},
			}
			got, err := decodeDelivery(encodeDelivery(&dv))
			if err != nil {
				t.Fatalf("names of %d bytes: %v", n, err)
			}
			if got.Subscription != dv.Subscription || got.SubscriptionUID != dv.SubscriptionUID || got.Endpoint != dv.Endpoint ||
				got.Event.Namespace != dv.Event.Namespace || got.Event.ID != dv.Event.ID || got.Event.Type != dv.Event.Type ||
				string(got.Event.Data) != string(dv.Event.Data) || got.Event.TraceParent != trace ||
				got.Attempt != 2 || got.Holds != 1 || !got.FirstAttempt.Equal(dv.FirstAttempt) || !got.Event.Time.Equal(dv.Event.Time) {
				t.Fatalf("names of %d bytes, trace %q: got %+v, want %+v", n, trace, got, dv)
			}
			ev, err := decodeEvent(encodeEvent(&dv.Event))
			if err != nil || ev.Namespace != dv.Event.Namespace || ev.ID != dv.Event.ID || ev.Type != dv.Event.Type || ev.TraceParent != trace {
				t.Fatalf("event with names of %d bytes: %+v, %v", n, ev, err)
			}
		}
	}
	// A truncated message is an error, not a panic.
	b := encodeDelivery(&Delivery{Subscription: "s", SubscriptionUID: "u", Endpoint: "e", Attempt: 1, Event: Event{Namespace: "n", ID: "i", Type: "t"}})
	for i := range b {
		if _, err := decodeDelivery(b[:i]); err == nil {
			t.Fatalf("a delivery cut to %d of %d bytes decoded", i, len(b))
		}
	}
}
