package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hookline/hookline/internal/server"
)

// Dispatcher calls the dispatcher's admin API with the user's bearer token; the
// dispatcher authorises each call with TokenReview and SubjectAccessReview.
type Dispatcher struct {
	// URL is the dispatcher's base URL, e.g. http://127.0.0.1:8080 (a port-forward).
	URL string
	// Token is the user's bearer token, from the kubeconfig or --token-file.
	Token string
	HTTP  *http.Client
}

// APIError is a refusal or failure the dispatcher answered.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("the dispatcher answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Attempt is one entry of an attempt log.
type Attempt struct {
	Time           time.Time `json:"time"`
	Attempt        int       `json:"attempt"`
	StatusCode     int       `json:"statusCode"`
	LatencySeconds float64   `json:"latencySeconds"`
	Error          string    `json:"error"`
	Response       string    `json:"response"`
	EventID        string    `json:"eventId"`
	Test           bool      `json:"test"`
	// RequestHeaders are the headers sent, credentials and signatures masked by the
	// dispatcher; none for attempts recorded before it kept them.
	RequestHeaders []server.AttemptHeader `json:"requestHeaders"`
	// Subscription is set when attempts of several subscriptions are shown together.
	Subscription string `json:"-"`
	// Namespace is set where an attempt links to its own view.
	Namespace string `json:"-"`
}

// TimeKey is the attempt's time as its view's address names it: the attempt log has no
// ids, so an attempt is found by its time, number and event.
func (a Attempt) TimeKey() string { return a.Time.UTC().Format(time.RFC3339Nano) }

// OK says the receiver accepted the attempt.
func (a Attempt) OK() bool { return a.StatusCode >= 200 && a.StatusCode < 300 && a.Error == "" }

// DeadLetter is one dead delivery, in the dispatcher's own wire form.
type DeadLetter = server.DeadLetter

// Event is one retained event.
type Event struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Time       time.Time       `json:"time"`
	Data       json.RawMessage `json:"data"`
	RetainedAt time.Time       `json:"retainedAt"`
}

// TestResult is what a receiver answered a test send.
type TestResult struct {
	EventID        string  `json:"eventId"`
	Type           string  `json:"type"`
	DataFrom       string  `json:"dataFrom"`
	Delivered      bool    `json:"delivered"`
	StatusCode     int     `json:"statusCode"`
	LatencySeconds float64 `json:"latencySeconds"`
	Error          string  `json:"error"`
	Response       string  `json:"response"`
}

func subPath(ns, name string) string {
	return "/v1/namespaces/" + url.PathEscape(ns) + "/subscriptions/" + url.PathEscape(name)
}

// Attempts reads a subscription's attempt log, newest first.
func (d *Dispatcher) Attempts(ctx context.Context, ns, name string, limit int) ([]Attempt, error) {
	var out struct{ Items []Attempt }
	err := d.call(ctx, http.MethodGet, fmt.Sprintf("%s/attempts?limit=%d", subPath(ns, name), limit), &out)
	return out.Items, err
}

// EndpointAttempts reads an endpoint's log of test sends.
func (d *Dispatcher) EndpointAttempts(ctx context.Context, ns, name string, limit int) ([]Attempt, error) {
	var out struct{ Items []Attempt }
	err := d.call(ctx, http.MethodGet, fmt.Sprintf("/v1/namespaces/%s/webhookendpoints/%s/attempts?limit=%d",
		url.PathEscape(ns), url.PathEscape(name), limit), &out)
	return out.Items, err
}

// Dead reads a subscription's dead letters, oldest first.
func (d *Dispatcher) Dead(ctx context.Context, ns, name string, limit int) ([]DeadLetter, error) {
	var out struct{ Items []DeadLetter }
	err := d.call(ctx, http.MethodGet, fmt.Sprintf("%s/dead?limit=%d", subPath(ns, name), limit), &out)
	return out.Items, err
}

// Replay sends the dead letters that died between from and to (zero: unbounded) back.
func (d *Dispatcher) Replay(ctx context.Context, ns, name string, from, to time.Time) (int, error) {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339))
	}
	p := subPath(ns, name) + "/replay"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out struct{ Replayed int }
	err := d.call(ctx, http.MethodPost, p, &out)
	return out.Replayed, err
}

// Resend sends one dead letter back.
func (d *Dispatcher) Resend(ctx context.Context, ns, name string, seq uint64) error {
	return d.call(ctx, http.MethodPost, fmt.Sprintf("%s/deliveries/%d/resend", subPath(ns, name), seq), nil)
}

// SendTest sends a sample event to an endpoint now.
func (d *Dispatcher) SendTest(ctx context.Context, ns, name, typ string) (TestResult, error) {
	p := fmt.Sprintf("/v1/namespaces/%s/webhookendpoints/%s/test", url.PathEscape(ns), url.PathEscape(name))
	if typ != "" {
		p += "?type=" + url.QueryEscape(typ)
	}
	var out TestResult
	err := d.call(ctx, http.MethodPost, p, &out)
	return out, err
}

// Events lists retained events, newest first; next continues the listing.
func (d *Dispatcher) Events(ctx context.Context, ns string, q url.Values) (items []Event, next string, err error) {
	var out struct {
		Items []Event
		Next  string
	}
	err = d.call(ctx, http.MethodGet, "/v1/namespaces/"+url.PathEscape(ns)+"/events?"+q.Encode(), &out)
	return out.Items, out.Next, err
}

// Event reads one retained event.
func (d *Dispatcher) Event(ctx context.Context, ns, id string) (Event, error) {
	var out Event
	err := d.call(ctx, http.MethodGet, "/v1/namespaces/"+url.PathEscape(ns)+"/events/"+url.PathEscape(id), &out)
	return out, err
}

func (d *Dispatcher) call(ctx context.Context, method, path string, out any) error {
	// G704: the URL is the dispatcher the user named (--server); paths are built from
	// validated names.
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(d.URL, "/")+path, bytes.NewReader(nil)) //nolint:gosec // G704: see above
	if err != nil {
		return err
	}
	switch u, ok := userOf(ctx); {
	case d.Token != "":
		req.Header.Set("Authorization", "Bearer "+d.Token)
	case ok: // served by the dispatcher: the proxied user's token
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	hc := d.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := hc.Do(req) //nolint:gosec // G704: see above
	if err != nil {
		return fmt.Errorf("cannot reach the dispatcher at %s (%w); from outside the cluster, "+
			"kubectl port-forward -n <namespace> svc/<dispatcher service> 8080 and --server http://127.0.0.1:8080", d.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("reading the dispatcher's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Message string }
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		return &APIError{Status: resp.StatusCode, Message: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding the dispatcher's answer: %w", err)
	}
	return nil
}
