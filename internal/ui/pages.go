package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/match"
	"github.com/hookline/hookline/internal/server"
)

// page is what every template gets.
type page struct {
	Title     string
	Namespace string
	CSRF      string
	// Notes are what the page could not show, and why (a refusal, an unreachable
	// dispatcher): a page shows what it can rather than failing whole.
	Notes []string
	Data  any
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"ago":     func(t time.Time) string { return ago(time.Now(), t) },
		"utc":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"mtime":   func(t *metav1.Time) string { return metaTime(t) },
		"ms":      func(s float64) string { return fmt.Sprintf("%.0f ms", s*1000) },
		"excerpt": func(s string) string { return excerpt(s, 400) },
		"pretty":  prettyJSON,
		"f1":      func(f float64) string { return fmt.Sprintf("%.1f", f) },
		"join":    strings.Join,
		"pathesc": url.PathEscape,
		"query":   url.QueryEscape,
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", n, err)
		}
		out[strings.TrimSuffix(base, ".html")] = t
	}
	return out, nil
}

func (s *Server) render(w http.ResponseWriter, status int, name string, p page) {
	p.CSRF = s.csrfToken()
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		s.opts.Log.Error(err, "rendering", "page", name)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// fail renders an error page for a request the dashboard cannot serve at all.
func (s *Server) fail(w http.ResponseWriter, ns string, err error) {
	status := http.StatusBadGateway
	var apiErr *APIError
	switch {
	case apierrors.IsNotFound(err):
		status = http.StatusNotFound
	case apierrors.IsForbidden(err):
		status = http.StatusForbidden
	case errors.As(err, &apiErr):
		status = apiErr.Status
	case errors.Is(err, errBadName):
		status = http.StatusBadRequest
	}
	s.render(w, status, "error", page{Title: http.StatusText(status), Namespace: ns, Data: err.Error()})
}

var errBadName = errors.New("not a valid name")

// target reads and validates {ns} and {name}.
func target(r *http.Request) (ns, name string, err error) {
	ns, name = r.PathValue("ns"), r.PathValue("name")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return ns, name, fmt.Errorf("namespace %q: %w: %s", ns, errBadName, strings.Join(errs, "; "))
	}
	if name != "" {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return ns, name, fmt.Errorf("name %q: %w: %s", name, errBadName, strings.Join(errs, "; "))
		}
	}
	return ns, name, nil
}

// note words a failed read for the page's notes.
func note(what string, err error) string {
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden {
		return what + ": refused. " + apiErr.Message
	}
	return what + ": " + err.Error()
}

// --- namespaces -----------------------------------------------------------------

type nsSummary struct {
	Name                     string
	Endpoints, Subscriptions int
	Unhealthy                int
	Note                     string
}

func (s *Server) namespaces(ctx context.Context) ([]string, string) {
	if len(s.opts.Namespaces) > 0 {
		return s.opts.Namespaces, ""
	}
	list, err := s.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{s.opts.DefaultNamespace}, fmt.Sprintf("Listing namespaces was refused (%v); showing your kubeconfig's namespace %s. "+
			"Run hookline ui -n NAMESPACE to choose others.", err, s.opts.DefaultNamespace)
	}
	out := make([]string, 0, len(list.Items))
	for _, n := range list.Items {
		out = append(out, n.Name)
	}
	return out, ""
}

