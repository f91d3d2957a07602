// Package receiver is a webhook receiver that verifies Standard Webhooks signatures the way
// a customer's endpoint would. `hookline listen` runs it for people trying hookline out, and
// the end-to-end tests and benchmarks use it as the far end of a delivery. It can be told to
// fail on demand, so tests can take an endpoint down and bring it back.
package receiver

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/internal/signing"
)

// MaxBody bounds what one delivery may carry; larger bodies are refused with 413.
const MaxBody = 1 << 20

// Delivery is one request the receiver accepted.
type Delivery struct {
	// ID is the webhook-id; EventID the producer's id (the body's "id", or
	// ce-id), shared by the deliveries of one event to several subscriptions.
	ID        string          `json:"id"`
	EventID   string          `json:"eventId,omitempty"`
	Type      string          `json:"type,omitempty"`
	Timestamp string          `json:"timestamp"`
	Received  time.Time       `json:"received"`
	Body      json.RawMessage `json:"body"`
	Headers   http.Header     `json:"-"`
	Duplicate bool            `json:"duplicate"` // this webhook-id was accepted before
}

// Receiver is an http.Handler. The zero value verifies nothing and accepts everything;
// set Secrets to verify.
type Receiver struct {
	// Secrets returns the keys a delivery may be signed with; nil skips verification.
	Secrets func() []string
	// Now is the receiver's clock for the timestamp tolerance; nil uses time.Now.
	Now func() time.Time
	// OnDelivery, if set, is called for every accepted delivery.
	OnDelivery func(Delivery)

	failWith atomic.Int32 // HTTP status to answer instead of accepting; 0 accepts
	hang     atomic.Pointer[chan struct{}]

	mu       sync.Mutex
	seen     map[string]int
	events   map[string]int
	accepted []Delivery
	rejected int
}

// FailWith makes the receiver answer every request with status (e.g. 503) until
// FailWith(0).
func (r *Receiver) FailWith(status int) { r.failWith.Store(int32(status)) }

// Hang makes every request block until Release, like a receiver that stopped answering.
func (r *Receiver) Hang() {
	ch := make(chan struct{})
	r.hang.Store(&ch)
}

// Release unblocks hung requests and stops hanging.
func (r *Receiver) Release() {
	if ch := r.hang.Swap(nil); ch != nil {
		close(*ch)
	}
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "webhooks are delivered with POST", http.StatusMethodNotAllowed)
		return
	}
	if ch := r.hang.Load(); ch != nil {
		select {
		case <-*ch:
		case <-req.Context().Done():
			return
		}
	}
	if status := int(r.failWith.Load()); status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxBody))
	if err != nil {
		http.Error(w, "body too large or unreadable: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	if r.Secrets != nil {
		if err := signing.Verify(r.Secrets(), req.Header, body, now(), 0); err != nil {
			r.mu.Lock()
			r.rejected++
			r.mu.Unlock()
			http.Error(w, "signature verification failed: "+err.Error(), http.StatusUnauthorized)
			return
		}
	}
	d := Delivery{
		ID:        req.Header.Get(signing.HeaderID),
		Timestamp: req.Header.Get(signing.HeaderTimestamp),
		Received:  now(),
		Body:      body,
		Headers:   req.Header.Clone(),
	}
	d.Type, d.EventID = envelope(req.Header, body)
	r.mu.Lock()
	if r.seen == nil {
		r.seen, r.events = map[string]int{}, map[string]int{}
	}
	r.events[d.EventID]++
	d.Duplicate = r.seen[d.ID] > 0
	r.seen[d.ID]++
	r.accepted = append(r.accepted, d)
	r.mu.Unlock()
	if r.OnDelivery != nil {
		r.OnDelivery(d)
	}
	w.WriteHeader(http.StatusNoContent)
}

// envelope reads the event type and id from CloudEvents binary headers or
// the JSON body.
func envelope(h http.Header, body []byte) (typ, id string) {
	if t := h.Get("ce-type"); t != "" {
		return t, h.Get("ce-id")
	}
	var env struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	_ = json.Unmarshal(body, &env)
	return env.Type, env.ID
}

// Stats counts what the receiver saw.
type Stats struct {
	Accepted   int // requests accepted, duplicates included
	Unique     int // distinct webhook-ids accepted
	Duplicates int // accepted requests whose webhook-id was seen before
	Rejected   int // requests whose signature did not verify
}

// Stats returns the counts so far.
func (r *Receiver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{Accepted: len(r.accepted), Unique: len(r.seen), Duplicates: len(r.accepted) - len(r.seen), Rejected: r.rejected}
}

// Deliveries returns a copy of the accepted deliveries, in arrival order.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.accepted...)
}

// SeenEvent reports whether a delivery of the event with this producer id
// was accepted.
func (r *Receiver) SeenEvent(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events[id] > 0
}

// Seen reports whether a delivery with this webhook-id was accepted.
func (r *Receiver) Seen(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id] > 0
}
