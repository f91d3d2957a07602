package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/hookline/hookline/internal/ssrf"
)

func TestSendStandardWebhooks(t *testing.T) {
	rc := newReceiver(t, nil)
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL + "/hooks"})

	m := testMessage()
	res := Send(context.Background(), tg, m, t0)
	if res.Err != nil || res.Verdict != Delivered || res.StatusCode != 204 {
		t.Fatalf("Send = %+v", res)
	}
	got := rc.last(t)
	h := got.Header
	if h.Get("Content-Type") != "application/json" {
		t.Errorf("content-type %q", h.Get("Content-Type"))
	}
	if h.Get("Webhook-Id") != m.WebhookID {
		t.Errorf("webhook-id %q", h.Get("Webhook-Id"))
	}
	if h.Get("Webhook-Timestamp") != strconv.FormatInt(t0.Unix(), 10) {
		t.Errorf("webhook-timestamp %q, want %d", h.Get("Webhook-Timestamp"), t0.Unix())
	}
	if want := "v1," + sign(h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), got.Body); h.Get("Webhook-Signature") != want {
		t.Errorf("webhook-signature %q does not verify over the received body (want %q)", h.Get("Webhook-Signature"), want)
	}
	if want := AppendBody(nil, &m); !bytes.Equal(got.Body, want) {
		t.Errorf("body %s, want %s", got.Body, want)
	}
	if _, ok := h["X-Idempotency-Key"]; ok {
		t.Errorf("the idempotency marker went on the wire")
	}
}

func TestSendSameIDEveryAttemptNewTimestamp(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(500) })
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
	m := testMessage()
	Send(context.Background(), tg, m, t0)
	first := rc.last(t)
	res := Send(context.Background(), tg, m, t0.Add(5*time.Second))
	second := rc.last(t)
	if res.Verdict != Retry {
		t.Errorf("500: verdict %s", res.Verdict)
	}
	if first.Header.Get("Webhook-Id") != second.Header.Get("Webhook-Id") {
		t.Errorf("webhook-id changed between attempts")
	}
	if second.Header.Get("Webhook-Timestamp") != strconv.FormatInt(t0.Unix()+5, 10) {
		t.Errorf("second attempt timestamp %q", second.Header.Get("Webhook-Timestamp"))
	}
	if first.Header.Get("Webhook-Signature") == second.Header.Get("Webhook-Signature") {
		t.Errorf("signature did not change with the timestamp")
	}
}

// TestSendCloudEvents receives both CloudEvents modes with the SDK's own
// HTTP binding, which decides the mode from the request as any CloudEvents
// receiver would, and validates the event it reads.
func TestSendCloudEvents(t *testing.T) {
	for _, f := range []Format{CloudEventsStructured, CloudEventsBinary} {
		t.Run(f.String(), func(t *testing.T) {
			rc := newReceiver(t, nil)
			rc.Start()
			p, _ := newTestPool(t)
			tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
			m := testMessage()
			m.Format = f
			if res := Send(context.Background(), tg, m, t0); res.Verdict != Delivered {
				t.Fatalf("Send = %+v", res)
			}
			got := rc.last(t)

			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "/", bytes.NewReader(got.Body))
			req.Header = got.Header
			msg := cehttp.NewMessageFromHttpRequest(req)
			wantEncoding := binding.EncodingStructured
			if f == CloudEventsBinary {
				wantEncoding = binding.EncodingBinary
			}
			if enc := msg.ReadEncoding(); enc != wantEncoding {
				t.Errorf("SDK reads the request as %v, want %v", enc, wantEncoding)
			}
			ev, err := binding.ToEvent(context.Background(), msg)
			if err != nil {
				t.Fatalf("SDK cannot read the event: %v", err)
			}
			checkEvent(t, *ev, m)

			h := got.Header
			if h.Get("Webhook-Id") != m.WebhookID || h.Get("Webhook-Signature") != "v1,"+sign(m.WebhookID, h.Get("Webhook-Timestamp"), got.Body) {
				t.Errorf("Standard Webhooks headers missing or wrong: %v", h)
			}
			if f == CloudEventsBinary {
				if h.Get("Ce-Datacontenttype") != "" {
					t.Errorf("binary mode must carry datacontenttype in content-type only")
				}
				if h.Get("Content-Type") != "application/json" {
					t.Errorf("content-type %q", h.Get("Content-Type"))
				}
			} else if h.Get("Content-Type") != "application/cloudevents+json" {
				t.Errorf("content-type %q", h.Get("Content-Type"))
			}
		})
	}
}

