package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/ssrf"
)

// tokenServer is a loopback OAuth 2.0 authorization server for the client credentials
// grant: it checks the client's secret (in the Authorization header or the form, as the
// client chooses), issues numbered tokens, and remembers which it issued and revoked.
type tokenServer struct {
	*httptest.Server
	secret    atomic.Pointer[string]
	expiresIn atomic.Int64  // seconds; 0 leaves expires_in out
	hold      chan struct{} // when set, every request waits for it to close

	mu      sync.Mutex
	issued  map[string]bool
	n       int
	lastReq url.Values
}

func newTokenServer(t *testing.T, secret string) *tokenServer {
	ts := &tokenServer{issued: map[string]bool{}}
	ts.secret.Store(&secret)
	ts.expiresIn.Store(3600)
	ts.Server = httptest.NewServer(http.HandlerFunc(ts.handle))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) handle(w http.ResponseWriter, r *http.Request) {
	if ts.hold != nil {
		<-ts.hold
	}
	_ = r.ParseForm()
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	w.Header().Set("Content-Type", "application/json")
	if r.PostForm.Get("grant_type") != "client_credentials" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		return
	}
	if id != "hookline" || secret != *ts.secret.Load() {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprintf(w, `{"error":"invalid_client","error_description":"client authentication failed for %s"}`, secret)
		return
	}
	ts.mu.Lock()
	ts.n++
	tok := fmt.Sprintf("tok-%d", ts.n)
	ts.issued[tok] = true
	ts.lastReq = r.PostForm
	ts.mu.Unlock()
	body := map[string]any{"access_token": tok, "token_type": "Bearer"}
	if e := ts.expiresIn.Load(); e > 0 {
		body["expires_in"] = e
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (ts *tokenServer) revoke(tok string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.issued[tok] = false
}

func (ts *tokenServer) valid(tok string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued[tok]
}

func (ts *tokenServer) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.n
}

// protected answers 204 to a request with a token the token server issued and has not
// revoked, 401 otherwise.
func protected(ts *tokenServer) func(w http.ResponseWriter, r *http.Request, _ int) {
	return func(w http.ResponseWriter, r *http.Request, _ int) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !ts.valid(tok) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func oauthConfig(ts *tokenServer, secret string) *OAuth2 {
	return &OAuth2{TokenURL: ts.URL + "/oauth2/token", ClientID: "hookline", ClientSecret: secret}
}

func TestOAuth2TokenIsFetchedOnceAndSent(t *testing.T) {
	ts := newTokenServer(t, "s3cret")
	rc := newReceiver(t, protected(ts))
	rc.Start()
	p, _ := newTestPool(t)
	o := oauthConfig(ts, "s3cret")
	o.Scopes = []string{"webhooks.write", "webhooks.read"}
	o.Audience = "https://api.example.com/"
	o.Params = map[string]string{"resource": "urn:orders"}
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, Auth: Auth{OAuth2: o}})

	for range 3 {
		if res := Send(context.Background(), tg, testMessage(), t0); res.Verdict != Delivered {
			t.Fatalf("Send: %+v", res)
		}
	}
	if got := ts.count(); got != 1 {
		t.Errorf("token requests: %d, want 1 (the token is cached)", got)
	}
	if got := rc.last(t).Header.Get("Authorization"); got != "Bearer tok-1" {
		t.Errorf("Authorization: %q", got)
	}
	ts.mu.Lock()
	form := ts.lastReq
	ts.mu.Unlock()
	if form.Get("scope") != "webhooks.write webhooks.read" || form.Get("audience") != "https://api.example.com/" || form.Get("resource") != "urn:orders" {
		t.Errorf("token request form: %v", form)
	}
}

func TestOAuth2TokenRefreshedBeforeExpiry(t *testing.T) {
	ts := newTokenServer(t, "s3cret")
	ts.expiresIn.Store(60)
	rc := newReceiver(t, protected(ts))
	rc.Start()
	p, clk := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, Auth: Auth{OAuth2: oauthConfig(ts, "s3cret")}})

	send := func() {
		t.Helper()
		if res := Send(context.Background(), tg, testMessage(), t0); res.Verdict != Delivered {
			t.Fatalf("Send: %+v", res)
		}
	}
	send()
	// A 60s token is replaced 10s before it expires: still in use at 45s (with a second
	// of slack for the time the test takes) ...
	clk.Step(45 * time.Second)
	send()
	if got := ts.count(); got != 1 {
		t.Fatalf("token requests after 45s: %d, want 1", got)
	}
	// ... and replaced at 51s, before the receiver would refuse it.
	clk.Step(6 * time.Second)
	send()
	if got, auth := ts.count(), rc.last(t).Header.Get("Authorization"); got != 2 || auth != "Bearer tok-2" {
		t.Errorf("after 51s: %d token requests, Authorization %q; want 2 and tok-2", got, auth)
	}
}

