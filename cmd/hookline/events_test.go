package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDispatcher records the requests the CLI sends and answers with the
// pages of a listing.
type fakeDispatcher struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (f *fakeDispatcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Clone(r.Context()))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/events") && r.URL.Query().Get("cursor") == "":
		_, _ = w.Write([]byte(`{"items":[{"id":"e3"},{"id":"e2"}],"next":"n2"}`))
	case strings.HasSuffix(r.URL.Path, "/events"):
		_, _ = w.Write([]byte(`{"items":[{"id":"e1"}]}`))
	case strings.HasSuffix(r.URL.Path, "/recover"):
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"id":"` + r.Header.Get("Idempotency-Key") + `","phase":"Running"}`))
	default:
		_, _ = w.Write([]byte(`{"id":"e1"}`))
	}
}

func kubeconfigWithToken(t *testing.T, token string) string {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	// The API server's address refuses connections: the CRD check is
	// skipped, the dispatcher's answer is what counts.
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: ` + token + `}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return kc
}

func TestEventsAndRecoverCommands(t *testing.T) {
	fd := &fakeDispatcher{}
	srv := httptest.NewServer(fd)
	defer srv.Close()
	kc := kubeconfigWithToken(t, "user-token")

	if err := runEvents([]string{"list", "--server", srv.URL, "--kubeconfig", kc, "-n", "shop", "--type", "invoice.paid",
		"--since", "2026-11-26T20:00:00Z", "--limit", "2", "--order", "newest", "--all"}); err != nil {
		t.Fatal(err)
	}
	if err := runEvents([]string{"get", "--server", srv.URL, "--kubeconfig", kc, "-n", "shop", "e1"}); err != nil {
		t.Fatal(err)
	}
	if err := runRecover([]string{"--server", srv.URL, "--kubeconfig", kc, "-n", "shop", "--subscription", "invoices",
		"--since", "2026-11-26T20:00:00Z", "--id", "req-1"}); err != nil {
		t.Fatal(err)
	}
	fd.mu.Lock()
	reqs := fd.reqs
	fd.mu.Unlock()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 2 pages, a get and a recover", len(reqs))
	}
	want := []string{
		"GET /v1/namespaces/shop/events?limit=2&order=newest&since=2026-11-26T20%3A00%3A00Z&type=invoice.paid",
		"GET /v1/namespaces/shop/events?cursor=n2&limit=2&order=newest&since=2026-11-26T20%3A00%3A00Z&type=invoice.paid",
		"GET /v1/namespaces/shop/events/e1",
		"POST /v1/namespaces/shop/subscriptions/invoices/recover?since=2026-11-26T20%3A00%3A00Z",
	}
	for i, r := range reqs {
		if got := r.Method + " " + r.URL.RequestURI(); got != want[i] {
			t.Errorf("request %d: %s, want %s", i, got, want[i])
		}
		if auth := r.Header.Get("Authorization"); auth != "Bearer user-token" {
			t.Errorf("request %d sent Authorization %q, want the kubeconfig user's token", i, auth)
		}
	}
	if key := reqs[3].Header.Get("Idempotency-Key"); key != "req-1" {
		t.Errorf("recover sent Idempotency-Key %q", key)
	}

	for _, c := range []struct {
		run  func([]string) error
		args []string
		want string
	}{
		{runEvents, nil, "events list"},
		{runEvents, []string{"lst"}, "lst"},
		{runEvents, []string{"list", "--since", "yesterday"}, "--since"},
		{runEvents, []string{"list", "--limit", "0"}, "--limit"},
		{runEvents, []string{"list", "--order", "up"}, "--order"},
		{runEvents, []string{"get"}, "id"},
		{runRecover, []string{"--since", "1h"}, "--subscription"},
		{runRecover, []string{"--subscription", "x", "--since", "soon"}, "--since"},
	} {
		if err := c.run(c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.args, err, c.want)
		}
	}

	// A dispatcher that is not there is named with a way to reach it.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	err := runEvents([]string{"get", "--server", closed.URL, "--kubeconfig", kc, "--timeout", time.Second.String(), "e1"})
	if err == nil || !strings.Contains(err.Error(), "cannot reach the dispatcher") {
		t.Errorf("unreachable dispatcher: %v", err)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"2h":                   now.Add(-2 * time.Hour),
		"2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := parseWhen(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseWhen("-2h", now); err == nil {
		t.Error("a negative duration was accepted")
	}
}