func TestSendCloudEventsBinaryPercentEncodes(t *testing.T) {
	rc := newReceiver(t, nil)
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
	m := testMessage()
	m.Format = CloudEventsBinary
	m.Type = "commande.payée 100%"
	Send(context.Background(), tg, m, t0)
	raw := rc.last(t).Header.Get("Ce-Type")
	if raw != "commande.pay%C3%A9e%20100%25" {
		t.Errorf("ce-type %q", raw)
	}
	if dec, _ := url.PathUnescape(raw); dec != m.Type {
		t.Errorf("decodes to %q", dec)
	}
}

func TestSendUserHeaders(t *testing.T) {
	rc := newReceiver(t, nil)
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, Headers: http.Header{
		"x-tenant": {"acme"},
		"X-Multi":  {"a", "b"},
	}})
	Send(context.Background(), tg, testMessage(), t0)
	h := rc.last(t).Header
	if h.Get("X-Tenant") != "acme" || strings.Join(h.Values("X-Multi"), ",") != "a,b" {
		t.Errorf("user headers not sent: %v", h)
	}
}

func TestUserHeaderCannotOverride(t *testing.T) {
	p, _ := newTestPool(t)
	for _, name := range []string{"webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE", "webhook-anything", "content-type", "Content-Length", "Host", "ce-id", "Ce-Source", "x-idempotency-key"} {
		_, err := p.NewTarget(TargetConfig{URL: "https://example.com/", Sign: hmacSigner, Headers: http.Header{name: {"forged"}}})
		if err == nil || !strings.Contains(err.Error(), "set by hookline") {
			t.Errorf("header %s: NewTarget error %v, want a refusal", name, err)
		}
	}
	// The API key header is configuration too.
	_, err := p.NewTarget(TargetConfig{URL: "https://example.com/", Sign: hmacSigner, Auth: Auth{APIKey: &APIKey{Header: "Webhook-Signature", Value: "k"}}})
	if err == nil {
		t.Errorf("API key in webhook-signature accepted")
	}
}

// TestReservedHeadersWinOverTemplate covers the second line of defence: if
// a reserved header ever reached the static set, Send still writes its own.
func TestReservedHeadersWinOverTemplate(t *testing.T) {
	rc := newReceiver(t, nil)
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
	tg.header["Webhook-Id"] = []string{"forged"}
	tg.header["Content-Type"] = []string{"text/plain"}
	m := testMessage()
	Send(context.Background(), tg, m, t0)
	h := rc.last(t).Header
	if h.Get("Webhook-Id") != m.WebhookID || len(h.Values("Webhook-Id")) != 1 || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", h)
	}
}

