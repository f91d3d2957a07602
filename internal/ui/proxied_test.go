package ui_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// proxied drives the dashboard the dispatcher serves (--ui-listen) as an authenticating
// proxy would: each request carries the signed-in user's token. The dispatcher itself
// runs with cluster-admin credentials here, so a page that acted as the dispatcher
// rather than as the user would offer the viewer everything.
func (s *stack) proxied(t *testing.T, b browser) {
	sub := s.proxiedURL + "/ns/" + s.ns + "/subscriptions/invoices"

	// No token: refused, with what to do.
	code, body := s.proxiedGet(t, sub, "")
	if code != http.StatusUnauthorized || !strings.Contains(body, "carries no user's credentials") || !strings.Contains(body, "--pass-authorization-header") {
		t.Errorf("without a token: %d %q", code, body)
	}
	// A token the API server does not accept: nothing is read (not as the dispatcher either).
	code, body = s.proxiedGet(t, sub, "not-a-token")
	if code == http.StatusOK || !strings.Contains(body, "Unauthorized") {
		t.Errorf("with a bad token: %d %q", code, excerptOf(body))
	}

	// The owner: the attempt log (read from the admin API with the owner's token), its
	// masked headers, and replay allowed.
	code, body = s.proxiedGet(t, sub, s.tokens["owner"])
	if code != http.StatusOK || !strings.Contains(body, "Webhook-Signature: v1,****") || strings.Contains(body, `id="why-replay"`) {
		t.Errorf("the owner's subscription page: %d %q", code, excerptOf(body))
	}
	ownerCSRF := csrfOf(t, body)

	// The viewer: the SelfSubjectAccessReviews ran as the viewer, so replay is disabled
	// with the reason.
	code, body = s.proxiedGet(t, sub, s.tokens["viewer"])
	if code != http.StatusOK || !strings.Contains(body, "may not replay subscriptions.hookline.io") {
		t.Errorf("the viewer's subscription page: %d %q", code, excerptOf(body))
	}
	viewerCSRF := csrfOf(t, body)
	if viewerCSRF == ownerCSRF {
		t.Error("the viewer's CSRF token is the owner's: it must be bound to the user")
	}

	host := strings.TrimPrefix(s.proxiedURL, "http://")
	confirmed := url.Values{"confirm": {"yes"}}
	for _, c := range []struct {
		name, token, origin, csrf string
		want                      int
		says                      string
	}{
		// The viewer forces the replay: the dispatcher's SubjectAccessReview, as the
		// viewer, refuses it.
		{"the viewer's replay", s.tokens["viewer"], "https://" + host, viewerCSRF, http.StatusBadGateway, "403"},
		{"the owner's CSRF token with the viewer's credentials", s.tokens["viewer"], "https://" + host, ownerCSRF, http.StatusForbidden, "CSRF token"},
		{"another origin", s.tokens["owner"], "https://evil.example", ownerCSRF, http.StatusForbidden, "not from the dashboard"},
		{"no token", "", "https://" + host, ownerCSRF, http.StatusUnauthorized, "no user's credentials"},
	} {
		form := url.Values{"csrf": {c.csrf}}
		for k, v := range confirmed {
			form[k] = v
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, sub+"/replay", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", c.origin)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		code, body := do2(t, req)
		if code != c.want || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %q, want %d saying %q", c.name, code, excerptOf(body), c.want, c.says)
		}
	}

	// In a browser tab whose requests carry the owner's token, as behind the proxy.
	tab, cancel := chromedp.NewContext(b.ctx)
	defer cancel()
	if err := chromedp.Do(tab); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tab, network.SetExtraHTTPHeaders,
		network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": "Bearer " + s.tokens["owner"]}}); err != nil {
		t.Fatal(err)
	}
	do(t, tab, chromedp.Navigate(sub), chromedp.WaitVisible(chromedp.CSS("#attempts-live")))
	if got := text(t, tab, "#h-attempts"); got != "Attempt log" {
		t.Errorf("the proxied subscription page's attempt log heading: %q", got)
	}
	if disabled := evalBool(t, tab, `document.getElementById("btn-replay").disabled`); disabled {
		t.Error("the owner's replay button is disabled behind the proxy")
	}
	s.screenshot(t, tab, "proxied-subscription")
}

func (s *stack) proxiedGet(t *testing.T, target, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, target, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do2(t, req)
}

func do2(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in %q", excerptOf(page))
	}
	return m[1]
}

func excerptOf(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}
