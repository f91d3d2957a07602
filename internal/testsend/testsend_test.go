package testsend_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/catalog"
	"github.com/hookline/hookline/internal/queue/queuetest"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/server"
	"github.com/hookline/hookline/internal/signing"
	"github.com/hookline/hookline/internal/ssrf"
	"github.com/hookline/hookline/internal/testsend"
)

// receiver is a loopback HTTP server that answers with status and keeps what it got.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
	bodies  [][]byte
}

func newReceiver(t *testing.T, status int, answer string) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.headers, r.bodies = append(r.headers, req.Header.Clone()), append(r.bodies, b)
		r.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(r.Close)
	return r
}

func endpoint(ns, name, url string) hooklinev1.WebhookEndpoint {
	return hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name), Generation: 1},
		Spec:       hooklinev1.WebhookEndpointSpec{URL: url, AllowInsecureHTTP: true},
	}
}

type fixture struct {
	api      http.Handler
	secret   string
	healthy  *receiver
	failing  *receiver
	deadAddr string
}

func setup(t *testing.T) *fixture {
	f := &fixture{healthy: newReceiver(t, http.StatusOK, `{"ok":true}`), failing: newReceiver(t, http.StatusInternalServerError, strings.Repeat("boom ", 1000))}
	// An address nothing listens on: a listener opened and closed.
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.deadAddr = ln.Addr().String()
	_ = ln.Close()

	secret, err := signing.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	f.secret = secret
	ks := signing.KeySet{Current: signing.Key{ID: "k1", Secret: secret, CreatedAt: time.Now().Add(-time.Hour)}}
	objs := registry.StaticObjects{}
	for name, url := range map[string]string{"healthy": f.healthy.URL, "failing": f.failing.URL, "unreachable": "http://" + f.deadAddr + "/hooks"} {
		objs.Endpoints = append(objs.Endpoints, endpoint("shop", name, url))
		objs.Secrets = append(objs.Secrets, registry.SigningSecret("shop", name, ks))
	}
	policy, err := ssrf.ParsePolicy([]string{"127.0.0.0/8"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.NewStatic(objs, registry.Options{SSRF: policy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	cat := catalog.NewStatic([]hooklinev1.EventType{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "invoice-paid", Generation: 1},
		Spec: hooklinev1.EventTypeSpec{Type: "invoice.paid",
			Schema:  &apiextensionsv1.JSON{Raw: []byte(`{"type":"object","required":["invoice"]}`)},
			Example: &apiextensionsv1.JSON{Raw: []byte(`{"invoice":"in_123","amount":1999}`)}},
	}})
	q := queuetest.Open(t, nil)
	h, err := server.NewHandler(server.Options{
		Publisher: discard{}, Authorizer: server.AllowAll{},
		Tests: &testsend.Sender{Endpoints: reg, Catalog: cat, Log: q},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.api = h
	return f
}

type discard struct{}

func (discard) Publish(context.Context, server.Event) (server.PublishResult, error) {
	return server.PublishResult{}, nil
}

func call(t *testing.T, h http.Handler, method, path string, want int, out any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, path, nil))
	if rec.Code != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, rec.Code, want, rec.Body)
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s: %v", rec.Body, err)
		}
	}
}

type attempts struct {
	Items []struct {
		Attempt    int    `json:"attempt"`
		Test       bool   `json:"test"`
		StatusCode int    `json:"statusCode"`
		Error      string `json:"error"`
		Response   string `json:"response"`
	} `json:"items"`
}

func TestSendTestHealthy(t *testing.T) {
	f := setup(t)
	var res server.TestResult
	call(t, f.api, http.MethodPost, "/v1/namespaces/shop/webhookendpoints/healthy/test?type=invoice.paid", http.StatusOK, &res)
	if !res.Delivered || res.StatusCode != 200 || res.Response != `{"ok":true}` || res.DataFrom != "example" || res.LatencySeconds <= 0 {
		t.Fatalf("result = %+v", res)
	}
	f.healthy.mu.Lock()
	if len(f.healthy.bodies) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(f.healthy.bodies))
	}
	hdr, body := f.healthy.headers[0], f.healthy.bodies[0]
	f.healthy.mu.Unlock()
	// The receiver checks the signature as a Standard Webhooks receiver would.
	if err := signing.Verify([]string{f.secret}, hdr, body, time.Now(), 0); err != nil {
		t.Fatalf("the test send is not signed right: %v", err)
	}
	var env struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Type != "invoice.paid" || string(env.Data) != `{"invoice":"in_123","amount":1999}` {
		t.Fatalf("body %s: %v", body, err)
	}
	if hdr.Get("webhook-id") != res.WebhookID || !strings.HasPrefix(res.WebhookID, "test_") {
		t.Fatalf("webhook-id %q, result %q", hdr.Get("webhook-id"), res.WebhookID)
	}

	// A type the catalog does not list gets minimal data.
	call(t, f.api, http.MethodPost, "/v1/namespaces/shop/webhookendpoints/healthy/test", http.StatusOK, &res)
	if res.Type != server.DefaultTestEventType || res.DataFrom != "minimal" || string(res.Data) != "{}" {
		t.Fatalf("result = %+v", res)
	}

	var log attempts
	call(t, f.api, http.MethodGet, "/v1/namespaces/shop/webhookendpoints/healthy/attempts", http.StatusOK, &log)
	if len(log.Items) != 2 || !log.Items[0].Test || log.Items[0].Attempt != 0 || log.Items[0].StatusCode != 200 {
		t.Fatalf("attempt log = %+v", log)
	}
}

