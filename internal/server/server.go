package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes      = 256 << 10
	DefaultMaxBatchBodyBytes = 1 << 20
	DefaultMaxBatchEvents    = 100
	// retryAfter is what a 503 asks producers to wait, in seconds.
	retryAfter = "2"
)

// Check is one readiness condition for /readyz: nil when ready.
type Check struct {
	Name  string
	Ready func(ctx context.Context) error
}

// Options configure the handler.
type Options struct {
	Publisher  Publisher  // required
	Authorizer Authorizer // required; AllowAll only for local development
	// MaxBodyBytes bounds a single event's request body, and each event of a batch.
	MaxBodyBytes int64
	// MaxBatchBodyBytes bounds a batch request's body.
	MaxBatchBodyBytes int64
	// MaxBatchEvents bounds the events of one batch.
	MaxBatchEvents int
	// Namespaces are the namespaces this dispatcher serves; empty serves all. Others
	// get a 404, since nothing would deliver their events.
	Namespaces []string
	// ReadyChecks must all pass for /readyz to answer 200 (the queue, the registry).
	ReadyChecks []Check
	// Metrics, when set, is served at /metrics.
	Metrics http.Handler
	// Limits bound reading request bodies (BodyReadTimeout, MinBodyRate); the
	// same Limits go to NewHTTPServer and LimitListener for the rest.
	Limits Limits
	// MaxJSONDepth bounds the nesting of an event's data; DefaultMaxJSONDepth
	// when zero. Receivers' parsers commonly stop near 1,000 levels.
	MaxJSONDepth int
	// Deliveries, when set, serves the admin API under
	// /v1/namespaces/{ns}/subscriptions/{name}/: the attempt log, dead letters and replay.
	Deliveries AdminQueue
	// SubscriptionUID, required with Deliveries, says which object a
	// subscription name stands for now: the admin API shows and resends
	// only that object's deliveries, and answers 404 for a name that has
	// none.
	SubscriptionUID func(ns, name string) (uid string, ok bool)
	// Events, when set, serves the retained events under
	// /v1/namespaces/{ns}/events (GET; retained.go).
	Events EventReader
	// Recoverer, with Deliveries, serves POST .../subscriptions/{name}/recover.
	Recoverer Recoverer
	// Schemas, when set, refuses events whose data does not match their type's
	// enforced schema (422), before anything is stored.
	Schemas DataChecker
	// Tests, when set, serves test sends to endpoints under
	// /v1/namespaces/{ns}/webhookendpoints/{name}/.
	Tests  TestSender
	Clock  clock.PassiveClock
	Logger logr.Logger
}

// Handler serves the dispatcher's whole HTTP surface: the publishing API, the
// admin API, /healthz, /readyz and /metrics, all authorised by one Authorizer.
type Handler struct {
	opts       Options
	namespaces map[string]bool
	admin      http.Handler
	events     http.Handler
	endpoints  http.Handler
}

