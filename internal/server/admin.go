package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hookline/hookline/internal/queue"
)

// What each admin request takes, as RBAC on the namespace's subscriptions.
// Reading the attempt log, reading dead letters (they carry the events'
// payloads) and replaying are separate rights, and none of them comes with
// the right to publish.
var (
	// ReadAttempts reads a subscription's attempt log.
	ReadAttempts = Access{Verb: "get", Resource: "subscriptions", Subresource: "attempts"}
	// ReadDeadLetters reads a subscription's dead deliveries, payloads included.
	ReadDeadLetters = Access{Verb: "get", Resource: "subscriptions", Subresource: "deadletters"}
	// Replay sends a subscription's dead deliveries back for delivery.
	Replay = Access{Verb: "replay", Resource: "subscriptions"}
	// Resend sends one dead delivery back; it is a replay of one, so it
	// takes the same right.
	Resend = Access{Verb: "replay", Resource: "subscriptions"}
)

// AdminQueue is what the admin API reads and replays; *queue.Queue is one.
type AdminQueue interface {
	RecentAttempts(ctx context.Context, sub queue.SubscriptionID, limit int) ([]queue.Attempt, error)
	ListDead(ctx context.Context, sub queue.SubscriptionID, limit int) ([]queue.DeadDelivery, error)
	Replay(ctx context.Context, sub queue.SubscriptionID, from, to time.Time) (int, error)
	Resend(ctx context.Context, sub queue.SubscriptionID, seq uint64) error
}

// Limits of the list endpoints. Dead letters carry their event's data, so
// fewer of them fit one answer.
const (
	defaultListLimit = 20
	maxAttemptsLimit = 1000
	maxDeadLimit     = 100
)

// newAdmin serves the dispatcher's admin API:
//
//	GET  /v1/namespaces/{ns}/subscriptions/{name}/attempts?limit=N
//	GET  /v1/namespaces/{ns}/subscriptions/{name}/dead?limit=N
//	POST /v1/namespaces/{ns}/subscriptions/{name}/replay?from=RFC3339&to=RFC3339
//	POST /v1/namespaces/{ns}/subscriptions/{name}/deliveries/{id}/resend
//	POST /v1/namespaces/{ns}/subscriptions/{name}/recover?since=RFC3339 (with a Recoverer; retained.go)
//
// The {id} of a dead delivery is its seq in the dead-letter list. Only the
// current object of a subscription name is served: one deleted and created
// again starts with no attempts and no dead letters, and a name with no
// object is 404.
//
// Attempts come newest first, dead letters oldest first. Every answer is
// JSON, errors included: {"error": {"status", "reason", "parameter",
// "message"}}, where parameter names the offending query or path parameter.
func newAdmin(q AdminQueue, h *Handler) http.Handler {
	a := &admin{q: q, h: h}
	const sub = "/v1/namespaces/{ns}/subscriptions/{name}/"
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+sub+"attempts", a.attempts)
	mux.HandleFunc("GET "+sub+"dead", a.dead)
	mux.HandleFunc("POST "+sub+"replay", a.replay)
	mux.HandleFunc("POST "+sub+"deliveries/{id}/resend", a.resend)
	allowed := map[string]string{"attempts": "GET", "dead": "GET", "replay": "POST", "deliveries/{id}/resend": "POST"}
	if h.opts.Recoverer != nil {
		mux.HandleFunc("POST "+sub+"recover", a.recover)
		allowed["recover"] = "POST"
	}
	for path, allow := range allowed {
		mux.HandleFunc(sub+path, methodNotAllowed(allow))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &fieldError{status: http.StatusNotFound, message: "No such resource. The admin API serves " +
			"/v1/namespaces/{ns}/subscriptions/{name}/attempts, .../dead, .../replay, .../deliveries/{id}/resend and .../recover."})
	})
	return mux
}

type admin struct {
	q AdminQueue
	h *Handler
}

