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

	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/queue"
)

// Reading retained events and recovering a subscription are rights of their
// own: reading events is get and list on events.hookline.io (publishing is
// create on the same resource, so neither right brings the other), and
// recovering is the verb recover on subscriptions, apart from replaying
// dead letters.
var (
	// ListEvents lists a namespace's retained events, payloads included.
	ListEvents = Access{Verb: "list", Resource: ResourceEvents}
	// GetEvent reads one retained event.
	GetEvent = Access{Verb: "get", Resource: ResourceEvents}
	// Recover sends a subscription's retained events again.
	Recover = Access{Verb: "recover", Resource: "subscriptions"}
)

// EventReader is what the events API reads; *queue.Queue is one.
type EventReader interface {
	ListEvents(ctx context.Context, q queue.EventQuery) ([]queue.RetainedEvent, uint64, error)
	GetEvent(ctx context.Context, ns, id string) (queue.RetainedEvent, error)
}

// Recoverer starts recoveries; *engine.Engine is one.
type Recoverer interface {
	Recover(ctx context.Context, sub queue.SubscriptionID, id string, since time.Time) (queue.Recovery, error)
}

const maxEventsLimit = 500

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 128

// newEvents serves the retained events:
//
//	GET /v1/namespaces/{ns}/events?type=&since=&until=&limit=&cursor=&order=newest|oldest
//	GET /v1/namespaces/{ns}/events/{id}
func newEvents(ev EventReader, h *Handler) http.Handler {
	e := &eventsAPI{ev: ev, h: h}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/namespaces/{ns}/events", e.list)
	mux.HandleFunc("GET /v1/namespaces/{ns}/events/{id}", e.get)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &fieldError{status: http.StatusNotFound, message: "No such resource. Retained events are read with " +
			"GET /v1/namespaces/{ns}/events and GET /v1/namespaces/{ns}/events/{id}."})
	})
	return mux
}

type eventsAPI struct {
	ev EventReader
	h  *Handler
}

// namespace validates and authorises; on failure it has answered.
func (e *eventsAPI) namespace(w http.ResponseWriter, r *http.Request, access Access) (string, bool) {
	ns := r.PathValue("ns")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		writeError(w, badParameter("ns", "Namespace %q is not valid: %s.", ns, strings.Join(errs, "; ")))
		return "", false
	}
	if e.h.namespaces != nil && !e.h.namespaces[ns] {
		writeError(w, &fieldError{status: http.StatusNotFound, parameter: "ns", message: fmt.Sprintf(
			"This dispatcher does not serve namespace %q, so it retains none of its events.", ns)})
		return "", false
	}
	if refused := e.h.authorize(r, ns, access); refused != nil {
		writeError(w, refused.fieldError(w))
		return "", false
	}
	return ns, true
}

// Event as the API shows it.
type retainedJSON struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Time time.Time       `json:"time,omitzero"`
	Data json.RawMessage `json:"data,omitempty"`
	// RetainedAt is when the fan-out stored it; since and until refer to it.
	RetainedAt time.Time `json:"retainedAt"`
}

func toRetainedJSON(r queue.RetainedEvent) retainedJSON {
	return retainedJSON{ID: r.Event.ID, Type: r.Event.Type, Time: r.Event.Time, Data: r.Event.Data, RetainedAt: r.Stored}
}

// Cursors carry the order they were made for: "n" or "o" and a sequence.
func encodeCursor(newest bool, seq uint64) string {
	if newest {
		return "n" + strconv.FormatUint(seq, 10)
	}
	return "o" + strconv.FormatUint(seq, 10)
}

func decodeCursor(c string, newest bool) (uint64, *fieldError) {
	if c == "" {
		return 0, nil
	}
	want := "o"
	if newest {
		want = "n"
	}
	rest, ok := strings.CutPrefix(c, want)
	seq, err := strconv.ParseUint(rest, 10, 64)
	if !ok || err != nil || seq == 0 {
		return 0, badParameter("cursor", "cursor %q is not the next cursor of a listing in this order; pass the \"next\" value of the previous page unchanged, with the same order.", c)
	}
	return seq, nil
}

func (e *eventsAPI) list(w http.ResponseWriter, r *http.Request) {
	ns, ok := e.namespace(w, r, ListEvents)
	if !ok {
		return
	}
	q := r.URL.Query()
	eq := queue.EventQuery{Namespace: ns, Type: q.Get("type")}
	var perr *fieldError
	switch o := q.Get("order"); o {
	case "", "newest":
		eq.NewestFirst = true
	case "oldest":
	default:
		perr = badParameter("order", "order must be newest or oldest, got %q.", o)
	}
	if perr == nil && len(eq.Type) > 256 {
		perr = badParameter("type", "type is %d characters long; event types have at most 256.", len(eq.Type))
	}
	if perr == nil {
		eq.Since, perr = timeParam(r, "since")
	}
	if perr == nil {
		eq.Until, perr = timeParam(r, "until")
	}
	if perr == nil && !eq.Since.IsZero() && !eq.Until.IsZero() && eq.Until.Before(eq.Since) {
		perr = badParameter("until", "until (%s) is before since (%s).", eq.Until.Format(time.RFC3339), eq.Since.Format(time.RFC3339))
	}
	if perr == nil {
		eq.Limit, perr = limitParam(r, maxEventsLimit)
	}
	if perr == nil {
		eq.Cursor, perr = decodeCursor(q.Get("cursor"), eq.NewestFirst)
	}
	if perr != nil {
		writeError(w, perr)
		return
	}
	evs, next, err := e.ev.ListEvents(r.Context(), eq)
	if err != nil {
		writeError(w, retainedError(err))
		return
	}
	items := make([]retainedJSON, len(evs))
	for i, ev := range evs {
		items[i] = toRetainedJSON(ev)
	}
	out := struct {
		Items []retainedJSON `json:"items"`
		Next  string         `json:"next,omitempty"`
	}{Items: items}
	if next != 0 {
		out.Next = encodeCursor(eq.NewestFirst, next)
	}
	writeValue(w, out)
}

