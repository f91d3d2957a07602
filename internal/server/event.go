package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/hookline/hookline/internal/match"
)

// Event is one accepted event, as it is handed to the Publisher. It has the same fields
// as queue.Event, so the dispatcher converts one into the other directly.
type Event struct {
	Namespace string
	ID        string
	Type      string
	Time      time.Time
	Data      json.RawMessage
	// TraceParent is set by the dispatcher when tracing is on (internal/tracing), never
	// from the request body; it keeps Event convertible to queue.Event.
	TraceParent string `json:"-"`
}

// PublishResult is what storing an event came to.
type PublishResult struct {
	// Duplicate: an event with this id was stored recently; it was not stored again.
	Duplicate bool
}

// Publisher stores events durably. Publish returns only once the event is stored (or
// recognised as a duplicate): the API answers 202 after it.
type Publisher interface {
	Publish(ctx context.Context, ev Event) (PublishResult, error)
}

// BatchPublisher is a Publisher that can store several events in one go; the batch
// endpoint uses it when the Publisher has it. Results are in the order of evs. On error
// some events may be stored; publishing them again is safe because of their ids.
type BatchPublisher interface {
	Publisher
	PublishBatch(ctx context.Context, evs []Event) ([]PublishResult, error)
}

// Limits on what a producer sends.
const (
	MaxIDLength   = 256
	MaxTypeLength = 256
	// idPrefix marks ids that hookline generated.
	idPrefix = "msg_"
)

// fieldError is a rejected request: the status, the field at fault (empty when it is the
// request as a whole) and a sentence that says how to fix it.
type fieldError struct {
	status int
	field  string
	// parameter names the query or path parameter at fault, where field names
	// a part of the body or a header.
	parameter string
	message   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.message }

func badRequest(field, format string, args ...any) *fieldError {
	return &fieldError{status: 400, field: field, message: fmt.Sprintf(format, args...)}
}

// wireEvent is an event as producers send it. Data is the raw JSON, a slice of the
// request body.
type wireEvent struct {
	Type string
	ID   string
	Time string
	Data json.RawMessage
}

const knownFields = "type, id, time and data"

// The range of event times: what RFC 3339 in UTC, the signed body and CEL
// timestamps all hold. An offset can move a time written in year 1 or 9999
// out of it.
var (
	minEventTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxEventTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// decodeEvent parses one event from body, which holds nothing else, its data
// nested at most maxDepth levels deep.
func decodeEvent(body []byte, maxDepth int) (wireEvent, *fieldError) {
	if ferr := checkUTF8(body); ferr != nil {
		return wireEvent{}, ferr
	}
	s := scanner{b: body, maxDepth: maxDepth}
	w, ferr := s.event("")
	if ferr != nil {
		return w, ferr
	}
	if !s.end() {
		return w, badRequest("", "the body holds more than one JSON value: send one event object, or use the :batch endpoint for several")
	}
	return w, nil
}

// checkUTF8 rejects a body that is not UTF-8, which JSON must be (RFC 8259): receivers'
// parsers would reject the deliveries.
func checkUTF8(body []byte) *fieldError {
	if utf8.Valid(body) {
		return nil
	}
	i := 0
	for i < len(body) {
		r, n := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		i += n
	}
	return badRequest("", "the body is not valid UTF-8 (at byte %d); JSON must be UTF-8", i)
}

// validate checks w and turns it into an Event. newID and now fill in what the producer
// left out. prefix is the event's path within a batch, empty for a single event.
func (w *wireEvent) validate(prefix, namespace string, newID func() string, now time.Time) (Event, *fieldError) {
	field := func(f string) string {
		if prefix == "" {
			return f
		}
		return prefix + "." + f
	}
	ev := Event{Namespace: namespace, ID: w.ID, Type: w.Type, Data: w.Data}
	switch {
	case w.Type == "":
		return ev, badRequest(field("type"), "type is required: an event type such as invoice.paid (dotted segments of letters, digits, '_' and '-')")
	case len(w.Type) > MaxTypeLength:
		return ev, badRequest(field("type"), "type is %d characters long; at most %d are allowed", len(w.Type), MaxTypeLength)
	}
	if err := match.ValidateEventType(w.Type); err != nil {
		return ev, badRequest(field("type"), "type: %v. An event type is dotted segments of letters, digits, '_' and '-', such as invoice.paid", err)
	}

	if ev.ID == "" {
		ev.ID = newID()
	} else if msg := checkID(ev.ID); msg != "" {
		return ev, badRequest(field("id"), "%s", msg)
	}

	if w.Time == "" {
		ev.Time = now
	} else {
		t, err := time.Parse(time.RFC3339, w.Time)
		if err != nil {
			return ev, badRequest(field("time"), "time %q is not an RFC 3339 time such as 2026-11-26T20:00:00Z; leave it out to use the time of receipt", w.Time)
		}
		ev.Time = t.UTC()
		if ev.Time.Before(minEventTime) || ev.Time.After(maxEventTime) {
			return ev, badRequest(field("time"), "time %q is outside the range hookline can deliver and filter on "+
				"(0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, in UTC)", w.Time)
		}
	}

	if len(w.Data) == 0 || string(w.Data) == "null" {
		return ev, badRequest(field("data"), "data is required: the event's payload as any JSON value other than null, e.g. {\"invoice\": \"in_123\"}; send {} for an event without data")
	}
	return ev, nil
}

// checkID returns what is wrong with a producer's id, or "".
func checkID(id string) string {
	if len(id) > MaxIDLength {
		return fmt.Sprintf("id is %d characters long; at most %d are allowed", len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if !idChar(id[i]) {
			return fmt.Sprintf("id contains %q at position %d: ids may contain only letters, digits, '_', '.', ':' and '-'", id[i], i)
		}
	}
	return ""
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-'
}

// crockford is the alphabet of ULIDs: no I, L, O or U, so ids read aloud unambiguously.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns "msg_" and a ULID: 48 bits of Unix milliseconds then 80 random bits, in
// 26 characters of Crockford base32, so generated ids sort by time. The random part makes
// a collision, which the queue would take for a duplicate and drop, practically impossible.
func NewID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var out [len(idPrefix) + 26]byte
	copy(out[:], idPrefix)
	// 128 bits in 26 characters of 5 bits: the first character carries the top 3 bits.
	for i := len(out) - 1; i >= len(idPrefix); i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