func TestSendTestFailing(t *testing.T) {
	f := setup(t)
	var res server.TestResult
	call(t, f.api, http.MethodPost, "/v1/namespaces/shop/webhookendpoints/failing/test?type=invoice.paid", http.StatusOK, &res)
	if res.Delivered || res.StatusCode != 500 || res.Error != "HTTP 500" || !res.ResponseTruncated || len(res.Response) != 1024 || !strings.HasPrefix(res.Response, "boom") {
		t.Fatalf("result = %+v", res)
	}
	var log attempts
	call(t, f.api, http.MethodGet, "/v1/namespaces/shop/webhookendpoints/failing/attempts", http.StatusOK, &log)
	if len(log.Items) != 1 || !log.Items[0].Test || log.Items[0].StatusCode != 500 || len(log.Items[0].Response) != 5000 {
		t.Fatalf("attempt log = %+v", log)
	}
}

func TestSendTestUnreachable(t *testing.T) {
	f := setup(t)
	var res server.TestResult
	call(t, f.api, http.MethodPost, "/v1/namespaces/shop/webhookendpoints/unreachable/test", http.StatusOK, &res)
	if res.Delivered || res.StatusCode != 0 || !strings.Contains(res.Error, "connection refused") {
		t.Fatalf("result = %+v", res)
	}
	var log attempts
	call(t, f.api, http.MethodGet, "/v1/namespaces/shop/webhookendpoints/unreachable/attempts", http.StatusOK, &log)
	if len(log.Items) != 1 || !log.Items[0].Test || !strings.Contains(log.Items[0].Error, "connection refused") {
		t.Fatalf("attempt log = %+v", log)
	}
}

func TestSendTestRefusals(t *testing.T) {
	f := setup(t)
	call(t, f.api, http.MethodPost, "/v1/namespaces/shop/webhookendpoints/absent/test", http.StatusNotFound, nil)
	call(t, f.api, http.MethodPost, "/v1/namespaces/shop/webhookendpoints/healthy/test?type=invoice.*", http.StatusBadRequest, nil)
	call(t, f.api, http.MethodPost, "/v1/namespaces/shop/webhookendpoints/healthy/test?format=xml", http.StatusBadRequest, nil)
	call(t, f.api, http.MethodGet, "/v1/namespaces/shop/webhookendpoints/healthy/test", http.StatusMethodNotAllowed, nil)
	f.healthy.mu.Lock()
	defer f.healthy.mu.Unlock()
	if len(f.healthy.bodies) != 0 {
		t.Fatalf("a refused request sent %d events", len(f.healthy.bodies))
	}
}

func TestSendTestCloudEventsFormats(t *testing.T) {
	f := setup(t)
	var res server.TestResult
	call(t, f.api, http.MethodPost, "/v1/namespaces/shop/webhookendpoints/healthy/test?type=invoice.paid&format=CloudEventsBinary", http.StatusOK, &res)
	call(t, f.api, http.MethodPost, "/v1/namespaces/shop/webhookendpoints/healthy/test?type=invoice.paid&format=CloudEventsStructured", http.StatusOK, &res)
	f.healthy.mu.Lock()
	defer f.healthy.mu.Unlock()
	if len(f.healthy.headers) != 2 {
		t.Fatalf("receiver got %d requests, want 2", len(f.healthy.headers))
	}
	if h := f.healthy.headers[0]; h.Get("ce-type") != "invoice.paid" || h.Get("ce-specversion") != "1.0" || string(f.healthy.bodies[0]) != `{"invoice":"in_123","amount":1999}` {
		t.Fatalf("binary: headers %v body %s", h, f.healthy.bodies[0])
	}
	if h := f.healthy.headers[1]; !strings.HasPrefix(h.Get("Content-Type"), "application/cloudevents+json") || !strings.Contains(string(f.healthy.bodies[1]), `"specversion":"1.0"`) {
		t.Fatalf("structured: headers %v body %s", h, f.healthy.bodies[1])
	}
	for i := range 2 {
		if err := signing.Verify([]string{f.secret}, f.healthy.headers[i], f.healthy.bodies[i], time.Now(), 0); err != nil {
			t.Fatalf("request %d not signed right: %v", i, err)
		}
	}
}
