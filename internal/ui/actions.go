package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// An action is asked for twice: the first POST renders a confirmation page that says
// what will happen; its form posts the same fields again with confirm=yes, and only
// then is the API called. The outcome page shows what the API answered.

type confirmData struct {
	Action   string // the button's words
	Question string
	Target   string
	Back     string
	Fields   []field
}

type field struct{ Name, Value string }

type outcomeData struct {
	OK      bool
	Summary string
	Details []string
	Back    string
}

// confirmed renders the confirmation page unless the form says confirm=yes.
func (s *Server) confirmed(w http.ResponseWriter, r *http.Request, ns, action, question, back string) bool {
	if r.PostForm.Get("confirm") == "yes" {
		return true
	}
	var fields []field
	keys := make([]string, 0, len(r.PostForm))
	for k := range r.PostForm {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == csrfField || k == "confirm" {
			continue
		}
		for _, v := range r.PostForm[k] {
			fields = append(fields, field{k, v})
		}
	}
	s.render(w, r, http.StatusOK, "confirm", page{Title: "Confirm: " + action, Namespace: ns,
		Data: confirmData{Action: action, Question: question, Target: r.URL.Path, Back: back, Fields: fields}})
	return false
}

func (s *Server) outcome(w http.ResponseWriter, r *http.Request, ns, title string, d outcomeData) {
	status := http.StatusOK
	if !d.OK {
		status = http.StatusBadGateway
	}
	s.render(w, r, status, "outcome", page{Title: title, Namespace: ns, Data: d})
}

func endpointURL(ns, name string) string { return "/ns/" + ns + "/endpoints/" + url.PathEscape(name) }
func subscriptionURL(ns, name string) string {
	return "/ns/" + ns + "/subscriptions/" + url.PathEscape(name)
}

func (s *Server) sendTest(w http.ResponseWriter, r *http.Request) {
	ns, name, err := target(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	typ := strings.TrimSpace(r.PostForm.Get("type"))
	shown := typ
	if shown == "" {
		shown = "hookline.test"
	}
	back := endpointURL(ns, name)
	if !s.confirmed(w, r, ns, "Send test event", fmt.Sprintf("Send a signed sample event of type %s to endpoint %s/%s now? "+
		"The receiver gets it like any delivery; it is not retried.", shown, ns, name), back) {
		return
	}
	res, err := s.disp.SendTest(r.Context(), ns, name, typ)
	if err != nil {
		s.outcome(w, r, ns, "Test send failed", outcomeData{Summary: err.Error(), Back: back})
		return
	}
	d := outcomeData{OK: res.Delivered, Back: back}
	answer := fmt.Sprintf("status %d in %.0f ms", res.StatusCode, res.LatencySeconds*1000)
	if res.StatusCode == 0 {
		answer = "no answer"
	}
	if res.Delivered {
		d.Summary = fmt.Sprintf("Test event %s (%s) delivered: the receiver answered %s.", res.EventID, res.Type, answer)
	} else {
		d.Summary = fmt.Sprintf("Test event %s (%s) was not accepted: %s.", res.EventID, res.Type, answer)
	}
	if res.Error != "" {
		d.Details = append(d.Details, "Error: "+res.Error)
	}
	if res.Response != "" {
		d.Details = append(d.Details, "Receiver's answer: "+excerpt(res.Response, 2000))
	}
	s.outcome(w, r, ns, "Test send", d)
}

// annotate sets one of hookline's one-shot annotations on the endpoint, as the user.
func (s *Server) annotate(ctx context.Context, ns, name, key, value string) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	var ep hooklinev1.WebhookEndpoint
	ep.Namespace, ep.Name = ns, name
	return s.kube.Patch(ctx, &ep, client.RawPatch(types.MergePatchType, patch))
}

func (s *Server) enable(w http.ResponseWriter, r *http.Request) {
	s.annotationAction(w, r, hooklinev1.AnnotationEnable, "Enable endpoint",
		"Re-enable endpoint %s/%s? Held deliveries are sent again. (Sets the annotation %s=%s.)",
		"Endpoint %s/%s re-enabled: annotation %s=%s set; the dispatcher clears Disabled once it handles it.")
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request) {
	s.annotationAction(w, r, hooklinev1.AnnotationRotate, "Rotate signing key",
		"Rotate the signing key of endpoint %s/%s now, with the usual overlap? (Sets the annotation %s=%s.)",
		"Rotation of %s/%s requested: annotation %s=%s set; status.signing shows the new key once the operator rotated it.")
}

