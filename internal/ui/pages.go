package ui

import (
	"bytes"
	"context"
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

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.CSRF = s.csrfToken(r)
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
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ns string, err error) {
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
	s.render(w, r, status, "error", page{Title: http.StatusText(status), Namespace: ns, Data: err.Error()})
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
	s.render(w, r, http.StatusOK, "namespaces", p)
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
		s.fail(w, r, "", err)
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
	s.render(w, r, http.StatusOK, "namespace", p)
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

// --- one subscription -------------------------------------------------------------

type subscriptionData struct {
	Subscription *hooklinev1.Subscription
	Health       Health
	Attempts     []Attempt
	AttemptCount int
	Status       string // the attempt filter: "", "ok", "failed"
	EventID      string // the search by event id, of dead letters and attempts
	Dead         []DeadLetter
	DeadCount    int
	AttemptsErr  string
	DeadErr      string
	CanReplay    Permission
}

func (s *Server) subscriptionPage(w http.ResponseWriter, r *http.Request) {
	ns, name, err := target(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	ctx := r.Context()
	var sb hooklinev1.Subscription
	if err := s.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sb); err != nil {
		s.fail(w, r, ns, fmt.Errorf("reading Subscription %s/%s: %w", ns, name, err))
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
		a.Subscription, a.Namespace = name, ns
		if (d.Status == "ok" && !a.OK()) || (d.Status == "failed" && a.OK()) ||
			(d.EventID != "" && !strings.Contains(a.EventID, d.EventID)) {
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
	s.render(w, r, http.StatusOK, "subscription", page{Title: "Subscription " + name, Namespace: ns, Data: d})
}