func TestSendAuth(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		auth   Auth
		header string
		value  string
		query  string
	}{
		{name: "api key header", auth: Auth{APIKey: &APIKey{Header: "x-api-key", Value: "k3y"}}, header: "X-Api-Key", value: "k3y"},
		{name: "api key query", url: "/hook", auth: Auth{APIKey: &APIKey{QueryParam: "api_key", Value: "k3y&x=1"}}, query: "api_key=k3y%26x%3D1"},
		{name: "api key query appended", url: "/hook?tenant=acme", auth: Auth{APIKey: &APIKey{QueryParam: "api_key", Value: "k3y"}}, query: "tenant=acme&api_key=k3y"},
		{name: "basic", auth: Auth{Basic: &BasicAuth{Username: "hook", Password: "s3cret"}}, header: "Authorization", value: "Basic aG9vazpzM2NyZXQ="},
		{name: "bearer", auth: Auth{BearerToken: "tok.en"}, header: "Authorization", value: "Bearer tok.en"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, nil)
			rc.Start()
			p, _ := newTestPool(t)
			tg := newTestTarget(t, p, TargetConfig{URL: rc.URL + tt.url, Auth: tt.auth})
			if res := Send(context.Background(), tg, testMessage(), t0); res.Verdict != Delivered {
				t.Fatalf("Send = %+v", res)
			}
			got := rc.last(t)
			if tt.header != "" && got.Header.Get(tt.header) != tt.value {
				t.Errorf("%s = %q, want %q", tt.header, got.Header.Get(tt.header), tt.value)
			}
			if got.Query != tt.query {
				t.Errorf("query %q, want %q", got.Query, tt.query)
			}
			if strings.Contains(tg.URL(), "k3y") {
				t.Errorf("URL() shows the key: %s", tg.URL())
			}
		})
	}
}

func TestAuthConfigErrors(t *testing.T) {
	p, _ := newTestPool(t)
	for name, cfg := range map[string]TargetConfig{
		"two kinds":             {Auth: Auth{BearerToken: "t", Basic: &BasicAuth{Username: "u"}}},
		"api key without value": {Auth: Auth{APIKey: &APIKey{Header: "X-Key"}}},
		"api key both places":   {Auth: Auth{APIKey: &APIKey{Header: "X-Key", QueryParam: "k", Value: "v"}}},
		"api key nowhere":       {Auth: Auth{APIKey: &APIKey{Value: "v"}}},
		"authorization twice":   {Auth: Auth{BearerToken: "t"}, Headers: http.Header{"Authorization": {"x"}}},
		"newline in header":     {Headers: http.Header{"X-A": {"a\r\nX-B: b"}}},
		"bad header name":       {Headers: http.Header{"X A": {"a"}}},
		"bad client cert":       {Auth: Auth{ClientCert: &ClientCert{CertPEM: []byte("x"), KeyPEM: []byte("y")}}},
		"bad CA":                {CABundle: []byte("not pem")},
		"no signer":             {Sign: func(string, time.Time, []byte) string { return "" }, URL: "ftp://example.com/"},
		"userinfo":              {URL: "https://user:pw@example.com/"},
		"no host":               {URL: "https:///path"},
	} {
		if cfg.URL == "" {
			cfg.URL = "https://example.com/hook"
		}
		if cfg.Sign == nil {
			cfg.Sign = hmacSigner
		}
		if _, err := p.NewTarget(cfg); err == nil {
			t.Errorf("%s: NewTarget succeeded", name)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
	if _, err := p.NewTarget(TargetConfig{URL: "https://example.com/"}); err == nil {
		t.Errorf("target without a signer accepted")
	}
	if n := p.Transports(); n != 0 {
		t.Errorf("failed targets left %d transports in the pool", n)
	}
}

func TestLoopbackRefusedWithoutAllowList(t *testing.T) {
	rc := newReceiver(t, nil)
	rc.Start()
	p, _ := newTestPool(t)
	tg, err := p.NewTarget(TargetConfig{URL: rc.URL, Sign: hmacSigner})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	res := Send(context.Background(), tg, testMessage(), t0)
	var de *ssrf.DeniedError
	if !errors.As(res.Err, &de) {
		t.Fatalf("Send to loopback = %+v, want an ssrf refusal", res)
	}
	if !strings.Contains(res.Err.Error(), "loopback address (allow it with --allow-cidr 127.0.0.0/8)") {
		t.Errorf("error %q does not say how to allow it", res.Err)
	}
	if res.Verdict != Retry || res.StatusCode != 0 {
		t.Errorf("verdict %s status %d", res.Verdict, res.StatusCode)
	}
	if n := rc.requests.Load(); n != 0 {
		t.Errorf("receiver got %d requests", n)
	}
}

// TestErrorsAreRedacted makes the transport fail (the receiver resets the
// connection) with every kind of secret configured, and checks none shows in
// the error.
func TestErrorsAreRedacted(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) { hijackReset(t, w) })
	rc.Start()
	p, _ := newTestPool(t)
	for _, auth := range []Auth{
		{APIKey: &APIKey{QueryParam: "key", Value: "SECRETKEY"}},
		{APIKey: &APIKey{Header: "X-Key", Value: "SECRETKEY"}},
		{Basic: &BasicAuth{Username: "u", Password: "SECRETPW"}},
		{BearerToken: "SECRETTOKEN"},
	} {
		tg := newTestTarget(t, p, TargetConfig{URL: rc.URL + "/services/SECRETPATH?plain=SECRETQUERY", Auth: auth})
		res := Send(context.Background(), tg, testMessage(), t0)
		if res.Err == nil {
			t.Fatalf("Send = %+v, want a transport error", res)
		}
		if s := res.Err.Error(); strings.Contains(s, "SECRET") || strings.Contains(s, "?") {
			t.Errorf("error shows a secret: %s", s)
		}
		if !strings.HasPrefix(res.Err.Error(), "POST "+rc.URL+": ") {
			t.Errorf("error does not name the endpoint: %s", res.Err)
		}
	}
}