func TestOAuth2ConcurrentDeliveriesShareOneFetch(t *testing.T) {
	ts := newTokenServer(t, "s3cret")
	ts.hold = make(chan struct{})
	rc := newReceiver(t, protected(ts))
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, Auth: Auth{OAuth2: oauthConfig(ts, "s3cret")}})

	const n = 20
	results := make(chan Result, n)
	for range n {
		go func() { results <- Send(context.Background(), tg, testMessage(), t0) }()
	}
	// Every delivery waits on the one fetch the token server holds.
	for {
		tg.oauth.mu.Lock()
		f := tg.oauth.inflight
		tg.oauth.mu.Unlock()
		if f != nil && f.waiters.Load() == n {
			break
		}
		runtimeGosched()
	}
	close(ts.hold)
	for range n {
		if res := <-results; res.Verdict != Delivered {
			t.Errorf("Send: %+v", res)
		}
	}
	if got := ts.count(); got != 1 {
		t.Errorf("token requests: %d, want 1 shared by %d deliveries", got, n)
	}
}

func TestOAuth2Receiver401ForcesOneRefresh(t *testing.T) {
	ts := newTokenServer(t, "s3cret")
	rc := newReceiver(t, protected(ts))
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, Auth: Auth{OAuth2: oauthConfig(ts, "s3cret")}})
	if res := Send(context.Background(), tg, testMessage(), t0); res.Verdict != Delivered {
		t.Fatalf("Send: %+v", res)
	}

	// The receiver stops accepting the cached token long before it expires: the attempt
	// fetches a new one and sends again, and is delivered.
	ts.revoke("tok-1")
	res := Send(context.Background(), tg, testMessage(), t0)
	if res.Verdict != Delivered || ts.count() != 2 || rc.requests.Load() != 3 {
		t.Fatalf("after revocation: %+v, %d token requests, %d receiver requests; want delivered, 2, 3", res, ts.count(), rc.requests.Load())
	}
	if got := rc.last(t).Header.Get("Authorization"); got != "Bearer tok-2" {
		t.Errorf("Authorization: %q", got)
	}

	// A receiver that refuses every token costs one refresh per attempt, not a loop.
	rc.respond = func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusUnauthorized) }
	res = Send(context.Background(), tg, testMessage(), t0)
	if res.Verdict != Retry || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("refusing receiver: %+v", res)
	}
	if ts.count() != 3 || rc.requests.Load() != 5 {
		t.Errorf("refusing receiver: %d token requests, %d receiver requests; want 3 and 5", ts.count(), rc.requests.Load())
	}
}

func TestOAuth2TokenServerDown(t *testing.T) {
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	_ = ln.Close()
	rc := newReceiver(t, nil)
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, Auth: Auth{OAuth2: &OAuth2{TokenURL: down + "/token?tenant=x", ClientID: "hookline", ClientSecret: "s3cret"}}})

	res := Send(context.Background(), tg, testMessage(), t0)
	var te *TokenError
	if res.Verdict != Retry || !errors.As(res.Err, &te) {
		t.Fatalf("Send: %+v", res)
	}
	msg := res.Err.Error()
	if !strings.HasPrefix(msg, "OAuth2 token from "+down+": ") || !strings.Contains(msg, "connection refused") || strings.Contains(msg, "tenant") {
		t.Errorf("error %q: want the token URL's scheme and host and the cause, not the query", msg)
	}
	if rc.requests.Load() != 0 {
		t.Error("a delivery went out without a token")
	}
}

