package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// --- one attempt ------------------------------------------------------------------

type attemptData struct {
	Subscription string
	Format       string
	Attempt      Attempt
	// Body is the event's data, from the retained events or else the subscription's
	// dead letters; BodyFrom says which, BodyNote why there is none.
	Body     json.RawMessage
	BodyFrom string
	BodyNote string
}

// attemptPage shows one attempt of a subscription: the request's headers (as the
// dispatcher recorded them, credentials and signatures masked), its body (the event's
// data, which the attempt log does not keep: it is read from the retained events) and
// the receiver's answer.
func (s *Server) attemptPage(w http.ResponseWriter, r *http.Request) {
	ns, name, err := target(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	q := r.URL.Query()
	at, terr := time.Parse(time.RFC3339Nano, q.Get("time"))
	n, nerr := strconv.Atoi(q.Get("attempt"))
	if terr != nil || nerr != nil {
		s.fail(w, r, ns, fmt.Errorf("%w: this address names no attempt (it needs time, attempt and event); open an attempt from the subscription's attempt log", errBadName))
		return
	}
	eventID := q.Get("event")
	ctx := r.Context()
	attempts, err := s.disp.Attempts(ctx, ns, name, 1000)
	if err != nil {
		s.fail(w, r, ns, err)
		return
	}
	d := attemptData{Subscription: name}
	found := false
	for _, a := range attempts {
		if a.Time.Equal(at) && a.Attempt == n && a.EventID == eventID {
			d.Attempt, found = a, true
			break
		}
	}
	if !found {
		s.fail(w, r, ns, &APIError{Status: http.StatusNotFound, Message: fmt.Sprintf(
			"attempt %d of event %q at %s is not in the attempt log of %s/%s: the log keeps the newest attempts only",
			n, eventID, at.UTC().Format(time.RFC3339Nano), ns, name)})
		return
	}
	p := page{Title: fmt.Sprintf("Attempt %d of %s", n, name), Namespace: ns}
	var sb hooklinev1.Subscription
	if err := s.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sb); err != nil {
		p.Notes = append(p.Notes, "Subscription: "+err.Error())
	}
	d.Format = string(hooklinev1.PayloadStandardWebhooks)
	if sb.Spec.Payload != nil && sb.Spec.Payload.Format != "" {
		d.Format = string(sb.Spec.Payload.Format)
	}
	s.attemptBody(r, ns, name, &d)
	p.Data = d
	s.render(w, r, http.StatusOK, "attempt", p)
}

// attemptBody finds the event's data: retained, or in a dead letter of the subscription.
func (s *Server) attemptBody(r *http.Request, ns, name string, d *attemptData) {
	id := d.Attempt.EventID
	if id == "" {
		d.BodyNote = "This attempt was recorded before the attempt log kept event ids, so its event cannot be found."
		return
	}
	ev, err := s.disp.Event(r.Context(), ns, id)
	if err == nil {
		d.Body, d.BodyFrom = ev.Data, "the retained event"
		return
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		d.BodyNote = note("Retained event", err)
		return
	}
	if dead, derr := s.disp.Dead(r.Context(), ns, name, 100); derr == nil {
		for _, dl := range dead {
			if dl.Event.ID == id {
				d.Body, d.BodyFrom = dl.Event.Data, "its dead letter"
				return
			}
		}
	}
	d.BodyNote = "The event is no longer retained (or the dispatcher does not retain events; see eventRetention) and is not a dead letter, so its body cannot be shown."
}
