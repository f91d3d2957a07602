package delivery

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Format is the shape a subscription wants its events in.
type Format uint8

const (
	// StandardWebhooks sends {"type","timestamp","data"} as application/json.
	StandardWebhooks Format = iota
	// CloudEventsStructured sends a CloudEvents 1.0 JSON event as
	// application/cloudevents+json.
	CloudEventsStructured
	// CloudEventsBinary sends the data as the body and the CloudEvents
	// attributes as ce-* headers.
	CloudEventsBinary
)

func (f Format) String() string {
	switch f {
	case StandardWebhooks:
		return "StandardWebhooks"
	case CloudEventsStructured:
		return "CloudEventsStructured"
	case CloudEventsBinary:
		return "CloudEventsBinary"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// Message is one event on its way to one subscription.
type Message struct {
	// ID is the producer's event id: the "id" of a Standard Webhooks body
	// and the CloudEvents id.
	ID string
	// WebhookID is the webhook-id header (WebhookIDOf), identical on every
	// attempt, replay and restart so receivers can de-duplicate on it.
	WebhookID string
	Type      string
	// Time is when the event happened, not when it is being sent.
	Time time.Time
	// Data must be valid JSON; ingest has checked it, and it is copied into
	// the body without being looked at. Empty means JSON null.
	Data json.RawMessage

	// Namespace and Subscription make up the CloudEvents source.
	Namespace    string
	Subscription string
	Format       Format
	// TraceParent, when set, is sent as the W3C traceparent header: the trace context
	// of this attempt's span.
	TraceParent string
}

const (
	contentTypeJSON        = "application/json"
	contentTypeCloudEvents = "application/cloudevents+json"
	ceSpecVersion          = "1.0"
)

var jsonNull = []byte("null")

func (m *Message) data() []byte {
	if len(m.Data) == 0 {
		return jsonNull
	}
	return m.Data
}

// Source is the CloudEvents source: the subscription the event was delivered
// through, so that (source, id) stays unique when one event reaches the same
// receiver through two subscriptions.
func (m *Message) Source() string {
	return string(m.appendSource(nil))
}

func (m *Message) appendSource(b []byte) []byte {
	b = append(b, "/namespaces/"...)
	b = append(b, m.Namespace...)
	b = append(b, "/subscriptions/"...)
	return append(b, m.Subscription...)
}

// WebhookIDOf is the webhook-id of event id of a namespace delivered
// through the subscription object with that UID: "msg_" and 24 characters of
// URL-safe base64 of a SHA-256 over the three. Producer ids are unique only
// within their namespace and one event reaches a receiver once per
// subscription, so the id covers all three; it stays the same across
// retries, replays and restarts, and is new for a subscription created
// again under the same name.
func WebhookIDOf(namespace, eventID, subscriptionUID string) string {
	// Hashed from a buffer on the stack, and the id written into an array:
	// one allocation (the string) per delivery attempt instead of four.
	var in [256]byte
	var sum [sha256.Size]byte
	if n := len(namespace) + len(eventID) + len(subscriptionUID) + 3; n <= len(in) {
		b := append(in[:0], namespace...)
		b = append(append(b, 0), eventID...)
		b = append(append(b, 0), subscriptionUID...)
		sum = sha256.Sum256(append(b, 0))
	} else {
		h := sha256.New()
		for _, s := range []string{namespace, eventID, subscriptionUID} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		h.Sum(sum[:0])
	}
	var out [len(webhookIDPrefix) + 24]byte
	copy(out[:], webhookIDPrefix)
	base64.RawURLEncoding.Encode(out[len(webhookIDPrefix):], sum[:18])
	return string(out[:])
}

const webhookIDPrefix = "msg_"

func (m *Message) validate() error {
	if m.ID == "" {
		return fmt.Errorf("message has no id")
	}
	if m.WebhookID == "" {
		return fmt.Errorf("message %s has no webhook id", m.ID)
	}
	if m.Type == "" {
		return fmt.Errorf("message %s has no type", m.ID)
	}
	if m.Format > CloudEventsBinary {
		return fmt.Errorf("message %s: unknown payload format %s", m.ID, m.Format)
	}
	return nil
}

// contentType is the request's Content-Type for the message's format.
func (m *Message) contentType() string {
	if m.Format == CloudEventsStructured {
		return contentTypeCloudEvents
	}
	return contentTypeJSON
}

// rfc3339Len is the longest UTC time.RFC3339Nano rendering for years 0-9999.
const rfc3339Len = len("2006-01-02T15:04:05.999999999Z")

// bodySize is an upper bound for the body when no string needs escaping,
// which is the common case; escaping only makes append grow the buffer.
func (m *Message) bodySize() int {
	switch m.Format {
	case CloudEventsBinary:
		return len(m.data())
	case CloudEventsStructured:
		return len(`{"specversion":"1.0","id":"","source":"/namespaces//subscriptions/","type":"","time":"","datacontenttype":"application/json","data":}`) +
			len(m.ID) + len(m.Namespace) + len(m.Subscription) + len(m.Type) + rfc3339Len + len(m.data())
	default:
		return len(`{"id":"","type":"","timestamp":"","data":}`) + len(m.ID) + len(m.Type) + rfc3339Len + len(m.data())
	}
}

// AppendBody appends the request body for m in its format to dst.
func AppendBody(dst []byte, m *Message) []byte {
	switch m.Format {
	case CloudEventsBinary:
		return append(dst, m.data()...)
	case CloudEventsStructured:
		dst = append(dst, `{"specversion":"1.0","id":`...)
		dst = appendJSONString(dst, m.ID)
		dst = append(dst, `,"source":"/namespaces/`...)
		dst = appendJSONStringContent(dst, m.Namespace)
		dst = append(dst, `/subscriptions/`...)
		dst = appendJSONStringContent(dst, m.Subscription)
		dst = append(dst, `","type":`...)
		dst = appendJSONString(dst, m.Type)
		dst = append(dst, `,"time":"`...)
		dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, `","datacontenttype":"application/json","data":`...)
		dst = append(dst, m.data()...)
		return append(dst, '}')
	default:
		dst = append(dst, `{"id":`...)
		dst = appendJSONString(dst, m.ID)
		dst = append(dst, `,"type":`...)
		dst = appendJSONString(dst, m.Type)
		dst = append(dst, `,"timestamp":"`...)
		dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, `","data":`...)
		dst = append(dst, m.data()...)
		return append(dst, '}')
	}
}

func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONStringContent(dst, s)
	return append(dst, '"')
}

const hexUpper = "0123456789ABCDEF"
const hexLower = "0123456789abcdef"

// appendJSONStringContent escapes s the way encoding/json does with HTML
// escaping off, so bodies match what a json.Marshal of the same envelope
// would produce byte for byte (the fuzz test holds it to that).
func appendJSONStringContent(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexLower[c>>4], hexLower[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 end lines in JavaScript; encoding/json escapes
		// them, and so do we.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexLower[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// ceHeaderValue percent-encodes s as the CloudEvents HTTP binding requires
// for attribute values in headers: space, double quote, percent and anything
// outside printable ASCII. Invalid UTF-8 is replaced first, because receivers
// must reject percent-encoded bytes that do not decode to UTF-8.
func ceHeaderValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	b := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '%' {
			b = append(b, '%', hexUpper[c>>4], hexUpper[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}