// writeValue answers 200 with v as JSON. Admin answers are never cached: they
// change with every delivery.
func writeValue(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

func badParameter(name, format string, args ...any) *fieldError {
	return &fieldError{status: http.StatusBadRequest, parameter: name, message: fmt.Sprintf(format, args...)}
}

// target validates the path and authorises the request; on failure it has
// answered and returns false.
func (a *admin) target(w http.ResponseWriter, r *http.Request, access Access) (sub queue.SubscriptionID, ok bool) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		writeError(w, badParameter("ns", "Namespace %q is not valid: %s.", ns, strings.Join(errs, "; ")))
		return sub, false
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		writeError(w, badParameter("name", "Subscription name %q is not valid: %s.", name, strings.Join(errs, "; ")))
		return sub, false
	}
	access.Name = name
	if refused := a.h.authorize(r, ns, access); refused != nil {
		writeError(w, refused.fieldError(w))
		return sub, false
	}
	uid, found := a.h.opts.SubscriptionUID(ns, name)
	if !found {
		writeError(w, &fieldError{status: http.StatusNotFound, parameter: "name", message: fmt.Sprintf(
			"Subscription %s/%s does not exist (or this dispatcher does not serve it); its deliveries were removed with it.", ns, name)})
		return sub, false
	}
	return queue.SubscriptionID{Namespace: ns, Name: name, UID: uid}, true
}

func limitParam(r *http.Request, maxLimit int) (int, *fieldError) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return min(defaultListLimit, maxLimit), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, badParameter("limit", "limit must be a whole number from 1 to %d, got %q.", maxLimit, v)
	}
	return n, nil
}

func timeParam(r *http.Request, name string) (time.Time, *fieldError) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badParameter(name, "%s must be an RFC 3339 time such as 2026-11-26T20:00:00Z, got %q.", name, v)
	}
	return t, nil
}

// Attempt as the API shows it.
type attemptJSON struct {
	Time           time.Time `json:"time"`
	Attempt        int       `json:"attempt"`
	StatusCode     int       `json:"statusCode,omitempty"`
	LatencySeconds float64   `json:"latencySeconds"`
	Error          string    `json:"error,omitempty"`
	Response       string    `json:"response,omitempty"`
	// EventID is the event the attempt delivered; empty for attempts
	// recorded before hookline kept it.
	EventID string `json:"eventId,omitempty"`
	// RequestHeaders are the headers the attempt sent, in the order
	// recorded, with credentials and signature values masked as "****";
	// absent for attempts recorded before hookline kept them.
	RequestHeaders []AttemptHeader `json:"requestHeaders,omitempty"`
}

// AttemptHeader is one request header of an attempt; clients such as
// hookline ui decode it.
type AttemptHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// attemptHeaders splits the attempt log's "Name: value" lines.
func attemptHeaders(s string) []AttemptHeader {
	if s == "" {
		return nil
	}
	out := make([]AttemptHeader, 0, strings.Count(s, "\n"))
	for line := range strings.Lines(s) {
		name, value, _ := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
		out = append(out, AttemptHeader{Name: name, Value: value})
	}
	return out
}

func (a *admin) attempts(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.target(w, r, ReadAttempts)
	if !ok {
		return
	}
	limit, perr := limitParam(r, maxAttemptsLimit)
	if perr != nil {
		writeError(w, perr)
		return
	}
	list, err := a.q.RecentAttempts(r.Context(), sub, limit)
	if err != nil {
		writeError(w, &fieldError{status: http.StatusInternalServerError, message: err.Error()})
		return
	}
	items := make([]attemptJSON, len(list))
	for i, at := range list {
		items[i] = attemptOf(at)
	}
	writeValue(w, map[string]any{"items": items})
}

func attemptOf(at queue.Attempt) attemptJSON {
	return attemptJSON{Time: at.Time, Attempt: at.Attempt, StatusCode: at.StatusCode,
		LatencySeconds: at.Latency.Seconds(), Error: at.Error, Response: at.Response, EventID: at.EventID,
		RequestHeaders: attemptHeaders(at.Headers)}
}

