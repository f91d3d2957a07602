package delivery

import (
	"bytes"
	"encoding/json"
	"net/url"
	"testing"
	"time"
	"unicode/utf8"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

func TestAppendBodyGolden(t *testing.T) {
	m := testMessage()
	m.Type = `odd "type"` + "\n"
	tests := []struct {
		format Format
		want   string
	}{
		{StandardWebhooks, `{"id":"inv_2041-paid","type":"odd \"type\"\n","timestamp":"2026-11-26T19:59:58.123Z","data":{"invoice":"in_1","amount":4200,"lines":[{"sku":"a"}]}}`},
		{CloudEventsStructured, `{"specversion":"1.0","id":"inv_2041-paid","source":"/namespaces/billing/subscriptions/invoices-to-erp","type":"odd \"type\"\n","time":"2026-11-26T19:59:58.123Z","datacontenttype":"application/json","data":{"invoice":"in_1","amount":4200,"lines":[{"sku":"a"}]}}`},
		{CloudEventsBinary, `{"invoice":"in_1","amount":4200,"lines":[{"sku":"a"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.format.String(), func(t *testing.T) {
			m.Format = tt.format
			got := AppendBody(nil, &m)
			if string(got) != tt.want {
				t.Errorf("body\n got %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("body is not valid JSON")
			}
		})
	}
}

// TestAppendBodyMatchesEncodingJSON holds the hand-written envelope to what
// encoding/json makes of the same fields, for every format.
func TestAppendBodyMatchesEncodingJSON(t *testing.T) {
	m := testMessage()
	m.Time = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	type standard struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		Timestamp time.Time       `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	type structured struct {
		SpecVersion     string          `json:"specversion"`
		ID              string          `json:"id"`
		Source          string          `json:"source"`
		Type            string          `json:"type"`
		Time            time.Time       `json:"time"`
		DataContentType string          `json:"datacontenttype"`
		Data            json.RawMessage `json:"data"`
	}
	enc := func(v any) string {
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
		return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
	}
	m.Format = StandardWebhooks
	if got, want := string(AppendBody(nil, &m)), enc(standard{m.ID, m.Type, m.Time.UTC(), m.Data}); got != want {
		t.Errorf("StandardWebhooks\n got %s\nwant %s", got, want)
	}
	m.Format = CloudEventsStructured
	if got, want := string(AppendBody(nil, &m)), enc(structured{"1.0", m.ID, m.Source(), m.Type, m.Time.UTC(), "application/json", m.Data}); got != want {
		t.Errorf("CloudEventsStructured\n got %s\nwant %s", got, want)
	}
}

func TestAppendBodyEmptyDataIsNull(t *testing.T) {
	m := testMessage()
	m.Data = nil
	if got := string(AppendBody(nil, &m)); got != `{"id":"inv_2041-paid","type":"invoice.paid","timestamp":"2026-11-26T19:59:58.123Z","data":null}` {
		t.Errorf("got %s", got)
	}
}

// TestBodySizeIsExact checks the one-allocation promise: for plain ASCII
// fields the buffer Send allocates is never grown.
func TestBodySizeIsExact(t *testing.T) {
	for _, f := range []Format{StandardWebhooks, CloudEventsStructured, CloudEventsBinary} {
		m := testMessage()
		m.Format = f
		m.Time = time.Date(2026, 11, 26, 19, 59, 58, 123456789, time.UTC)
		buf := make([]byte, 0, m.bodySize())
		got := AppendBody(buf, &m)
		if cap(got) != cap(buf) {
			t.Errorf("%s: buffer grew from %d to %d", f, cap(buf), cap(got))
		}
		if len(got) != m.bodySize() {
			t.Errorf("%s: body is %d bytes, bodySize says %d", f, len(got), m.bodySize())
		}
	}
}

// TestStructuredConformsToCloudEvents decodes the structured body with the
// CloudEvents SDK, an implementation written from the spec independently of
// ours, and runs its validation.
func TestStructuredConformsToCloudEvents(t *testing.T) {
	m := testMessage()
	m.Format = CloudEventsStructured
	var ev cloudevents.Event
	if err := json.Unmarshal(AppendBody(nil, &m), &ev); err != nil {
		t.Fatalf("SDK cannot decode the body: %v", err)
	}
	checkEvent(t, ev, m)
}

func checkEvent(t *testing.T, ev cloudevents.Event, m Message) {
	t.Helper()
	if err := ev.Validate(); err != nil {
		t.Errorf("SDK validation: %v", err)
	}
	if ev.SpecVersion() != "1.0" || ev.ID() != m.ID || ev.Source() != m.Source() || ev.Type() != m.Type {
		t.Errorf("attributes: specversion %q id %q source %q type %q", ev.SpecVersion(), ev.ID(), ev.Source(), ev.Type())
	}
	if !ev.Time().Equal(m.Time) {
		t.Errorf("time %v, want %v", ev.Time(), m.Time)
	}
	if ev.DataContentType() != "application/json" {
		t.Errorf("datacontenttype %q", ev.DataContentType())
	}
	if !jsonEqual(t, ev.Data(), m.Data) {
		t.Errorf("data %s, want %s", ev.Data(), m.Data)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func TestCEHeaderValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"invoice.paid", "invoice.paid"},
		{"/namespaces/a/subscriptions/b", "/namespaces/a/subscriptions/b"},
		// The example in the CloudEvents HTTP binding, section 3.1.3.2.
		{"Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"},
		{`say "hi" 100%`, "say%20%22hi%22%20100%25"},
		{"tab\tnul\x00del\x7f", "tab%09nul%00del%7F"},
		{"bad\xffutf8", "bad%EF%BF%BDutf8"},
	}
	for _, tt := range tests {
		got := ceHeaderValue(tt.in)
		if got != tt.want {
			t.Errorf("ceHeaderValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
		dec, err := url.PathUnescape(got)
		if err != nil || !utf8.ValidString(dec) {
			t.Errorf("%q does not decode to UTF-8: %v", got, err)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "\x00\x01\x1f\b\f\n\r\t", "<&>", "\u2028\u2029", "é😀", "\xff\xfe", "a\xc3", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want bytes.Buffer
		e := json.NewEncoder(&want)
		e.SetEscapeHTML(false)
		if err := e.Encode(s); err != nil {
			t.Fatal(err)
		}
		got := appendJSONString(nil, s)
		if w := bytes.TrimSuffix(want.Bytes(), []byte("\n")); !bytes.Equal(got, w) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, w)
		}
	})
}

// TestWebhookIDOf: the webhook-id tells apart the same producer id in two
// namespaces and through two subscriptions, and is the same every time.
func TestWebhookIDOf(t *testing.T) {
	base := WebhookIDOf("shop", "order-1", "uid-a")
	if base != WebhookIDOf("shop", "order-1", "uid-a") {
		t.Fatal("WebhookIDOf is not stable")
	}
	for _, other := range []string{
		WebhookIDOf("billing", "order-1", "uid-a"),
		WebhookIDOf("shop", "order-1", "uid-b"),
		WebhookIDOf("shop", "order-2", "uid-a"),
		// The parts are kept apart, not just joined.
		WebhookIDOf("shopo", "rder-1", "uid-a"),
	} {
		if other == base {
			t.Errorf("%s collides", other)
		}
	}
	if len(base) != len("msg_")+24 || base[:4] != "msg_" {
		t.Errorf("webhook-id %q, want msg_ and 24 characters", base)
	}
	for _, c := range base[4:] {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			t.Errorf("webhook-id %q has %q, outside URL-safe base64", base, c)
		}
	}
}