func (s *Server) namespacesPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	names, n := s.namespaces(ctx)
	p := page{Title: "Namespaces"}
	if n != "" {
		p.Notes = append(p.Notes, n)
	}
	rows := make([]nsSummary, len(names))
	// One list of each kind across the cluster when RBAC allows it; else one per namespace
	// (a page refreshed live must not cost two requests per namespace when it need not).
	var allEps hooklinev1.WebhookEndpointList
	var allSubs hooklinev1.SubscriptionList
	clusterWide := s.kube.List(ctx, &allEps) == nil && s.kube.List(ctx, &allSubs) == nil
	var wg sync.WaitGroup
	for i, ns := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			row := nsSummary{Name: ns}
			var eps []hooklinev1.WebhookEndpoint
			var subs []hooklinev1.Subscription
			if clusterWide {
				for _, e := range allEps.Items {
					if e.Namespace == ns {
						eps = append(eps, e)
					}
				}
				for _, sb := range allSubs.Items {
					if sb.Namespace == ns {
						subs = append(subs, sb)
					}
				}
			} else {
				var el hooklinev1.WebhookEndpointList
				var sl hooklinev1.SubscriptionList
				if err := s.kube.List(ctx, &el, client.InNamespace(ns)); err != nil {
					row.Note = err.Error()
				}
				if err := s.kube.List(ctx, &sl, client.InNamespace(ns)); err != nil {
					row.Note = err.Error()
				}
				eps, subs = el.Items, sl.Items
			}
			row.Endpoints, row.Subscriptions = len(eps), len(subs)
			for _, e := range eps {
				if healthOf(e.Status.Conditions, e.Spec.Suspend).Class == "bad" {
					row.Unhealthy++
				}
			}
			for _, sb := range subs {
				if healthOf(sb.Status.Conditions, sb.Spec.Suspend).Class == "bad" {
					row.Unhealthy++
				}
			}
			rows[i] = row
		}()
	}
	wg.Wait()
	// Namespaces with hookline objects first; the rest are listed for completeness.
	sort.SliceStable(rows, func(i, j int) bool {
		return rows[i].Endpoints+rows[i].Subscriptions > 0 && rows[j].Endpoints+rows[j].Subscriptions == 0
	})
	p.Data = rows
	s.render(w, http.StatusOK, "namespaces", p)
}

// --- one namespace ----------------------------------------------------------------

type endpointRow struct {
	Name, URL     string
	Health        Health
	Suspended     bool
	Disabled      bool
	Delivery      hooklinev1.DeliveryStatus
	NextRotation  string
	Subscriptions int
}

type subscriptionRow struct {
	Name, Endpoint string
	Types          string
	Health         Health
	Suspended      bool
	Delivery       hooklinev1.DeliveryStatus
}

func (s *Server) namespacePage(w http.ResponseWriter, r *http.Request) {
	ns, _, err := target(r)
	if err != nil {
		s.fail(w, "", err)
		return
	}
	ctx := r.Context()
	var eps hooklinev1.WebhookEndpointList
	var subs hooklinev1.SubscriptionList
	p := page{Title: "Namespace " + ns, Namespace: ns}
	if err := s.kube.List(ctx, &eps, client.InNamespace(ns)); err != nil {
		p.Notes = append(p.Notes, "Endpoints: "+err.Error())
	}
	if err := s.kube.List(ctx, &subs, client.InNamespace(ns)); err != nil {
		p.Notes = append(p.Notes, "Subscriptions: "+err.Error())
	}
	perEndpoint := map[string]int{}
	var srows []subscriptionRow
	for _, sb := range subs.Items {
		perEndpoint[sb.Spec.EndpointRef.Name]++
		row := subscriptionRow{Name: sb.Name, Endpoint: sb.Spec.EndpointRef.Name, Types: strings.Join(sb.Spec.EventTypes, ", "),
			Health: healthOf(sb.Status.Conditions, sb.Spec.Suspend), Suspended: sb.Spec.Suspend}
		if sb.Status.Delivery != nil {
			row.Delivery = *sb.Status.Delivery
		}
		srows = append(srows, row)
	}
	var erows []endpointRow
	for _, e := range eps.Items {
		row := endpointRow{Name: e.Name, URL: e.Spec.URL, Health: healthOf(e.Status.Conditions, e.Spec.Suspend),
			Suspended: e.Spec.Suspend, Disabled: isDisabled(e.Status.Conditions), Subscriptions: perEndpoint[e.Name]}
		if e.Status.Delivery != nil {
			row.Delivery = *e.Status.Delivery
		}
		row.NextRotation = nextRotation(&e)
		erows = append(erows, row)
	}
	p.Data = struct {
		Endpoints     []endpointRow
		Subscriptions []subscriptionRow
	}{erows, srows}
	s.render(w, http.StatusOK, "namespace", p)
}