// DeadLetter is the admin API's form of one dead delivery (GET
// .../subscriptions/{name}/dead); clients such as hookline ui decode it.
type DeadLetter struct {
	Seq    uint64    `json:"seq"`
	DiedAt time.Time `json:"diedAt"`
	Event  struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Time time.Time       `json:"time"`
		Data json.RawMessage `json:"data,omitempty"`
	} `json:"event"`
	Attempts     int       `json:"attempts"`
	FirstAttempt time.Time `json:"firstAttempt,omitzero"`
	// ReplayOf is the dead letter this delivery was itself replayed from.
	ReplayOf uint64 `json:"replayOf,omitempty"`
	// Recovered: the delivery was sent by a recovery (POST .../recover).
	Recovered   bool `json:"recovered,omitempty"`
	LastFailure struct {
		Time       time.Time `json:"time"`
		StatusCode int       `json:"statusCode,omitempty"`
		Reason     string    `json:"reason"`
	} `json:"lastFailure"`
}

func (a *admin) dead(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.target(w, r, ReadDeadLetters)
	if !ok {
		return
	}
	limit, perr := limitParam(r, maxDeadLimit)
	if perr != nil {
		writeError(w, perr)
		return
	}
	list, err := a.q.ListDead(r.Context(), sub, limit)
	if err != nil {
		writeError(w, &fieldError{status: http.StatusInternalServerError, message: err.Error()})
		return
	}
	items := make([]DeadLetter, len(list))
	for i, dd := range list {
		it := &items[i]
		it.Seq, it.DiedAt = dd.Seq, dd.DiedAt
		ev := dd.Delivery.Event
		it.Event.ID, it.Event.Type, it.Event.Time, it.Event.Data = ev.ID, ev.Type, ev.Time, ev.Data
		it.Attempts, it.FirstAttempt, it.ReplayOf = dd.Delivery.Attempt, dd.Delivery.FirstAttempt, dd.Delivery.Replay
		if dd.Delivery.Recovered() {
			it.ReplayOf, it.Recovered = 0, true
		}
		it.LastFailure.Time, it.LastFailure.StatusCode, it.LastFailure.Reason = dd.Last.Time, dd.Last.StatusCode, dd.Last.Reason
	}
	writeValue(w, map[string]any{"items": items})
}

func (a *admin) replay(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.target(w, r, Replay)
	if !ok {
		return
	}
	from, perr := timeParam(r, "from")
	var to time.Time
	if perr == nil {
		to, perr = timeParam(r, "to")
	}
	if perr == nil && !from.IsZero() && !to.IsZero() && to.Before(from) {
		perr = badParameter("to", "to (%s) is before from (%s).", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	if perr != nil {
		writeError(w, perr)
		return
	}
	n, err := a.q.Replay(r.Context(), sub, from, to)
	if err != nil {
		writeError(w, &fieldError{status: http.StatusInternalServerError, message: fmt.Sprintf("%v; %d were replayed before the error, and replaying again is safe", err, n)})
		return
	}
	writeValue(w, map[string]int{"replayed": n})
}

func (a *admin) resend(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 {
		writeError(w, badParameter("id", "id must be the seq of a dead delivery, a positive whole number as the dead-letter list shows it, got %q.", id))
		return
	}
	sub, ok := a.target(w, r, Resend)
	if !ok {
		return
	}
	switch err := a.q.Resend(r.Context(), sub, seq); {
	case errors.Is(err, queue.ErrNotFound):
		writeError(w, &fieldError{status: http.StatusNotFound, parameter: "id", message: fmt.Sprintf(
			"Subscription %s has no dead delivery %d; list them with GET .../dead.", sub, seq)})
	case err != nil:
		writeError(w, &fieldError{status: http.StatusInternalServerError, message: fmt.Sprintf("%v; resending again is safe", err)})
	default:
		writeValue(w, map[string]uint64{"resent": seq})
	}
}

// methodNotAllowed answers 405 naming the method to use instead.
func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, &fieldError{status: http.StatusMethodNotAllowed, message: fmt.Sprintf("%s is not allowed here; use %s.", r.Method, allow)})
	}
}
