package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/queue/queuetest"
	"github.com/hookline/hookline/internal/server"
)

const ns = "team-a"

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// authorizerFunc is an Authorizer made of a function.
type authorizerFunc func(r *http.Request, namespace string, access server.Access) (server.Decision, error)

func (f authorizerFunc) Authorize(_ context.Context, r *http.Request, namespace string, access server.Access) (server.Decision, error) {
	return f(r, namespace, access)
}

// doJSON serves one request and decodes the JSON answer, checking its
// status.
func doJSON(t testing.TB, h http.Handler, method, target string, want int) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, target, nil))
	if rec.Code != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, target, rec.Code, want, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: content type %q", method, target, ct)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: %v in %s", method, target, err, rec.Body)
	}
	return out
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	q := queuetest.Open(t, nil)
	ctx := context.Background()
	invoices := queue.SubscriptionID{Namespace: ns, Name: "invoices", UID: "uid-invoices"}
	base := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	for i := 1; i <= 3; i++ {
		a := queue.Attempt{Time: base.Add(time.Duration(i) * time.Second), Attempt: i, StatusCode: 500 + i, Latency: 20 * time.Millisecond, Error: fmt.Sprintf("HTTP %d", 500+i), EventID: "order-1"}
		if i == 3 {
			a.Headers = "Content-Type: application/json\nWebhook-Signature: v1,**** v1a,****\nAuthorization: ****\n"
		}
		if err := q.RecordAttempt(ctx, invoices, a); err != nil {
			t.Fatal(err)
		}
	}
	var verbs []string
	api, err := server.NewHandler(server.Options{
		Publisher:  &recorder{},
		Deliveries: q,
		SubscriptionUID: func(_, name string) (string, bool) {
			return "uid-" + name, name == "invoices"
		},
		Authorizer: authorizerFunc(func(r *http.Request, namespace string, access server.Access) (server.Decision, error) {
			verbs = append(verbs, namespace+"/"+access.Name+":"+access.Verb)
			switch namespace {
			case "locked":
				return server.Decision{Authenticated: true, Reason: "user alice cannot get subscriptions in locked"}, nil
			case "anonymous":
				return server.Decision{Reason: "no token"}, nil
			}
			return server.Decision{Authenticated: true, Allowed: true}, nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}

	const sub = "/v1/namespaces/team-a/subscriptions/invoices"
	var got map[string]any
	eventually(t, "the attempt log", func() bool {
		as, err := q.RecentAttempts(ctx, invoices, 10)
		return err == nil && len(as) == 3
	})
	got = doJSON(t, api, http.MethodGet, sub+"/attempts?limit=2", http.StatusOK)
	items := got["items"].([]any)
	if len(items) != 2 {
		t.Fatalf("attempts %v, want the 2 newest", got)
	}
	first := items[0].(map[string]any)
	if first["attempt"] != float64(3) || first["statusCode"] != float64(503) || first["latencySeconds"] != 0.02 || first["eventId"] != "order-1" {
		t.Errorf("newest attempt %v, want attempt 3 first", first)
	}
	wantHeaders := []any{
		map[string]any{"name": "Content-Type", "value": "application/json"},
		map[string]any{"name": "Webhook-Signature", "value": "v1,**** v1a,****"},
		map[string]any{"name": "Authorization", "value": "****"},
	}
	if diff := cmp.Diff(wantHeaders, first["requestHeaders"]); diff != "" {
		t.Errorf("request headers of the newest attempt (-want +got):\n%s", diff)
	}
	if h, ok := items[1].(map[string]any)["requestHeaders"]; ok {
		t.Errorf("an attempt recorded without headers shows %v", h)
	}
	if got := doJSON(t, api, http.MethodGet, sub+"/dead", http.StatusOK); len(got["items"].([]any)) != 0 {
		t.Errorf("dead letters %v, want none", got)
	}
	if got := doJSON(t, api, http.MethodPost, sub+"/replay?from=2026-01-01T00:00:00Z", http.StatusOK); got["replayed"] != float64(0) {
		t.Errorf("replay %v", got)
	}
	if strings.Join(verbs, " ") != "team-a/invoices:get team-a/invoices:get team-a/invoices:replay" {
		t.Errorf("authorised %v", verbs)
	}

	for _, tc := range []struct {
		method, target string
		status         int
		reason, param  string
	}{
		{"GET", sub + "/attempts?limit=0", 400, "BadParameter", "limit"},
		{"GET", sub + "/attempts?limit=many", 400, "BadParameter", "limit"},
		{"GET", sub + "/dead?limit=101", 400, "BadParameter", "limit"},
		{"POST", sub + "/replay?from=yesterday", 400, "BadParameter", "from"},
		{"POST", sub + "/replay?to=2026-13-01T00:00:00Z", 400, "BadParameter", "to"},
		{"POST", sub + "/replay?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "BadParameter", "to"},
		{"GET", "/v1/namespaces/Team_A/subscriptions/invoices/attempts", 400, "BadParameter", "ns"},
		{"GET", "/v1/namespaces/team-a/subscriptions/In..valid/attempts", 400, "BadParameter", "name"},
		{"GET", "/v1/namespaces/locked/subscriptions/invoices/attempts", 403, "Forbidden", ""},
		{"GET", "/v1/namespaces/anonymous/subscriptions/invoices/dead", 401, "Unauthorized", ""},
		{"POST", sub + "/attempts", 405, "MethodNotAllowed", ""},
		{"GET", sub + "/replay", 405, "MethodNotAllowed", ""},
		{"GET", "/v1/namespaces/team-a/subscriptions/deleted/attempts", 404, "NotFound", "name"},
		{"POST", "/v1/namespaces/team-a/subscriptions/deleted/replay", 404, "NotFound", "name"},
		{"POST", sub + "/deliveries/12345/resend", 404, "NotFound", "id"},
		{"POST", sub + "/deliveries/first/resend", 400, "BadParameter", "id"},
		{"POST", sub + "/deliveries/0/resend", 400, "BadParameter", "id"},
		{"GET", sub + "/deliveries/1/resend", 405, "MethodNotAllowed", ""},
		{"GET", "/v1/namespaces/team-a/things", 404, "NotFound", ""},
	} {
		got := doJSON(t, api, tc.method, tc.target, tc.status)
		e, _ := got["error"].(map[string]any)
		if e["reason"] != tc.reason || e["status"] != float64(tc.status) || (e["parameter"] != nil && e["parameter"] != tc.param) ||
			(tc.param != "" && e["parameter"] != tc.param) || e["message"] == "" {
			t.Errorf("%s %s: error %v, want reason %s naming %q", tc.method, tc.target, got, tc.reason, tc.param)
		}
	}
}