// NewHandler checks opts and returns the API's handler.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Publisher == nil {
		return nil, errors.New("server: a Publisher is required")
	}
	if opts.Authorizer == nil {
		return nil, errors.New("server: an Authorizer is required (AllowAll for local development)")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxBatchBodyBytes <= 0 {
		opts.MaxBatchBodyBytes = DefaultMaxBatchBodyBytes
	}
	if opts.MaxBatchEvents <= 0 {
		opts.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.MaxJSONDepth <= 0 {
		opts.MaxJSONDepth = DefaultMaxJSONDepth
	}
	opts.Limits = opts.Limits.WithDefaults()
	h := &Handler{opts: opts}
	if opts.Deliveries != nil && opts.SubscriptionUID == nil {
		return nil, errors.New("server: SubscriptionUID is required with Deliveries")
	}
	if opts.Deliveries != nil {
		h.admin = newAdmin(opts.Deliveries, h)
	}
	if opts.Events != nil {
		h.events = newEvents(opts.Events, h)
	}
	if opts.Tests != nil {
		h.endpoints = newEndpointAdmin(opts.Tests, h)
	}
	if len(opts.Namespaces) > 0 {
		h.namespaces = map[string]bool{}
		for _, ns := range opts.Namespaces {
			h.namespaces[ns] = true
		}
	}
	return h, nil
}

const namespacesPrefix = "/v1/namespaces/"

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch path {
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
		return
	case "/readyz":
		h.readyz(w, r)
		return
	case "/metrics":
		if h.opts.Metrics != nil {
			h.opts.Metrics.ServeHTTP(w, r)
			return
		}
	}
	rest, ok := strings.CutPrefix(path, namespacesPrefix)
	if !ok {
		writeError(w, &fieldError{status: http.StatusNotFound, message: "no such API path; events are published with POST /v1/namespaces/{namespace}/events"})
		return
	}
	ns, resource, _ := strings.Cut(rest, "/")
	if strings.HasPrefix(resource, "subscriptions/") && h.admin != nil {
		h.admin.ServeHTTP(w, r)
		return
	}
	if h.events != nil && r.Method == http.MethodGet && (resource == "events" || strings.HasPrefix(resource, "events/")) {
		h.events.ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(resource, "webhookendpoints/") && h.endpoints != nil {
		h.endpoints.ServeHTTP(w, r)
		return
	}
	var batch bool
	switch resource {
	case "events":
	case "events:batch":
		batch = true
	default:
		writeError(w, &fieldError{status: http.StatusNotFound, message: "no such API path; events are published with POST /v1/namespaces/{namespace}/events or /v1/namespaces/{namespace}/events:batch"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, &fieldError{status: http.StatusMethodNotAllowed, message: "events are published with POST"})
		return
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		writeError(w, badRequest("namespace", "%q is not a namespace name: %s", ns, strings.Join(errs, "; ")))
		return
	}
	if h.namespaces != nil && !h.namespaces[ns] {
		writeError(w, &fieldError{status: http.StatusNotFound, field: "namespace", message: fmt.Sprintf("this dispatcher does not serve namespace %q, so nothing would deliver its events", ns)})
		return
	}
	if refused := h.authorize(r, ns, Publish); refused != nil {
		writeError(w, refused.fieldError(w))
		return
	}
	ce := cloudEventsMode(r)
	if ce != ceNone && batch {
		writeError(w, &fieldError{status: http.StatusUnsupportedMediaType, field: "Content-Type", message: "CloudEvents are published to /v1/namespaces/{namespace}/events, several at once as application/cloudevents-batch+json"})
		return
	}
	if ce == ceNone && !isJSON(r.Header.Get("Content-Type")) {
		writeError(w, &fieldError{status: http.StatusUnsupportedMediaType, field: "Content-Type", message: "send the event as JSON with \"Content-Type: application/json\", or as a CloudEvent (application/cloudevents+json, application/cloudevents-batch+json, or binary mode with ce-* headers)"})
		return
	}
	limit := h.opts.MaxBodyBytes
	if batch || ce == ceBatch {
		limit = h.opts.MaxBatchBodyBytes
	}
	// The body is not pooled: the events' data are slices of it, handed to the Publisher.
	body, ferr := h.readBody(w, r, limit)
	if ferr != nil {
		writeError(w, ferr)
		return
	}
	if ce != ceNone {
		h.publishCloudEvents(w, r, ns, body, ce)
	} else if batch {
		h.publishBatch(w, r, ns, body)
	} else {
		h.publishOne(w, r, ns, body)
	}
}

// refusal is why a request may not go ahead: a status (401, 403 or 503) and
// a message.
type refusal struct {
	status     int
	message    string
	retryAfter time.Duration
}

// authorize asks the Authorizer whether r may have access in ns. A nil
// answer lets it go ahead. An error from the API server is a 503, never a
// 403: the caller may well be allowed, and should retry.
func (h *Handler) authorize(r *http.Request, ns string, access Access) *refusal {
	d, err := h.opts.Authorizer.Authorize(r.Context(), r, ns, access)
	switch {
	case err != nil:
		h.opts.Logger.Error(err, "authorizing a request", "namespace", ns, "verb", access.Verb, "resource", access.Resource)
		return &refusal{status: http.StatusServiceUnavailable, message: "the credentials could not be checked right now; retry shortly"}
	case !d.Authenticated && d.RetryAfter > 0:
		return &refusal{status: http.StatusTooManyRequests, message: d.Reason, retryAfter: d.RetryAfter}
	case !d.Authenticated:
		return &refusal{status: http.StatusUnauthorized, message: d.Reason}
	case !d.Allowed:
		return &refusal{status: http.StatusForbidden, message: d.Reason}
	}
	return nil
}

// fieldError sets the headers that go with the refusal and words it as the
// publishing API's error.
func (f *refusal) fieldError(w http.ResponseWriter) *fieldError {
	switch f.status {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", retryAfter)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds()))))
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="hookline"`)
		return &fieldError{status: f.status, field: "Authorization", message: f.message}
	}
	return &fieldError{status: f.status, message: f.message}
}

// isJSON accepts application/json with optional parameters (charset=utf-8), without
// mime.ParseMediaType's allocations.
func isJSON(ct string) bool {
	const want = "application/json"
	if len(ct) < len(want) || !strings.EqualFold(ct[:len(want)], want) {
		return false
	}
	rest := strings.TrimLeft(ct[len(want):], " ")
	return rest == "" || rest[0] == ';'
}

// readBody reads at most limit bytes as they arrive, within the body
// deadlines of the Limits. A body that arrives too slowly gets a 408 and the
// connection is closed.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *fieldError) {
	tooLarge := &fieldError{status: http.StatusRequestEntityTooLarge, message: fmt.Sprintf("the body is larger than the limit of %d bytes (%d KiB); send smaller events", limit, limit>>10)}
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	// Deadlines are the connection's, so they come from the wall clock.
	start := time.Now()
	br := &bodyReader{
		body: r.Body, rc: http.NewResponseController(w), rate: h.opts.Limits.MinBodyRate,
		start: start, hardStop: start.Add(h.opts.Limits.BodyReadTimeout),
	}
	body, err := readAll(br, limit, r.ContentLength)
	if err != nil || int64(len(body)) > limit {
		// The rest of the body is not wanted: the connection closes after the
		// answer, and the body deadline stays, so net/http's discarding of what
		// is left cannot be held open either.
		w.Header().Set("Connection", "close")
		switch {
		case err == nil:
			return nil, tooLarge
		case isTimeout(err):
			return nil, &fieldError{status: http.StatusRequestTimeout, message: fmt.Sprintf("the body arrived too slowly: it must come at %d bytes per second or faster and in %s at most", h.opts.Limits.MinBodyRate, h.opts.Limits.BodyReadTimeout)}
		default:
			return nil, &fieldError{status: http.StatusBadRequest, message: "the body could not be read: " + err.Error()}
		}
	}
	// The body deadline ends with the body: net/http clears it when it starts
	// watching for the client going away, once the body is read to its end.
	return body, nil
}

func (h *Handler) publishOne(w http.ResponseWriter, r *http.Request, ns string, body []byte) {
	wire, ferr := decodeEvent(body, h.opts.MaxJSONDepth)
	if ferr != nil {
		writeError(w, ferr)
		return
	}
	now := h.opts.Clock.Now().UTC()
	ev, ferr := wire.validate("", ns, func() string { return NewID(now) }, now)
	if ferr == nil {
		ferr = h.checkData("", &ev)
	}
	if ferr != nil {
		writeError(w, ferr)
		return
	}
	res, err := h.opts.Publisher.Publish(r.Context(), ev)
	if err != nil {
		h.unavailable(w, err, ns, ev.ID)
		return
	}
	out := make([]byte, 0, 64+len(ev.ID))
	out = appendResult(out, ev.ID, res.Duplicate)
	writeJSON(w, http.StatusAccepted, out)
}

// Overloaded is a publish error that refuses the events before storing any, and says
// how long the producer should wait: the queue's answer close to the memory limit. Its
// text is shown to the producer: it says why, and what an operator can change.
type Overloaded interface {
	error
	RetryAfter() time.Duration
}

// unavailable answers a failed publish. The ids are returned so that a producer that
// let hookline pick them retries with the same ones: the first try may have been stored.
func (h *Handler) unavailable(w http.ResponseWriter, err error, ns string, ids ...string) {
	message := "the events could not be stored right now; retry shortly with the same ids (listed here), so an event that was stored after all is not stored twice"
	if o, ok := errors.AsType[Overloaded](err); ok {
		// Logged by the queue when it starts and stops refusing, not per request.
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(o.RetryAfter().Seconds()))))
		message = "the events were not stored: " + o.Error() + "; retry after the Retry-After delay with the same ids (listed here)"
	} else {
		h.opts.Logger.Error(err, "publishing events", "namespace", ns, "events", len(ids))
		w.Header().Set("Retry-After", retryAfter)
	}
	body := struct {
		Error errorBody `json:"error"`
		IDs   []string  `json:"ids"`
	}{newErrorBody(&fieldError{status: http.StatusServiceUnavailable, message: message}), ids}
	b, _ := json.Marshal(body)
	writeJSON(w, http.StatusServiceUnavailable, b)
}

// appendResult appends {"id":"...","duplicate":...}. Ids are checked to hold only
// characters that need no escaping in JSON.
func appendResult(b []byte, id string, dup bool) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","duplicate":`...)
	b = strconv.AppendBool(b, dup)
	return append(b, '}')
}

// errorBody is the one shape of every error the dispatcher's API answers:
// {"error": {"status", "reason", "field" or "parameter", "message"}}.
type errorBody struct {
	Status    int    `json:"status"`
	Reason    string `json:"reason"`
	Field     string `json:"field,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Message   string `json:"message"`
}

func newErrorBody(e *fieldError) errorBody {
	reason := strings.ReplaceAll(http.StatusText(e.status), " ", "")
	if e.parameter != "" && e.status == http.StatusBadRequest {
		reason = "BadParameter"
	}
	return errorBody{Status: e.status, Reason: reason, Field: e.field, Parameter: e.parameter, Message: e.message}
}

func writeError(w http.ResponseWriter, e *fieldError) {
	b, _ := json.Marshal(struct {
		Error errorBody `json:"error"`
	}{newErrorBody(e)})
	writeJSON(w, e.status, b)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body) + 1)}
	w.WriteHeader(status)
	body = append(body, '\n')
	_, _ = w.Write(body) //nolint:gosec // G705: JSON the handler encoded, sent as application/json, never HTML
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var failed []string
	for _, c := range h.opts.ReadyChecks {
		if err := c.Ready(ctx); err != nil {
			failed = append(failed, c.Name+": "+err.Error())
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(failed) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ready: "+strings.Join(failed, "; ")+"\n")
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}