func (e *eventsAPI) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > MaxIDLength {
		writeError(w, badParameter("id", "id must be an event id of 1 to %d characters.", MaxIDLength))
		return
	}
	ns, ok := e.namespace(w, r, GetEvent)
	if !ok {
		return
	}
	ev, err := e.ev.GetEvent(r.Context(), ns, id)
	if errors.Is(err, queue.ErrNotFound) {
		writeError(w, &fieldError{status: http.StatusNotFound, parameter: "id", message: fmt.Sprintf(
			"No event %q is retained in namespace %s: it was never accepted, not fanned out yet, or older than the retention window.", id, ns)})
		return
	}
	if err != nil {
		writeError(w, retainedError(err))
		return
	}
	writeValue(w, toRetainedJSON(ev))
}

func retainedError(err error) *fieldError {
	if errors.Is(err, queue.ErrRetentionOff) {
		return &fieldError{status: http.StatusNotFound, message: "This dispatcher retains no events (--event-retention=0); " +
			"set a retention window to list events and recover subscriptions."}
	}
	return &fieldError{status: http.StatusInternalServerError, message: err.Error()}
}

// Recovery as the API shows it.
type recoveryJSON struct {
	ID         string    `json:"id"`
	Phase      string    `json:"phase"`
	Since      time.Time `json:"since,omitzero"`
	Scanned    uint64    `json:"scanned"`
	Queued     uint64    `json:"queued"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// recover serves POST .../subscriptions/{name}/recover?since=RFC3339 with an
// Idempotency-Key header: 202 while the recovery runs, 200 once it has
// ended; the same key returns the same recovery.
func (a *admin) recover(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	if ferr := checkIdempotencyKey(key); ferr != nil {
		writeError(w, ferr)
		return
	}
	since, perr := timeParam(r, "since")
	if perr == nil && since.After(a.h.opts.Clock.Now()) {
		perr = badParameter("since", "since (%s) is in the future; nothing was retained after now.", since.Format(time.RFC3339))
	}
	if perr != nil {
		writeError(w, perr)
		return
	}
	sub, ok := a.target(w, r, Recover)
	if !ok {
		return
	}
	rec, err := a.h.opts.Recoverer.Recover(r.Context(), sub, key, since)
	switch {
	case errors.Is(err, engine.ErrNoSubscription):
		writeError(w, &fieldError{status: http.StatusNotFound, parameter: "name", message: fmt.Sprintf(
			"Subscription %s does not exist (or this dispatcher does not serve it).", sub)})
		return
	case errors.Is(err, engine.ErrUnusable):
		writeError(w, &fieldError{status: http.StatusConflict, parameter: "name", message: fmt.Sprintf(
			"%v; fix the subscription (see its Ready condition) and recover again.", err)})
		return
	case errors.Is(err, queue.ErrRetentionOff):
		writeError(w, retainedError(err))
		return
	case errors.Is(err, engine.ErrNotRunning):
		writeError(w, &fieldError{status: http.StatusServiceUnavailable, message: "The dispatcher is not delivering (starting or stopping); retry shortly with the same Idempotency-Key."})
		return
	case err != nil:
		writeError(w, &fieldError{status: http.StatusInternalServerError, message: fmt.Sprintf("%v; retrying with the same Idempotency-Key is safe", err)})
		return
	}
	out := recoveryJSON{ID: rec.ID, Phase: rec.Phase, Since: rec.Since, Scanned: rec.Scanned, Queued: rec.Queued,
		Message: rec.Message, StartedAt: rec.StartedAt, UpdatedAt: rec.UpdatedAt, FinishedAt: rec.FinishedAt}
	b, _ := json.Marshal(out)
	status := http.StatusOK
	if rec.Phase == queue.RecoveryRunning {
		status = http.StatusAccepted
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, b)
}

func checkIdempotencyKey(key string) *fieldError {
	bad := func(format string, args ...any) *fieldError {
		return &fieldError{status: http.StatusBadRequest, field: "Idempotency-Key", message: fmt.Sprintf(format, args...)}
	}
	if key == "" {
		return bad("a recovery needs an Idempotency-Key header, e.g. a UUID: sending the request again with the same key returns the same recovery instead of starting another")
	}
	if len(key) > maxIdempotencyKey {
		return bad("the Idempotency-Key is %d characters long; at most %d are allowed", len(key), maxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return bad("the Idempotency-Key may hold only visible ASCII characters, without spaces")
		}
	}
	return nil
}
