package delivery

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestShownHeaders sends with every kind of credential to a real receiver and
// holds Result.Headers to what the receiver got: every header it shows was
// sent with that value (or masked), every header sent is shown (but those
// net/http adds for the connection), and no credential or signature value is
// in it.
func TestShownHeaders(t *testing.T) {
	ts := newTokenServer(t, "client-s3cret")
	twoKeys := func(id string, at time.Time, body []byte) string {
		return hmacSigner(id, at, body) + " v1a,ZWQyNTUxOXNpZ25hdHVyZQ=="
	}
	cases := []struct {
		name    string
		cfg     TargetConfig
		format  Format
		trace   string
		secrets []string
		masked  []string // header lines expected with their value masked
	}{
		{name: "bearer", cfg: TargetConfig{Auth: Auth{BearerToken: "bearer-s3cret"}},
			secrets: []string{"bearer-s3cret"}, masked: []string{"Authorization: ****"}},
		{name: "basic", cfg: TargetConfig{Auth: Auth{Basic: &BasicAuth{Username: "shop", Password: "basic-s3cret"}}},
			secrets: []string{"basic-s3cret", "c2hvcDpiYXNpYy1zM2NyZXQ="}, masked: []string{"Authorization: ****"}},
		{name: "API key header", cfg: TargetConfig{Auth: Auth{APIKey: &APIKey{Header: "X-Api-Key", Value: "key-s3cret"}}},
			secrets: []string{"key-s3cret"}, masked: []string{"X-Api-Key: ****"}},
		{name: "API key query", cfg: TargetConfig{Auth: Auth{APIKey: &APIKey{QueryParam: "key", Value: "query-s3cret"}}},
			secrets: []string{"query-s3cret"}},
		{name: "OAuth2", cfg: TargetConfig{Auth: Auth{OAuth2: oauthConfig(ts, "client-s3cret")}},
			secrets: []string{"client-s3cret", "tok-"}, masked: []string{"Authorization: ****"}},
		{name: "headers from Secrets, CloudEvents binary, traceparent, two keys",
			cfg: TargetConfig{
				Headers: http.Header{"X-Tenant": {"shop"}, "X-Signing-Token": {"hdr-s3cret"}, "Cookie": {"session=abc"}, "User-Agent": {"shop-hooks/1"},
					"X-Partner-Key": {"literal-s3cret"}, "X-Mirror": {"shop hdr-s3cret"}},
				SecretHeaderValues: []string{"hdr-s3cret"}, Sign: twoKeys,
			},
			format: CloudEventsBinary, trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			secrets: []string{"hdr-s3cret", "session=abc", "ZWQyNTUxOXNpZ25hdHVyZQ==", "literal-s3cret"},
			masked: []string{"X-Signing-Token: ****", "Cookie: ****", "Webhook-Signature: v1,**** v1a,****",
				"X-Partner-Key: ****", "X-Mirror: ****"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rc *receiver
			if tc.cfg.Auth.OAuth2 != nil {
				rc = newReceiver(t, protected(ts))
			} else {
				rc = newReceiver(t, nil)
			}
			rc.Start()
			p, _ := newTestPool(t)
			tc.cfg.URL = rc.URL + "/hook"
			tg := newTestTarget(t, p, tc.cfg)
			msg := testMessage()
			msg.Format, msg.TraceParent = tc.format, tc.trace
			res := Send(context.Background(), tg, msg, t0)
			if res.Verdict != Delivered {
				t.Fatalf("Send: %+v", res)
			}
			got := rc.last(t)
			t.Logf("shown:\n%s", res.Headers)
			shown := map[string]string{}
			for line := range strings.Lines(res.Headers) {
				name, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
				if !ok {
					t.Fatalf("line %q is not a header", line)
				}
				shown[name] = value
				sent := strings.Join(got.Header[name], ", ")
				if sent == "" {
					t.Errorf("shown %s was not sent", name)
				} else if value != sent && !strings.Contains(value, masked) {
					t.Errorf("shown %s: %q, sent %q", name, value, sent)
				}
			}
			for name := range got.Header {
				if _, ok := shown[name]; !ok && name != "Content-Length" && name != "Accept-Encoding" {
					t.Errorf("sent %s is not shown", name)
				}
			}
			for _, s := range append(tc.secrets, strings.TrimPrefix(got.Header.Get("Webhook-Signature"), "v1,")[:20]) {
				if strings.Contains(res.Headers, s) {
					t.Errorf("the shown headers hold the secret %q:\n%s", s, res.Headers)
				}
			}
			for _, m := range tc.masked {
				if !strings.Contains(res.Headers, m+"\n") {
					t.Errorf("want %q in\n%s", m, res.Headers)
				}
			}
			if !strings.Contains(res.Headers, "Webhook-Signature: v1,****") {
				t.Errorf("signature not shown masked:\n%s", res.Headers)
			}
		})
	}
}

// BenchmarkShownHeaders is what recording the headers adds to every attempt.
func BenchmarkShownHeaders(b *testing.B) {
	p, _ := newTestPool(b)
	tg := newTestTarget(b, p, TargetConfig{URL: "http://127.0.0.1:1/hook", Auth: Auth{BearerToken: "t0ken"},
		Headers: http.Header{"X-Tenant": {"shop"}}})
	m := benchMessage(StandardWebhooks)
	h := tg.requestHeader(&m, t0, AppendBody(nil, &m))
	b.ReportAllocs()
	for b.Loop() {
		_ = tg.shownHeaders(h, false, 1)
	}
}
