package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hookline/hookline/internal/match"
	"github.com/hookline/hookline/internal/queue"
)

// What the endpoint admin requests take, as RBAC on the namespace's webhookendpoints:
// sending a test event, and reading the log of test sends, are separate rights, and
// neither comes with the right to publish.
var (
	// SendTest sends a sample event to an endpoint now.
	SendTest = Access{Verb: "create", Resource: "webhookendpoints", Subresource: "test"}
	// ReadEndpointAttempts reads an endpoint's log of test sends.
	ReadEndpointAttempts = Access{Verb: "get", Resource: "webhookendpoints", Subresource: "attempts"}
)

// Errors of a TestSender, wrapped with a sentence that says why.
var (
	ErrEndpointNotFound = errors.New("endpoint not found")
	ErrEndpointNotReady = errors.New("endpoint not ready")
)

// DefaultTestEventType is the type of a test send that names none.
const DefaultTestEventType = "hookline.test"

// TestRequest is one test send.
type TestRequest struct {
	Namespace, Endpoint string
	// Type is the sample event's type.
	Type string
	// Format is the payload format: StandardWebhooks (default), CloudEventsStructured or
	// CloudEventsBinary.
	Format string
}

// TestResult is what a receiver answered to a test send.
type TestResult struct {
	EventID   string `json:"eventId"`
	WebhookID string `json:"webhookId"`
	Type      string `json:"type"`
	// DataFrom says where the sample data came from: "example" (the EventType's
	// spec.example) or "minimal" ({}).
	DataFrom          string          `json:"dataFrom"`
	Data              json.RawMessage `json:"data"`
	Delivered         bool            `json:"delivered"`
	StatusCode        int             `json:"statusCode,omitempty"`
	LatencySeconds    float64         `json:"latencySeconds"`
	Error             string          `json:"error,omitempty"`
	Response          string          `json:"response,omitempty"`
	ResponseTruncated bool            `json:"responseTruncated,omitempty"`
}

// TestSender sends test events and keeps their log; internal/testsend's is the
// dispatcher's.
type TestSender interface {
	SendTest(ctx context.Context, req TestRequest) (TestResult, error)
	EndpointAttempts(ctx context.Context, ns, name string, limit int) ([]queue.Attempt, error)
}

// newEndpointAdmin serves
//
//	POST /v1/namespaces/{ns}/webhookendpoints/{name}/test?type=T&format=F
//	GET  /v1/namespaces/{ns}/webhookendpoints/{name}/attempts?limit=N
func newEndpointAdmin(t TestSender, h *Handler) http.Handler {
	a := &endpointAdmin{t: t, h: h}
	const ep = "/v1/namespaces/{ns}/webhookendpoints/{name}/"
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ep+"test", a.test)
	mux.HandleFunc("GET "+ep+"attempts", a.attempts)
	for path, allow := range map[string]string{"test": "POST", "attempts": "GET"} {
		mux.HandleFunc(ep+path, methodNotAllowed(allow))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &fieldError{status: http.StatusNotFound, message: "No such resource. The endpoint admin API serves " +
			"/v1/namespaces/{ns}/webhookendpoints/{name}/test and .../attempts."})
	})
	return mux
}

type endpointAdmin struct {
	t TestSender
	h *Handler
}

func (a *endpointAdmin) target(w http.ResponseWriter, r *http.Request, access Access) (ns, name string, ok bool) {
	ns, name = r.PathValue("ns"), r.PathValue("name")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		writeError(w, badParameter("ns", "Namespace %q is not valid: %s.", ns, strings.Join(errs, "; ")))
		return "", "", false
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		writeError(w, badParameter("name", "WebhookEndpoint name %q is not valid: %s.", name, strings.Join(errs, "; ")))
		return "", "", false
	}
	if a.h.namespaces != nil && !a.h.namespaces[ns] {
		writeError(w, &fieldError{status: http.StatusNotFound, parameter: "ns", message: fmt.Sprintf("This dispatcher does not serve namespace %q.", ns)})
		return "", "", false
	}
	access.Name = name
	if refused := a.h.authorize(r, ns, access); refused != nil {
		writeError(w, refused.fieldError(w))
		return "", "", false
	}
	return ns, name, true
}

func (a *endpointAdmin) test(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := TestRequest{Type: q.Get("type"), Format: q.Get("format")}
	if req.Type == "" {
		req.Type = DefaultTestEventType
	} else if err := match.ValidateEventType(req.Type); err != nil {
		writeError(w, badParameter("type", "type %q: %v. Name an event type such as invoice.paid.", req.Type, err))
		return
	}
	switch req.Format {
	case "", "StandardWebhooks", "CloudEventsStructured", "CloudEventsBinary":
	default:
		writeError(w, badParameter("format", "format must be StandardWebhooks, CloudEventsStructured or CloudEventsBinary, got %q.", req.Format))
		return
	}
	ns, name, ok := a.target(w, r, SendTest)
	if !ok {
		return
	}
	req.Namespace, req.Endpoint = ns, name
	res, err := a.t.SendTest(r.Context(), req)
	switch {
	case errors.Is(err, ErrEndpointNotFound):
		writeError(w, &fieldError{status: http.StatusNotFound, parameter: "name", message: err.Error()})
	case errors.Is(err, ErrEndpointNotReady):
		writeError(w, &fieldError{status: http.StatusConflict, parameter: "name", message: err.Error()})
	case err != nil:
		writeError(w, &fieldError{status: http.StatusInternalServerError, message: err.Error()})
	default:
		writeValue(w, res)
	}
}

func (a *endpointAdmin) attempts(w http.ResponseWriter, r *http.Request) {
	ns, name, ok := a.target(w, r, ReadEndpointAttempts)
	if !ok {
		return
	}
	limit, perr := limitParam(r, maxAttemptsLimit)
	if perr != nil {
		writeError(w, perr)
		return
	}
	list, err := a.t.EndpointAttempts(r.Context(), ns, name, limit)
	switch {
	case errors.Is(err, ErrEndpointNotFound):
		writeError(w, &fieldError{status: http.StatusNotFound, parameter: "name", message: err.Error()})
		return
	case err != nil:
		writeError(w, &fieldError{status: http.StatusInternalServerError, message: err.Error()})
		return
	}
	type item struct {
		attemptJSON
		Test bool `json:"test"`
	}
	items := make([]item, len(list))
	for i, at := range list {
		items[i] = item{attemptOf(at), at.Attempt == 0}
	}
	writeValue(w, map[string]any{"items": items})
}