func TestOAuth2ClientSecretRotation(t *testing.T) {
	ts := newTokenServer(t, "old-secret")
	ts.expiresIn.Store(60)
	rc := newReceiver(t, protected(ts))
	rc.Start()
	p, clk := newTestPool(t)
	old := newTestTarget(t, p, TargetConfig{URL: rc.URL, Auth: Auth{OAuth2: oauthConfig(ts, "old-secret")}})
	if res := Send(context.Background(), old, testMessage(), t0); res.Verdict != Delivered {
		t.Fatalf("Send: %+v", res)
	}

	// The authorization server rotates the client secret; the cached token keeps working
	// until it is due for refresh, then the old secret is refused with a clear reason.
	newSecret := "new-secret"
	ts.secret.Store(&newSecret)
	if res := Send(context.Background(), old, testMessage(), t0); res.Verdict != Delivered {
		t.Fatalf("cached token after rotation: %+v", res)
	}
	clk.Step(time.Minute)
	res := Send(context.Background(), old, testMessage(), t0)
	if res.Verdict != Retry || res.Err == nil {
		t.Fatalf("old secret: %+v", res)
	}
	msg := res.Err.Error()
	for _, want := range []string{"token endpoint answered HTTP 401", "invalid_client", "check spec.auth.oauth2.clientID and the client secret"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "old-secret") {
		t.Errorf("error %q holds the client secret", msg)
	}

	// The endpoint rebuilt from the updated Secret (what the registry does) delivers.
	rotated := newTestTarget(t, p, TargetConfig{URL: rc.URL, Auth: Auth{OAuth2: oauthConfig(ts, "new-secret")}})
	if res := Send(context.Background(), rotated, testMessage(), t0); res.Verdict != Delivered {
		t.Fatalf("new secret: %+v", res)
	}
}

func TestOAuth2TokenURLPassesTheSSRFPolicy(t *testing.T) {
	// The token server listens on 127.0.0.2, which the policy denies while the
	// receiver's 127.0.0.1 is allowed.
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	ts := &tokenServer{issued: map[string]bool{}}
	s := "s3cret"
	ts.secret.Store(&s)
	ts.Server = httptest.NewUnstartedServer(http.HandlerFunc(ts.handle))
	_ = ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	rc := newReceiver(t, protected(ts))
	rc.Start()

	policy, err := ssrf.ParsePolicy([]string{"127.0.0.0/8"}, []string{"127.0.0.2/32"})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, SSRF: policy, Auth: Auth{OAuth2: oauthConfig(ts, "s3cret")}})
	res := Send(context.Background(), tg, testMessage(), t0)
	var denied *ssrf.DeniedError
	if res.Verdict != Retry || !errors.As(res.Err, &denied) || ts.count() != 0 {
		t.Fatalf("Send: %+v (token requests %d); want an SSRF refusal of the token URL", res, ts.count())
	}
	if !strings.Contains(res.Err.Error(), "OAuth2 token from http://127.0.0.2") {
		t.Errorf("error %q does not name the token URL", res.Err)
	}
}

func TestOAuth2Refusals(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  TargetConfig
		want string
	}{
		{"empty secret", TargetConfig{URL: "https://r.example", Auth: Auth{OAuth2: &OAuth2{TokenURL: "https://a.example/t", ClientID: "c"}}}, "client secret is empty"},
		{"reserved param", TargetConfig{URL: "https://r.example", Auth: Auth{OAuth2: &OAuth2{TokenURL: "https://a.example/t", ClientID: "c", ClientSecret: "s", Params: map[string]string{"grant_type": "password"}}}}, "parameter grant_type is set by the grant"},
		{"bad token URL", TargetConfig{URL: "https://r.example", Auth: Auth{OAuth2: &OAuth2{TokenURL: "ftp://a.example/t", ClientID: "c", ClientSecret: "s"}}}, "OAuth2 token URL"},
		{"with bearer", TargetConfig{URL: "https://r.example", Auth: Auth{BearerToken: "x", OAuth2: &OAuth2{TokenURL: "https://a.example/t", ClientID: "c", ClientSecret: "s"}}}, "use one of"},
		{"with Authorization header", TargetConfig{URL: "https://r.example", Headers: http.Header{"Authorization": {"x"}}, Auth: Auth{OAuth2: &OAuth2{TokenURL: "https://a.example/t", ClientID: "c", ClientSecret: "s"}}}, "Authorization is set both"},
	} {
		err := CheckTarget(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: CheckTarget = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func runtimeGosched() { runtime.Gosched() }