func nextRotation(e *hooklinev1.WebhookEndpoint) string {
	switch {
	case e.Status.Signing != nil && e.Status.Signing.NextRotationTime != nil:
		return metaTime(e.Status.Signing.NextRotationTime)
	case e.Spec.Signing != nil && e.Spec.Signing.SecretRef != nil:
		return "managed by you (spec.signing.secretRef)"
	}
	return "not scheduled"
}

// --- one endpoint -----------------------------------------------------------------

type endpointData struct {
	Endpoint      *hooklinev1.WebhookEndpoint
	Health        Health
	Circuit       string
	Disabled      bool
	Subscriptions []subscriptionRow
	Chart         Chart
	Latency       Latency
	LastFailure   *hooklinev1.DeliveryFailure
	// LastFailed is the newest failed attempt of the attempt logs, with the receiver's
	// answer.
	LastFailed   *Attempt
	Attempts     []Attempt
	TestSends    []Attempt
	NextRotation string
	CanTest      Permission
	CanEnable    Permission
	CanRotate    Permission
}

func (s *Server) endpointPage(w http.ResponseWriter, r *http.Request) {
	ns, name, err := target(r)
	if err != nil {
		s.fail(w, "", err)
		return
	}
	ctx := r.Context()
	var ep hooklinev1.WebhookEndpoint
	if err := s.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ep); err != nil {
		s.fail(w, ns, fmt.Errorf("reading WebhookEndpoint %s/%s: %w", ns, name, err))
		return
	}
	p := page{Title: "Endpoint " + name, Namespace: ns}
	d := endpointData{Endpoint: &ep, Health: healthOf(ep.Status.Conditions, ep.Spec.Suspend), Circuit: circuitOf(ep.Status.Conditions),
		Disabled: isDisabled(ep.Status.Conditions), NextRotation: nextRotation(&ep)}
	if ep.Status.Delivery != nil {
		d.LastFailure = ep.Status.Delivery.LastFailure
	}
	var subs hooklinev1.SubscriptionList
	if err := s.kube.List(ctx, &subs, client.InNamespace(ns)); err != nil {
		p.Notes = append(p.Notes, "Subscriptions: "+err.Error())
	}
	var mine []hooklinev1.Subscription
	for _, sb := range subs.Items {
		if sb.Spec.EndpointRef.Name == name {
			mine = append(mine, sb)
			row := subscriptionRow{Name: sb.Name, Endpoint: name, Types: strings.Join(sb.Spec.EventTypes, ", "),
				Health: healthOf(sb.Status.Conditions, sb.Spec.Suspend), Suspended: sb.Spec.Suspend}
			if sb.Status.Delivery != nil {
				row.Delivery = *sb.Status.Delivery
			}
			d.Subscriptions = append(d.Subscriptions, row)
		}
	}
	// The attempt logs of the endpoint's subscriptions make its chart and percentiles.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sb := range mine {
		wg.Add(1)
		go func() {
			defer wg.Done()
			list, err := s.disp.Attempts(ctx, ns, sb.Name, 500)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				p.Notes = append(p.Notes, note("Attempts of subscription "+sb.Name, err))
				return
			}
			for i := range list {
				list[i].Subscription = sb.Name
			}
			d.Attempts = append(d.Attempts, list...)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		list, err := s.disp.EndpointAttempts(ctx, ns, name, 10)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			p.Notes = append(p.Notes, note("Test sends", err))
			return
		}
		d.TestSends = list
	}()
	perms := s.can(ctx, ns, name, server.SendTest, rightPatchEndpoint)
	wg.Wait()
	sort.Slice(d.Attempts, func(i, j int) bool { return d.Attempts[i].Time.After(d.Attempts[j].Time) })
	now := s.opts.Clock.Now()
	d.Chart = deliveryChart(d.Attempts, now, time.Hour, 12)
	d.Latency = latencyPercentiles(d.Attempts)
	for i := range d.Attempts {
		if !d.Attempts[i].OK() {
			d.LastFailed = &d.Attempts[i]
			break
		}
	}
	if len(d.Attempts) > 20 {
		d.Attempts = d.Attempts[:20]
	}
	d.CanTest = perms[0]
	d.CanEnable, d.CanRotate = perms[1], perms[1]
	if d.CanEnable.Allowed && !d.Disabled {
		d.CanEnable = Permission{Reason: "The endpoint is not disabled."}
	}
	if d.CanRotate.Allowed && ep.Spec.Signing != nil && ep.Spec.Signing.SecretRef != nil {
		d.CanRotate = Permission{Reason: "The signing key is yours (spec.signing.secretRef): rotate it in its Secret."}
	}
	p.Data = d
	s.render(w, http.StatusOK, "endpoint", p)
}

