package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookline/hookline/internal/server"
)

var t0 = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu        sync.Mutex
	events    []server.Event
	calls     int
	duplicate bool
	err       error
}

func (p *recorder) Publish(_ context.Context, ev server.Event) (server.PublishResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.err != nil {
		return server.PublishResult{}, p.err
	}
	p.events = append(p.events, ev)
	return server.PublishResult{Duplicate: p.duplicate}, nil
}

func (p *recorder) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// batchRecorder also publishes batches, in one call.
type batchRecorder struct {
	recorder
	batches int
}

func (p *batchRecorder) PublishBatch(ctx context.Context, evs []server.Event) ([]server.PublishResult, error) {
	p.batches++
	res := make([]server.PublishResult, len(evs))
	for i, ev := range evs {
		var err error
		if res[i], err = p.Publish(ctx, ev); err != nil {
			return nil, err
		}
	}
	return res, nil
}

type errorBody struct {
	Error struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"error"`
	IDs []string `json:"ids"`
}

func newHandler(t testing.TB, opts server.Options) *server.Handler {
	t.Helper()
	if opts.Authorizer == nil {
		opts.Authorizer = server.AllowAll{}
	}
	if opts.Clock == nil {
		opts.Clock = clocktesting.NewFakePassiveClock(t0)
	}
	h, err := server.NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func post(h http.Handler, path, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", rec.Body.String(), err)
	}
	return e
}

func TestRejectsBadRequests(t *testing.T) {
	const path = "/v1/namespaces/shop/events"
	const ok = `{"type":"invoice.paid","data":{}}`
	big := `{"type":"a.b","data":"` + strings.Repeat("x", server.DefaultMaxBodyBytes) + `"}`
	for _, tc := range []struct {
		name, path, contentType, body string
		status                        int
		field, message                string
	}{
		{"too large", path, "application/json", big, 413, "", "262144 bytes (256 KiB)"},
		{"not JSON content type", path, "text/plain", ok, 415, "Content-Type", "application/json"},
		{"no content type", path, "", ok, 415, "Content-Type", "application/json"},
		{"empty body", path, "application/json", "", 400, "", "body is empty"},
		{"malformed", path, "application/json", `{"type": "a.b",}`, 400, "", "not valid JSON at byte 15: found '}' where a string was expected"},
		{"truncated", path, "application/json", `{"type": "a.b"`, 400, "", "the JSON ends where ',' or '}' was expected"},
		{"bad data", path, "application/json", `{"type": "a.b", "data": {"a": tru}}`, 400, "", "at byte 30: invalid literal"},
		{"not UTF-8", path, "application/json", "{\"type\": \"a.b\", \"data\": \"\xff\"}", 400, "", "not valid UTF-8 (at byte 25)"},
		{"field names are case-sensitive", path, "application/json", `{"Type":"a.b","data":{}}`, 400, "Type", `unknown field "Type"`},
		{"field given twice", path, "application/json", `{"type":"a.b","type":"c.d","data":{}}`, 400, "type", "given twice"},
		{"not an object", path, "application/json", `[1]`, 400, "", "must be a JSON object"},
		{"two values", path, "application/json", ok + ok, 400, "", "more than one JSON value"},
		{"unknown field", path, "application/json", `{"type":"a.b","data":{},"extra":1}`, 400, "extra", `unknown field "extra"`},
		{"no type", path, "application/json", `{"data":{}}`, 400, "type", "type is required"},
		{"type not a string", path, "application/json", `{"type":5,"data":{}}`, 400, "type", "must be a JSON string"},
		{"type with wildcard", path, "application/json", `{"type":"invoice.*","data":{}}`, 400, "type", "letters, digits, '_' and '-'"},
		{"type with empty segment", path, "application/json", `{"type":"invoice..paid","data":{}}`, 400, "type", "segment 2 is empty"},
		{"id too long", path, "application/json", `{"type":"a.b","id":"` + strings.Repeat("x", 257) + `","data":{}}`, 400, "id", "at most 256"},
		{"id bad char", path, "application/json", `{"type":"a.b","id":"a/b","data":{}}`, 400, "id", `'/' at position 1`},
		{"bad time", path, "application/json", `{"type":"a.b","time":"yesterday","data":{}}`, 400, "time", "RFC 3339"},
		{"time before year 1", path, "application/json", `{"type":"a.b","time":"0000-12-31T23:59:59Z","data":{}}`, 400, "time", "outside the range"},
		{"time pushed before year 1 by its offset", path, "application/json", `{"type":"a.b","time":"0001-01-01T00:30:00+01:00","data":{}}`, 400, "time", "outside the range"},
		{"no data", path, "application/json", `{"type":"a.b"}`, 400, "data", "data is required"},
		{"null data", path, "application/json", `{"type":"a.b","data":null}`, 400, "data", "other than null"},
		{"bad namespace", "/v1/namespaces/Not_A_Name/events", "application/json", ok, 400, "namespace", "not a namespace name"},
		{"unknown path", "/v1/namespaces/shop/things", "application/json", ok, 404, "", "POST /v1/namespaces/{namespace}/events"},
		{"batch not an object", path + ":batch", "application/json", `[]`, 400, "", `{"events": [...]}`},
		{"batch unknown field", path + ":batch", "application/json", `{"events":[],"more":1}`, 400, "more", `unknown field "more"`},
		{"batch empty", path + ":batch", "application/json", `{"events":[]}`, 400, "events", "1 to 100 events"},
		{"batch bad event", path + ":batch", "application/json", `{"events":[` + ok + `,{"type":"a.b","data":{},"x":1}]}`, 400, "events[1].x", `unknown field "x"`},
		{"batch invalid type", path + ":batch", "application/json", `{"events":[` + ok + `,{"type":"","data":{}}]}`, 400, "events[1].type", "type is required"},
		{"batch duplicate ids", path + ":batch", "application/json", `{"events":[{"type":"a.b","id":"x","data":{}},{"type":"a.b","id":"x","data":{}}]}`, 400, "events[1].id", "also the id of events[0]"},
		{"batch too many", path + ":batch", "application/json", `{"events":[` + strings.Repeat(ok+",", 100) + ok + `]}`, 400, "events", "at most 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &batchRecorder{}
			rec := post(newHandler(t, server.Options{Publisher: pub}), tc.path, tc.contentType, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			e := decodeError(t, rec)
			if e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.message) {
				t.Errorf("error %+v; want field %q and a message containing %q", e.Error, tc.field, tc.message)
			}
			if pub.calls != 0 {
				t.Errorf("the publisher was called %d times for a rejected request", pub.calls)
			}
		})
	}
}

func TestPublishesOneEvent(t *testing.T) {
	pub := &recorder{}
	h := newHandler(t, server.Options{Publisher: pub})
	rec := post(h, "/v1/namespaces/shop/events", "application/json; charset=utf-8",
		` {"type":"invoice\u002epaid", "id":"inv_1:paid","time":"2026-11-26T21:00:00+01:00",`+"\n"+`"data": {"amount":1200} } `)
	if rec.Code != http.StatusAccepted || rec.Body.String() != `{"id":"inv_1:paid","duplicate":false}`+"\n" {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	if len(pub.events) != 1 {
		t.Fatalf("published %d events", len(pub.events))
	}
	ev := pub.events[0]
	want := server.Event{Namespace: "shop", ID: "inv_1:paid", Type: "invoice.paid", Time: t0, Data: json.RawMessage(`{"amount":1200}`)}
	if ev.Namespace != want.Namespace || ev.ID != want.ID || ev.Type != want.Type || !ev.Time.Equal(want.Time) || string(ev.Data) != string(want.Data) {
		t.Errorf("published %+v, want %+v", ev, want)
	}
}

func TestDefaultsIDAndTime(t *testing.T) {
	pub := &recorder{duplicate: true}
	h := newHandler(t, server.Options{Publisher: pub})
	rec := post(h, "/v1/namespaces/shop/events", "application/json", `{"type":"a.b","data":[1,2]}`)
	var res struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != http.StatusAccepted {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	ev := pub.events[0]
	if !strings.HasPrefix(res.ID, "msg_") || len(res.ID) != 30 || ev.ID != res.ID {
		t.Errorf("generated id %q (published %q), want msg_ and 26 characters", res.ID, ev.ID)
	}
	if !res.Duplicate {
		t.Error("the duplicate flag was not passed through")
	}
	if !ev.Time.Equal(t0) {
		t.Errorf("time %v, want the time of receipt %v", ev.Time, t0)
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a, b := server.NewID(t0), server.NewID(t0.Add(time.Millisecond))
	if a >= b || a == server.NewID(t0) {
		t.Errorf("ids %s, %s: want time order and no repeats", a, b)
	}
	if a[:14] != "msg_01M8CQ31G0" { // computed independently from the Unix milliseconds
		t.Errorf("id %s does not encode %v as a ULID does", a, t0)
	}
}

func TestPublishFailureIs503WithIDs(t *testing.T) {
	pub := &recorder{err: errors.New("stream unavailable")}
	h := newHandler(t, server.Options{Publisher: pub})
	rec := post(h, "/v1/namespaces/shop/events", "application/json", `{"type":"a.b","data":{}}`)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	e := decodeError(t, rec)
	if len(e.IDs) != 1 || !strings.HasPrefix(e.IDs[0], "msg_") || strings.Contains(rec.Body.String(), "stream unavailable") {
		t.Errorf("body %s: want the generated id and no internal error", rec.Body)
	}
}

// overloaded is what the queue answers close to its memory limit.
type overloaded struct{}

func (overloaded) Error() string {
	return "the dispatcher is close to its memory limit; give it more memory"
}
func (overloaded) RetryAfter() time.Duration { return 5 * time.Second }

// A publish refused before anything was stored, because the dispatcher is
// overloaded, is a 503 that says why, when to retry and what to change, with
// the queue's own delay, for one event and for a batch.
func TestOverloadedPublishIs503WithItsRetryAfter(t *testing.T) {
	for _, c := range []struct{ path, body string }{
		{"/v1/namespaces/shop/events", `{"type":"a.b","id":"one","data":{}}`},
		{"/v1/namespaces/shop/events:batch", `{"events":[{"type":"a.b","id":"one","data":1}]}`},
	} {
		h := newHandler(t, server.Options{Publisher: &batchRecorder{recorder: recorder{err: fmt.Errorf("publishing: %w", overloaded{})}}})
		rec := post(h, c.path, "application/json", c.body)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
			t.Fatalf("%s: got %d, Retry-After %q, want 503 and 5", c.path, rec.Code, rec.Header().Get("Retry-After"))
		}
		e := decodeError(t, rec)
		if fmt.Sprint(e.IDs) != "[one]" || !strings.Contains(e.Error.Message, "close to its memory limit; give it more memory") || !strings.Contains(e.Error.Message, "Retry-After") {
			t.Errorf("%s: body %s: want the id, the reason and the fix", c.path, rec.Body)
		}
	}
}

func TestBatch(t *testing.T) {
	for _, pub := range []server.Publisher{&recorder{}, &batchRecorder{}} {
		h := newHandler(t, server.Options{Publisher: pub})
		rec := post(h, "/v1/namespaces/shop/events:batch", "application/json",
			`{"events":[{"type":"a.b","id":"one","data":1},{"type":"c.d","data":{"x":true}}]}`)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("%T: got %d %s", pub, rec.Code, rec.Body)
		}
		var res struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || len(res.Events) != 2 || res.Events[0].ID != "one" || !strings.HasPrefix(res.Events[1].ID, "msg_") {
			t.Fatalf("%T: body %s", pub, rec.Body)
		}
		var evs []server.Event
		switch p := pub.(type) {
		case *recorder:
			evs = p.events
		case *batchRecorder:
			evs = p.events
			if p.batches != 1 {
				t.Errorf("PublishBatch called %d times", p.batches)
			}
		}
		if len(evs) != 2 || evs[1].Type != "c.d" || string(evs[1].Data) != `{"x":true}` || evs[1].ID != res.Events[1].ID {
			t.Errorf("%T: published %+v", pub, evs)
		}
	}
}

// fixedAuthorizer answers every request the same way.
type fixedAuthorizer struct {
	d   server.Decision
	err error
}

func (a fixedAuthorizer) Authorize(context.Context, *http.Request, string, server.Access) (server.Decision, error) {
	return a.d, a.err
}

func TestAuthorizationStatuses(t *testing.T) {
	for _, tc := range []struct {
		auth   fixedAuthorizer
		status int
	}{
		{fixedAuthorizer{d: server.Decision{Reason: "no token"}}, 401},
		{fixedAuthorizer{d: server.Decision{Authenticated: true, Reason: "no RBAC"}}, 403},
		{fixedAuthorizer{err: errors.New("api down")}, 503},
	} {
		pub := &recorder{}
		h := newHandler(t, server.Options{Publisher: pub, Authorizer: tc.auth})
		// Authorization comes before the body is looked at.
		rec := post(h, "/v1/namespaces/shop/events", "text/plain", "junk")
		if rec.Code != tc.status || pub.calls != 0 {
			t.Errorf("%+v: status %d, %d publishes; want %d", tc.auth, rec.Code, pub.calls, tc.status)
		}
	}
}

func TestNamespaceRestrictionAndProbes(t *testing.T) {
	notReady := errors.New("still syncing")
	h := newHandler(t, server.Options{
		Publisher:   &recorder{},
		Namespaces:  []string{"shop"},
		ReadyChecks: []server.Check{{Name: "registry", Ready: func(context.Context) error { return notReady }}},
		Metrics:     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }),
	})
	if rec := post(h, "/v1/namespaces/other/events", "application/json", `{"type":"a.b","data":{}}`); rec.Code != 404 || decodeError(t, rec).Error.Field != "namespace" {
		t.Errorf("other namespace: %d %s", rec.Code, rec.Body)
	}
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
		return rec
	}
	if rec := get("/v1/namespaces/shop/events"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET events: %d", rec.Code)
	}
	if rec := get("/healthz"); rec.Code != 200 {
		t.Errorf("healthz: %d", rec.Code)
	}
	if rec := get("/readyz"); rec.Code != 503 || !strings.Contains(rec.Body.String(), "registry: still syncing") {
		t.Errorf("readyz: %d %s", rec.Code, rec.Body)
	}
	notReady = nil
	if rec := get("/readyz"); rec.Code != 200 {
		t.Errorf("readyz when ready: %d", rec.Code)
	}
	if rec := get("/metrics"); rec.Body.String() != "metrics" {
		t.Errorf("metrics: %s", rec.Body)
	}
}
