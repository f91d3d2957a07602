//go:build !race

// The race detector changes allocation counts, so these bounds hold only without it;
// `make test-allocs` (part of `make test`) runs them without.

package queue

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestHotPathAllocations bounds the allocations of the queue codec, which runs on
// every event (encoded at ingest, decoded by the fan-out) and every delivery (encoded
// by the fan-out, decoded by the engine). The bounds are today's counts: a change that
// adds an allocation per event or delivery fails here, without timing anything.
func TestHotPathAllocations(t *testing.T) {
	ev := Event{
		Namespace: "billing", ID: "inv_2041-paid", Type: "invoice.paid",
		Time: time.Date(2026, 11, 26, 19, 59, 58, 123000000, time.UTC),
		Data: json.RawMessage(`{"pad":"` + strings.Repeat("x", 1014) + `"}`),
	}
	dv := Delivery{Event: ev, Subscription: "invoices-to-erp", SubscriptionUID: "8d1e4a52-7c1e-4f0e-9a43-0d6a3c1b2e77", Endpoint: "erp", Attempt: 1, FirstAttempt: ev.Time}
	evBytes, dvBytes := encodeEvent(&ev), encodeDelivery(&dv)
	cases := []struct {
		name string
		max  float64
		fn   func()
	}{
		// The buffer, sized once.
		{"encodeEvent", 1, func() { _ = encodeEvent(&ev) }},
		{"encodeDelivery", 1, func() { _ = encodeDelivery(&dv) }},
		// One copy of the names (decoder.string's window) for namespace, id and
		// type; data is not copied.
		{"decodeEvent", 1, func() {
			if _, err := decodeEvent(evBytes); err != nil {
				t.Fatal(err)
			}
		}},
		// Subscription, its UID and the endpoint, then the event's three strings:
		// one window.
		{"decodeDelivery", 1, func() {
			if _, err := decodeDelivery(dvBytes); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		n := testing.AllocsPerRun(200, c.fn)
		t.Logf("%s: %v allocations", c.name, n)
		if n > c.max {
			t.Errorf("%s allocates %v times per call, want at most %v: an allocation was added to the queue's hot path", c.name, n, c.max)
		}
	}
}
