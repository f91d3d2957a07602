package registry_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/signing"
)

// TestStaticOAuth2Endpoint resolves spec.auth.oauth2 from its Secret and delivers with the
// token the loopback authorization server issues for that secret.
func TestStaticOAuth2Endpoint(t *testing.T) {
	var tokenRequests atomic.Int64
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		_ = r.ParseForm()
		id, secret, _ := r.BasicAuth()
		if id != "hookline" || secret != "cl13nt" || r.PostForm.Get("audience") != "orders" || r.PostForm.Get("scope") != "a b" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "acc3ss", "token_type": "bearer", "expires_in": 300})
	}))
	defer tokens.Close()
	rcv := newReceiver(t)
	ks := signing.KeySet{Current: newKey("k1", t0)}

	ep := endpointObj("a", "ep", rcv.URL+"/hook")
	ep.Spec.Auth = &hooklinev1.EndpointAuth{OAuth2: &hooklinev1.OAuth2Auth{
		TokenURL: tokens.URL + "/token", ClientID: "hookline", ClientSecret: hooklinev1.SecretKeyRef{Name: "client", Key: "secret"},
		Scopes: []string{"a", "b"}, Audience: "orders",
	}}
	missing := endpointObj("a", "missing", rcv.URL+"/hook")
	missing.Spec.Auth = &hooklinev1.EndpointAuth{OAuth2: &hooklinev1.OAuth2Auth{
		TokenURL: tokens.URL + "/token", ClientID: "hookline", ClientSecret: hooklinev1.SecretKeyRef{Name: "client", Key: "other"},
	}}
	reg, err := registry.NewStatic(registry.StaticObjects{
		Endpoints: []hooklinev1.WebhookEndpoint{ep, missing},
		Secrets: []corev1Secret{
			registry.SigningSecret("a", "ep", ks), registry.SigningSecret("a", "missing", ks),
			secretObj("a", "client", map[string]string{"secret": "cl13nt\n"}),
		},
	}, registry.Options{SSRF: loopback()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	if e := reg.Endpoint("a", "missing"); e.Ready || e.Reason != hooklinev1.ReasonSecretInvalid || !strings.Contains(e.Message, `spec.auth.oauth2.clientSecret`) {
		t.Errorf("missing key: ready=%v %s: %s", e.Ready, e.Reason, e.Message)
	}
	e := reg.Endpoint("a", "ep")
	if !e.Ready {
		t.Fatalf("not ready: %s", e.Message)
	}
	res := delivery.Send(context.Background(), e.Target, delivery.Message{ID: "msg_1", WebhookID: "msg_1", Type: "a.b", Time: t0, Data: []byte(`{}`)}, time.Now())
	if res.Verdict != delivery.Delivered {
		t.Fatalf("send: %+v", res)
	}
	req, _ := rcv.last()
	if got := req.Header.Get("Authorization"); got != "Bearer acc3ss" || tokenRequests.Load() != 1 {
		t.Errorf("Authorization %q after %d token requests", got, tokenRequests.Load())
	}
}

// TestStaticProxySelection: the installation's proxy carries the deliveries of endpoints
// without spec.proxy; spec.proxy.direct bypasses it; spec.proxy.url replaces it; a proxy
// URL with a path is refused with a reason.
func TestStaticProxySelection(t *testing.T) {
	// Plain http:// receivers go through an HTTP proxy as absolute-form requests, which
	// this forward proxy counts and passes on.
	forward := func(count *atomic.Int64) *httptest.Server {
		return httptest.NewServer(rewriteHost(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			count.Add(1)
			out, _ := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), r.Body) //nolint:gosec // G704: a test forward proxy; forwarding to the requested URL is its job.
			out.Header = r.Header.Clone()
			resp, err := http.DefaultTransport.RoundTrip(out)
			if err != nil {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
		}), "receiver.test", "127.0.0.1"))
	}
	var viaInstall, viaOwn atomic.Int64
	install, own := forward(&viaInstall), forward(&viaOwn)
	defer install.Close()
	defer own.Close()
	rcv := newReceiver(t)
	// The receiver is reached by a name only the proxies resolve: "localhost" and
	// loopback addresses never use a proxy.
	target := strings.Replace(rcv.URL, "127.0.0.1", "receiver.test", 1)

	ks := signing.KeySet{Current: newKey("k1", t0)}
	def := endpointObj("a", "default", target)
	direct := endpointObj("a", "direct", target)
	direct.Spec.Proxy = &hooklinev1.EndpointProxy{Direct: true}
	ownEp := endpointObj("a", "own", target)
	ownEp.Spec.Proxy = &hooklinev1.EndpointProxy{URL: own.URL}
	bad := endpointObj("a", "bad", target)
	bad.Spec.Proxy = &hooklinev1.EndpointProxy{URL: own.URL + "/path"}
	eps := []hooklinev1.WebhookEndpoint{def, direct, ownEp, bad}
	var secrets []corev1Secret
	for _, ep := range eps {
		secrets = append(secrets, registry.SigningSecret("a", ep.Name, ks))
	}
	installURL, _ := url.Parse(install.URL)
	reg, err := registry.NewStatic(registry.StaticObjects{Endpoints: eps, Secrets: secrets},
		registry.Options{SSRF: loopback(), Proxy: &delivery.Proxy{URL: installURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	if e := reg.Endpoint("a", "bad"); e.Ready || e.Reason != registry.ReasonInvalidConfiguration || !strings.Contains(e.Message, "proxy URL must be only scheme://host:port") {
		t.Errorf("bad proxy: ready=%v %s: %s", e.Ready, e.Reason, e.Message)
	}
	send := func(name string) delivery.Result {
		e := reg.Endpoint("a", name)
		if !e.Ready {
			t.Fatalf("%s not ready: %s", name, e.Message)
		}
		return delivery.Send(context.Background(), e.Target, delivery.Message{ID: "msg_1", WebhookID: "msg_1", Type: "a.b", Time: t0, Data: []byte(`{}`)}, time.Now())
	}
	if res := send("default"); res.Verdict != delivery.Delivered || viaInstall.Load() != 1 {
		t.Errorf("default: %+v, %d through the installation's proxy", res, viaInstall.Load())
	}
	if res := send("own"); res.Verdict != delivery.Delivered || viaOwn.Load() != 1 || viaInstall.Load() != 1 {
		t.Errorf("own: %+v, %d through its own proxy, %d through the installation's", res, viaOwn.Load(), viaInstall.Load())
	}
	// Without a proxy nobody resolves receiver.test: the attempt fails, and no proxy saw it.
	if res := send("direct"); res.Verdict != delivery.Retry || viaInstall.Load() != 1 || viaOwn.Load() != 1 {
		t.Errorf("direct: %+v, proxies saw %d and %d", res, viaInstall.Load(), viaOwn.Load())
	}
}

// rewriteHost makes a proxy resolve one made-up name to an address, as a proxy's own DNS
// would.
func rewriteHost(h http.Handler, name, addr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Hostname() == name {
			r.URL.Host = strings.Replace(r.URL.Host, name, addr, 1)
		}
		h.ServeHTTP(w, r)
	})
}