// --- one subscription -------------------------------------------------------------

type subscriptionData struct {
	Subscription *hooklinev1.Subscription
	Health       Health
	Attempts     []Attempt
	AttemptCount int
	Status       string // the attempt filter: "", "ok", "failed"
	EventID      string // the dead-letter search
	Dead         []DeadLetter
	DeadCount    int
	AttemptsErr  string
	DeadErr      string
	CanReplay    Permission
}

func (s *Server) subscriptionPage(w http.ResponseWriter, r *http.Request) {
	ns, name, err := target(r)
	if err != nil {
		s.fail(w, "", err)
		return
	}
	ctx := r.Context()
	var sb hooklinev1.Subscription
	if err := s.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sb); err != nil {
		s.fail(w, ns, fmt.Errorf("reading Subscription %s/%s: %w", ns, name, err))
		return
	}
	q := r.URL.Query()
	d := subscriptionData{Subscription: &sb, Health: healthOf(sb.Status.Conditions, sb.Spec.Suspend),
		Status: q.Get("status"), EventID: strings.TrimSpace(q.Get("event"))}
	var wg sync.WaitGroup
	var attempts []Attempt
	var dead []DeadLetter
	var aErr, dErr error
	wg.Add(2)
	go func() { defer wg.Done(); attempts, aErr = s.disp.Attempts(ctx, ns, name, 200) }()
	go func() { defer wg.Done(); dead, dErr = s.disp.Dead(ctx, ns, name, 100) }()
	d.CanReplay = s.can(ctx, ns, name, server.Replay)[0]
	wg.Wait()
	if aErr != nil {
		d.AttemptsErr = note("Attempt log", aErr)
	}
	if dErr != nil {
		d.DeadErr = note("Dead letters", dErr)
	}
	d.AttemptCount = len(attempts)
	for _, a := range attempts {
		a.Subscription = name
		if (d.Status == "ok" && !a.OK()) || (d.Status == "failed" && a.OK()) {
			continue
		}
		d.Attempts = append(d.Attempts, a)
	}
	d.DeadCount = len(dead)
	for _, dl := range dead {
		if d.EventID != "" && !strings.Contains(dl.Event.ID, d.EventID) {
			continue
		}
		d.Dead = append(d.Dead, dl)
	}
	s.render(w, http.StatusOK, "subscription", page{Title: "Subscription " + name, Namespace: ns, Data: d})
}

// --- events -----------------------------------------------------------------------

type eventsData struct {
	Items             []Event
	Type, Since, Next string
	Order             string
}

func (s *Server) eventsPage(w http.ResponseWriter, r *http.Request) {
	ns, _, err := target(r)
	if err != nil {
		s.fail(w, "", err)
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
	s.render(w, http.StatusOK, "events", p)
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
		s.fail(w, "", err)
		return
	}
	id := r.PathValue("id")
	ev, err := s.disp.Event(r.Context(), ns, id)
	if err != nil {
		s.fail(w, ns, err)
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
	s.render(w, http.StatusOK, "event", p)
}

// --- formatting -------------------------------------------------------------------

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh", int(d.Hours()))
	default:
		s = fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

func metaTime(t *metav1.Time) string {
	if t == nil {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z") + " (" + ago(time.Now(), t.Time) + ")"
}

// excerpt cuts s to n bytes on a rune boundary.
func excerpt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + " …"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// parseLocal reads a time from a form: RFC 3339, or the datetime-local input's
// 2006-01-02T15:04 taken as UTC (the dashboard shows times in UTC).
func parseLocal(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("want a time such as 2026-11-26T20:00 (UTC), got %q", v)
}