func TestEchoedSecretsAreScrubbed(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		w.WriteHeader(400)
		fmt.Fprintf(w, "bad auth %q query %q tenant %q", r.Header.Get("Authorization"), r.URL.RawQuery, r.Header.Get("X-Tenant-Key"))
	})
	rc.Start()
	p, _ := newTestPool(t)
	for _, auth := range []Auth{
		{APIKey: &APIKey{QueryParam: "key", Value: "SECRETKEY"}},
		{Basic: &BasicAuth{Username: "u", Password: "SECRETPW"}},
		{BearerToken: "SECRETTOKEN"},
	} {
		// A header whose value came from a Secret is scrubbed like auth.
		tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, Auth: auth,
			Headers: http.Header{"X-Tenant-Key": {"SECRETHEADER"}}, SecretHeaderValues: []string{"SECRETHEADER"}})
		res := Send(context.Background(), tg, testMessage(), t0)
		if bytes.Contains(res.Body, []byte("SECRET")) || bytes.Contains(res.Body, []byte("dTpTRUNSRVRQVw")) {
			t.Errorf("stored body keeps a secret: %s", res.Body)
		}
		if !bytes.Contains(res.Body, []byte("[redacted]")) {
			t.Errorf("body %s", res.Body)
		}
	}
}

func TestInvalidMessageFails(t *testing.T) {
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: "http://127.0.0.1:1/"})
	for _, m := range []Message{{Type: "x"}, {ID: "x"}, {ID: "x", Type: "y", Format: 9}} {
		if res := Send(context.Background(), tg, m, t0); res.Verdict != Failed || res.Err == nil {
			t.Errorf("%+v: %+v", m, res)
		}
	}
}

func TestIPv6Loopback(t *testing.T) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	rc := newReceiver(t, nil)
	rc.Listener.Close()
	rc.Listener = ln
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
	if res := Send(context.Background(), tg, testMessage(), t0); res.Verdict != Delivered {
		t.Errorf("Send over ::1 = %+v", res)
	}
	refused, err := p.NewTarget(TargetConfig{URL: rc.URL, Sign: hmacSigner, SSRF: ssrf.Policy{Allow: loopback(t).Allow[:1]}})
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	var de *ssrf.DeniedError
	if res := Send(context.Background(), refused, testMessage(), t0); !errors.As(res.Err, &de) {
		t.Errorf("::1 with only 127.0.0.0/8 allowed: %+v", res)
	}
}
