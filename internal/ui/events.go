package ui

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/match"
)

// --- events -----------------------------------------------------------------------

type eventsData struct {
	Items             []Event
	Type, Since, Next string
	Order             string
}

func (s *Server) eventsPage(w http.ResponseWriter, r *http.Request) {
	ns, _, err := target(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	in := r.URL.Query()
	d := eventsData{Type: in.Get("type"), Since: in.Get("since"), Order: in.Get("order")}
	q := url.Values{"limit": {"50"}}
	if d.Type != "" {
		q.Set("type", d.Type)
	}
	if d.Order == "oldest" {
		q.Set("order", "oldest")
	}
	if c := in.Get("cursor"); c != "" {
		q.Set("cursor", c)
	}
	p := page{Title: "Events in " + ns, Namespace: ns}
	if d.Since != "" {
		t, err := parseLocal(d.Since)
		if err != nil {
			p.Notes = append(p.Notes, "since: "+err.Error())
		} else {
			q.Set("since", t.Format(time.RFC3339))
		}
	}
	items, next, err := s.disp.Events(r.Context(), ns, q)
	if err != nil {
		p.Notes = append(p.Notes, note("Retained events", err))
	}
	d.Items, d.Next = items, next
	p.Data = d
	s.render(w, r, http.StatusOK, "events", p)
}

type eventData struct {
	Event Event
	// Subscriptions are those of the namespace whose event types match the event's: where
	// it was delivered (or, for a suspended one, is held), filters aside.
	Subscriptions []subscriptionRow
}

func (s *Server) eventPage(w http.ResponseWriter, r *http.Request) {
	ns, _, err := target(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	id := r.PathValue("id")
	ev, err := s.disp.Event(r.Context(), ns, id)
	if err != nil {
		s.fail(w, r, ns, err)
		return
	}
	p := page{Title: "Event " + id, Namespace: ns}
	d := eventData{Event: ev}
	var subs hooklinev1.SubscriptionList
	if err := s.kube.List(r.Context(), &subs, client.InNamespace(ns)); err != nil {
		p.Notes = append(p.Notes, "Subscriptions: "+err.Error())
	}
	for _, sb := range subs.Items {
		m, err := match.Compile(sb.Spec.EventTypes)
		if err != nil || !m.Match(ev.Type) {
			continue
		}
		types := strings.Join(sb.Spec.EventTypes, ", ")
		if sb.Spec.Filter != "" {
			types += " (filter: " + sb.Spec.Filter + ")"
		}
		d.Subscriptions = append(d.Subscriptions, subscriptionRow{Name: sb.Name, Endpoint: sb.Spec.EndpointRef.Name, Types: types,
			Health: healthOf(sb.Status.Conditions, sb.Spec.Suspend), Suspended: sb.Spec.Suspend})
	}
	p.Data = d
	s.render(w, r, http.StatusOK, "event", p)
}