func (s *Server) annotationAction(w http.ResponseWriter, r *http.Request, key, action, question, done string) {
	ns, name, err := target(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	back := endpointURL(ns, name)
	// The value is fixed on the confirmation page, so confirming twice sets one value.
	value := r.PostForm.Get("value")
	if value == "" {
		value = strconv.FormatInt(s.opts.Clock.Now().Unix(), 10)
		r.PostForm.Set("value", value)
	}
	if !s.confirmed(w, r, ns, action, fmt.Sprintf(question, ns, name, key, value), back) {
		return
	}
	if err := s.annotate(r.Context(), ns, name, key, value); err != nil {
		s.outcome(w, r, ns, action+" failed", outcomeData{Summary: fmt.Sprintf("Setting %s on %s/%s: %v", key, ns, name, err), Back: back})
		return
	}
	s.outcome(w, r, ns, action, outcomeData{OK: true, Summary: fmt.Sprintf(done, ns, name, key, value), Back: back})
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request) {
	ns, name, err := target(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	back := subscriptionURL(ns, name)
	var from, to time.Time
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := r.PostForm.Get(f.name); v != "" {
			if *f.t, err = parseLocal(v); err != nil {
				s.outcome(w, r, ns, "Replay", outcomeData{Summary: f.name + ": " + err.Error(), Back: back})
				return
			}
		}
	}
	span := "all its dead letters"
	switch {
	case !from.IsZero() && !to.IsZero():
		span = fmt.Sprintf("the dead letters that died from %s to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	case !from.IsZero():
		span = "the dead letters that died since " + from.Format(time.RFC3339)
	case !to.IsZero():
		span = "the dead letters that died until " + to.Format(time.RFC3339)
	}
	if !s.confirmed(w, r, ns, "Replay", fmt.Sprintf("Send %s of subscription %s/%s back for delivery?", span, ns, name), back) {
		return
	}
	n, err := s.disp.Replay(r.Context(), ns, name, from, to)
	if err != nil {
		s.outcome(w, r, ns, "Replay failed", outcomeData{Summary: err.Error(), Back: back})
		return
	}
	s.outcome(w, r, ns, "Replay", outcomeData{OK: true, Summary: fmt.Sprintf("Replayed %d dead deliveries of %s/%s; "+
		"they are delivered again with their retry schedule, and any that fail again return to the dead letters.", n, ns, name), Back: back})
}

func (s *Server) resend(w http.ResponseWriter, r *http.Request) {
	ns, name, err := target(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	back := subscriptionURL(ns, name)
	var seqs []uint64
	for _, v := range r.PostForm["seq"] {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil || seq == 0 {
			s.outcome(w, r, ns, "Resend", outcomeData{Summary: fmt.Sprintf("seq %q is not a dead letter's number.", v), Back: back})
			return
		}
		seqs = append(seqs, seq)
	}
	if len(seqs) == 0 {
		s.outcome(w, r, ns, "Resend", outcomeData{Summary: "Select at least one dead letter to resend (the check boxes of the list).", Back: back})
		return
	}
	if !s.confirmed(w, r, ns, "Resend", fmt.Sprintf("Send %d selected dead letter(s) of subscription %s/%s back for delivery?", len(seqs), ns, name), back) {
		return
	}
	d := outcomeData{OK: true, Back: back}
	sent := 0
	for _, seq := range seqs {
		if err := s.disp.Resend(r.Context(), ns, name, seq); err != nil {
			d.OK = false
			d.Details = append(d.Details, fmt.Sprintf("Dead letter %d: %v", seq, err))
			continue
		}
		sent++
		d.Details = append(d.Details, fmt.Sprintf("Dead letter %d: sent back for delivery.", seq))
	}
	d.Summary = fmt.Sprintf("Resent %d of %d dead letter(s) of %s/%s.", sent, len(seqs), ns, name)
	s.outcome(w, r, ns, "Resend", d)
}
