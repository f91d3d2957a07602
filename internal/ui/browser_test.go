package ui_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/ui"
)

// chromiumPath is Debian's Chromium, or the browser $HOOKLINE_CHROMIUM names (make passes
// CHROMIUM on).
var chromiumPath = func() string {
	if p := os.Getenv("HOOKLINE_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}()

func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the dashboard's tests run headless Chromium at %s: install it with `make chromium` (apt-get install chromium), or name another with CHROMIUM=/path/to/chrome", chromiumPath)
	}
	s := startStack(t)
	ctx := newBrowser(t)
	for _, step := range []struct {
		name string
		run  func(*testing.T, browser)
	}{
		{"the endpoint page shows the failure live", s.liveFailure},
		{"namespaces", s.namespaces},
		{"endpoint shows the last failure", s.lastFailure},
		{"resend one dead letter and replay the rest", s.resendAndReplay},
		{"send a test event", s.testSend},
		{"events", s.events},
		{"rotate the signing key", s.rotate},
		{"enable a disabled endpoint", s.enable},
		{"a user without the right is refused", s.refused},
		{"the local server refuses other origins and missing tokens", s.guard},
		{"served by the dispatcher behind an authenticating proxy", s.proxied},
	} {
		t.Run(step.name, func(t *testing.T) { step.run(t, browser{ctx}) })
	}
}

func (s *stack) epURL() string  { return s.ownerURL + "/ns/" + s.ns + "/endpoints/billing" }
func (s *stack) subURL() string { return s.ownerURL + "/ns/" + s.ns + "/subscriptions/invoices" }

// liveFailure opens the endpoint page, then two events die (the receiver answers 500
// with a reason in its body), and the page shows the failure without being reloaded.
func (s *stack) liveFailure(t *testing.T, b browser) {
	ctx := b.ctx
	do(t, ctx, chromedp.Navigate(s.owner.LoginURL()), chromedp.Navigate(s.epURL()), chromedp.WaitVisible(chromedp.CSS("#last-failure")))
	if got := text(t, ctx, "#last-failure"); !strings.Contains(got, "No failure recorded") {
		t.Fatalf("a new endpoint shows a failure: %q", got)
	}
	s.broken.Store(true)
	s.publish(t, "inv-1", "invoice.paid", map[string]any{"invoice": 1, "amount": "12.00"})
	s.publish(t, "inv-2", "invoice.paid", map[string]any{"invoice": 2, "amount": "30.50"})
	waitLive(t, ctx, "#last-failure", "database unavailable")
	s.waitDead(t, 2)
}

func (s *stack) namespaces(t *testing.T, b browser) {
	ctx := b.ctx
	do(t, ctx, chromedp.Navigate(s.ownerURL+"/"))
	if got := text(t, ctx, "#namespaces"); !strings.Contains(got, s.ns) {
		t.Fatalf("the namespaces page does not list %s: %q", s.ns, got)
	}
	s.screenshot(t, ctx, "namespaces")
	waitText(t, ctx, s.ownerURL+"/ns/"+s.ns, "#endpoints", "Failing")
	if got := text(t, ctx, "#subscriptions"); !strings.Contains(got, "invoices") {
		t.Errorf("the namespace page does not list subscription invoices: %q", got)
	}
	s.screenshot(t, ctx, "namespace")
}

func (s *stack) lastFailure(t *testing.T, b browser) {
	ctx := b.ctx
	waitText(t, ctx, s.epURL(), "#ep-live", "2 dead")
	got := text(t, ctx, "#last-failure")
	for _, want := range []string{"500", "database unavailable: connection pool exhausted"} {
		if !strings.Contains(got, want) {
			t.Errorf("last failure %q lacks %q", got, want)
		}
	}
	if sum := text(t, ctx, "#chart-summary"); !strings.Contains(sum, "4 failed") {
		t.Errorf("chart summary %q, want the 4 failed attempts", sum)
	}
	if lat := text(t, ctx, "#ep-latency"); !strings.Contains(lat, "p50") {
		t.Errorf("latency %q", lat)
	}
	s.screenshot(t, ctx, "endpoint")
}

// resendAndReplay fixes the receiver and sends the dead letters again: one found by its
// event id and resent, the other by replaying all.
func (s *stack) resendAndReplay(t *testing.T, b browser) {
	ctx := b.ctx
	s.broken.Store(false)
	do(t, ctx, chromedp.Navigate(s.subURL()))
	dead := text(t, ctx, "#dead")
	if !strings.Contains(dead, "inv-1") || !strings.Contains(dead, "inv-2") {
		t.Fatalf("dead letters %q lack inv-1 and inv-2", dead)
	}
	s.screenshot(t, ctx, "subscription")
	do(t, ctx, chromedp.SetValue(chromedp.CSS("#event-search"), "inv-1"),
		chromedp.Submit(chromedp.CSS("#event-search")), chromedp.WaitVisible(chromedp.CSS("#dead")))
	if got := text(t, ctx, "#dead"); strings.Contains(got, "inv-2") {
		t.Fatalf("searching inv-1 still lists inv-2: %q", got)
	}
	// The search narrows the attempt log too: attempts record their event.
	if got := text(t, ctx, "#attempts-live"); !strings.Contains(got, "inv-1") || strings.Contains(got, "inv-2") {
		t.Fatalf("searching inv-1: the attempt log shows %q; want inv-1's attempts only", got)
	}
	s.attemptView(t, ctx)
	do(t, ctx, chromedp.Navigate(s.subURL()+"?event=inv-1"), chromedp.WaitVisible(chromedp.CSS("#dead")))
	do(t, ctx, chromedp.Click(chromedp.CSS("#dead input[type=checkbox]")),
		chromedp.Click(chromedp.CSS("#btn-resend")), chromedp.WaitVisible(chromedp.CSS("#question")))
	if q := text(t, ctx, "#question"); !strings.Contains(q, "1 selected dead letter") {
		t.Errorf("confirmation %q", q)
	}
	if s.recv.SeenEvent("inv-1") {
		t.Fatal("inv-1 was sent before the resend was confirmed")
	}
	do(t, ctx, chromedp.Click(chromedp.CSS("#btn-confirm")), chromedp.WaitVisible(chromedp.CSS("#outcome")))
	if got := text(t, ctx, "#outcome"); !strings.Contains(got, "Resent 1 of 1") {
		t.Fatalf("resend outcome %q", got)
	}
	s.waitReceived(t, "inv-1")

	// Replay the other one by time range (both bounds empty: all of them).
	do(t, ctx, chromedp.Navigate(s.subURL()), chromedp.Click(chromedp.CSS("#btn-replay")), chromedp.WaitVisible(chromedp.CSS("#question")))
	if q := text(t, ctx, "#question"); !strings.Contains(q, "all its dead letters") {
		t.Errorf("confirmation %q", q)
	}
	do(t, ctx, chromedp.Click(chromedp.CSS("#btn-confirm")), chromedp.WaitVisible(chromedp.CSS("#outcome")))
	if got := text(t, ctx, "#outcome"); !strings.Contains(got, "Replayed 1 dead deliveries") {
		t.Fatalf("replay outcome %q", got)
	}
	s.waitReceived(t, "inv-2")
	do(t, ctx, chromedp.Navigate(s.subURL()+"?status=ok"), chromedp.WaitVisible(chromedp.CSS("#attempts-live")))
	if got := text(t, ctx, "#attempts-live"); !strings.Contains(got, "204") || strings.Contains(got, "500") {
		t.Errorf("the attempt log filtered to successes: %q", got)
	}
}

// attemptView opens a failed attempt of inv-1: the headers it sent with the signature and
// the bearer token masked, the event's data as its body, and the receiver's answer.
func (s *stack) attemptView(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, chromedp.Click(chromedp.CSS("#attempts-live details.request-headers summary")))
	hdrs := text(t, ctx, "#attempts-live details.request-headers")
	for _, want := range []string{"Webhook-Id: msg_", "Webhook-Signature: v1,****", "Authorization: ****", "Content-Type: application/json"} {
		if !strings.Contains(hdrs, want) {
			t.Errorf("the attempt's request headers %q lack %q", hdrs, want)
		}
	}
	do(t, ctx, chromedp.Click(chromedp.CSS("#attempts-live a.attempt-view")), chromedp.WaitVisible(chromedp.CSS("#request-headers")))
	for sel, wants := range map[string][]string{
		"#attempt-event":   {"inv-1"},
		"#attempt-outcome": {"Failed", "HTTP 500"},
		"#request-headers": {"Webhook-Signature", "v1,****", "Authorization", "Webhook-Timestamp"},
		"#request-body":    {`"invoice": 1`, `"amount": "12.00"`},
		"#answer-body":     {"database unavailable: connection pool exhausted"},
	} {
		got := text(t, ctx, sel)
		for _, want := range wants {
			if !strings.Contains(got, want) {
				t.Errorf("the attempt view's %s is %q, want %q in it", sel, got, want)
			}
		}
	}
	html := get(t, ctx, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
	if strings.Contains(html, billingToken) {
		t.Error("the attempt view shows the endpoint's bearer token")
	}
	if sig := regexp.MustCompile(`v1,[A-Za-z0-9+/]{20,}`).FindString(html); sig != "" {
		t.Errorf("the attempt view shows a signature value %q", sig)
	}
	s.screenshot(t, ctx, "attempt")
}

func (s *stack) testSend(t *testing.T, b browser) {
	ctx := b.ctx
	do(t, ctx, chromedp.Navigate(s.epURL()), chromedp.SetValue(chromedp.CSS("#test-type"), "invoice.paid"),
		chromedp.Click(chromedp.CSS("#btn-test")), chromedp.WaitVisible(chromedp.CSS("#question")))
	do(t, ctx, chromedp.Click(chromedp.CSS("#btn-confirm")), chromedp.WaitVisible(chromedp.CSS("#outcome")))
	got := text(t, ctx, "#outcome")
	if !strings.Contains(got, "delivered: the receiver answered status 204") {
		t.Fatalf("test send outcome %q", got)
	}
	found := false
	for _, d := range s.recv.Deliveries() {
		found = found || (d.Type == "invoice.paid" && d.EventID != "" && strings.Contains(got, d.EventID))
	}
	if !found {
		t.Errorf("the receiver has no test delivery named in %q", got)
	}
}

func (s *stack) events(t *testing.T, b browser) {
	ctx := b.ctx
	do(t, ctx, chromedp.Navigate(s.ownerURL+"/ns/"+s.ns+"/events"))
	got := text(t, ctx, "#events")
	if !strings.Contains(got, "inv-1") || !strings.Contains(got, "inv-2") {
		t.Fatalf("events list %q", got)
	}
	s.screenshot(t, ctx, "events")
	do(t, ctx, chromedp.Click(chromedp.CSS(`a[href$="/events/inv-2"]`)), chromedp.WaitVisible(chromedp.CSS("#event-data")))
	if data := text(t, ctx, "#event-data"); !strings.Contains(data, "30.50") {
		t.Errorf("event data %q", data)
	}
	if to := text(t, ctx, "#sent-to"); !strings.Contains(to, "invoices") {
		t.Errorf("sent to %q", to)
	}
}

// rotate asks for a rotation from the endpoint page; the operator rotates the key.
func (s *stack) rotate(t *testing.T, b browser) {
	ctx := b.ctx
	var before hooklinev1.WebhookEndpoint
	must(t, s.admin.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: "billing"}, &before))
	do(t, ctx, chromedp.Navigate(s.epURL()), chromedp.Click(chromedp.CSS("#btn-rotate")), chromedp.WaitVisible(chromedp.CSS("#question")),
		chromedp.Click(chromedp.CSS("#btn-confirm")), chromedp.WaitVisible(chromedp.CSS("#outcome")))
	if got := text(t, ctx, "#outcome"); !strings.Contains(got, "Rotation of shop/billing requested") {
		t.Fatalf("rotate outcome %q", got)
	}
	eventually(t, "a new signing key", func() error {
		var ep hooklinev1.WebhookEndpoint
		if err := s.admin.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: "billing"}, &ep); err != nil {
			return err
		}
		if ep.Status.Signing == nil || ep.Status.Signing.CurrentKeyID == before.Status.Signing.CurrentKeyID {
			return fmt.Errorf("key still %s; annotations %v", before.Status.Signing.CurrentKeyID, ep.Annotations)
		}
		return nil
	})
}

// enable re-enables the endpoint the dispatcher disabled on a 410; the dispatcher records
// that it handled the request.
func (s *stack) enable(t *testing.T, b browser) {
	ctx := b.ctx
	s.publish(t, "legacy-1", "legacy.ping", map[string]any{})
	legacy := s.ownerURL + "/ns/" + s.ns + "/endpoints/legacy"
	waitText(t, ctx, legacy, "#ep-health", "Disabled")
	do(t, ctx, chromedp.Click(chromedp.CSS("#btn-enable")), chromedp.WaitVisible(chromedp.CSS("#question")),
		chromedp.Click(chromedp.CSS("#btn-confirm")), chromedp.WaitVisible(chromedp.CSS("#outcome")))
	if got := text(t, ctx, "#outcome"); !strings.Contains(got, "re-enabled") {
		t.Fatalf("enable outcome %q", got)
	}
	eventually(t, "the dispatcher handling the enable", func() error {
		var ep hooklinev1.WebhookEndpoint
		if err := s.admin.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: "legacy"}, &ep); err != nil {
			return err
		}
		if v := ep.Annotations[hooklinev1.AnnotationEnable]; v == "" || ep.Status.LastHandledEnable != v {
			return fmt.Errorf("annotation %q, lastHandledEnable %q", v, ep.Status.LastHandledEnable)
		}
		return nil
	})
}

func (s *stack) refused(t *testing.T, b browser) {
	ctx := b.ctx
	do(t, ctx, chromedp.Navigate(s.viewer.LoginURL()))
	// The viewer may not list namespaces: the dashboard says so and shows its namespace.
	if got := text(t, ctx, "#notes"); !strings.Contains(got, "Listing namespaces was refused") {
		t.Errorf("the viewer's namespaces page notes %q", got)
	}
	if got := text(t, ctx, "#namespaces"); !strings.Contains(got, s.ns) {
		t.Errorf("the viewer's namespaces page lists %q, want %s", got, s.ns)
	}
	vsub := s.viewURL + "/ns/" + s.ns + "/subscriptions/invoices"
	do(t, ctx, chromedp.Navigate(vsub), chromedp.WaitVisible(chromedp.CSS("#why-replay")))
	if !evalBool(t, ctx, `document.getElementById("btn-replay").disabled && document.getElementById("btn-resend").disabled`) {
		t.Error("replay and resend are enabled for a user who may not replay")
	}
	if why := text(t, ctx, "#why-replay"); !strings.Contains(why, "may not replay subscriptions.hookline.io") {
		t.Errorf("reason %q", why)
	}
	s.screenshot(t, ctx, "refused")
	do(t, ctx, chromedp.Navigate(s.viewURL+"/ns/"+s.ns+"/endpoints/billing"), chromedp.WaitVisible(chromedp.CSS("#why-test")))
	if !evalBool(t, ctx, `document.getElementById("btn-test").disabled && document.getElementById("btn-rotate").disabled`) {
		t.Error("send-test and rotate are enabled for a user who may not use them")
	}
	// The button is only a hint: forced, the action is a real call the dispatcher refuses.
	do(t, ctx, chromedp.Navigate(vsub), chromedp.WaitVisible(chromedp.CSS("#btn-replay")),
		js(`document.getElementById("btn-replay").disabled = false`),
		chromedp.Click(chromedp.CSS("#btn-replay")), chromedp.WaitVisible(chromedp.CSS("#btn-confirm")),
		chromedp.Click(chromedp.CSS("#btn-confirm")), chromedp.WaitVisible(chromedp.CSS("#outcome")))
	if got := text(t, ctx, "#outcome"); !strings.Contains(got, "403") {
		t.Errorf("forced replay as the viewer: %q, want the dispatcher's 403", got)
	}
}

func (s *stack) guard(t *testing.T, _ browser) {
	session := loginCookie(t, s.owner)
	token := csrf(t, s)
	host := strings.TrimPrefix(s.ownerURL, "http://")
	for _, c := range []struct {
		name, host, origin, body string
		want                     int
	}{
		{"another origin", host, "http://evil.example", "confirm=yes&csrf=" + token, http.StatusForbidden},
		{"no CSRF token", host, s.ownerURL, "confirm=yes", http.StatusForbidden},
		{"a rebinding Host", "evil.example:80", s.ownerURL, "confirm=yes&csrf=" + token, http.StatusMisdirectedRequest},
		{"the dashboard's own form, unconfirmed", host, s.ownerURL, "csrf=" + token, http.StatusOK},
	} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, s.subURL()+"/replay", strings.NewReader(c.body))
		req.Host = c.host
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", c.origin)
		req.AddCookie(session)
		if got := status(t, req); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.ownerURL+"/", nil)
	if got := status(t, req); got != http.StatusUnauthorized {
		t.Errorf("a request without the session cookie: %d, want 401", got)
	}
}

func status(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// --- the browser ------------------------------------------------------------------

// browser is the tab the steps drive.
type browser struct{ ctx context.Context }

func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	// The first run starts the browser; its context must have no timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return ctx
}

// do runs browser actions with a bound, so a missing element fails the test instead
// of hanging it.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, chromedp.Steps(steps...))
}

func get[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("browser at %s: %v", loc, err)
	}
	return v
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, chromedp.Text(chromedp.CSS(sel)))
}

func evalBool(t *testing.T, ctx context.Context, expr string) bool {
	t.Helper()
	return get(t, ctx, chromedp.Evaluate[bool](expr))
}

// js runs a script for its effect.
func js(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](expr)(ctx, tg)
		return err
	})
}

// waitLive waits, without reloading, until the page's live updates put want into sel.
func waitLive(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if last = text(t, ctx, sel); strings.Contains(last, want) {
			return
		}
	}
	t.Fatalf("%s: %q does not hold %q within a minute of live updates", sel, last, want)
}

// waitText loads url until sel's text holds want: status follows deliveries within the
// dispatcher's status interval.
func waitText(t *testing.T, ctx context.Context, url, sel, want string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		do(t, ctx, chromedp.Navigate(url))
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			last = v
		}
		if err == nil && strings.Contains(last, want) {
			return
		}
	}
	t.Fatalf("%s %s: %q does not hold %q within a minute", url, sel, last, want)
}

// --- helpers ------------------------------------------------------------------------

func loginCookie(t *testing.T, srv *ui.Server) *http.Cookie {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.LoginURL(), nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		return ck
	}
	t.Fatal("the login address set no cookie")
	return nil
}

// csrf reads the token from a page's form, as a same-origin page would.
func csrf(t *testing.T, s *stack) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.ownerURL+"/ns/"+s.ns+"/subscriptions/invoices", nil)
	req.AddCookie(loginCookie(t, s.owner))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	const marker = `name="csrf" value="`
	i := bytes.Index(body, []byte(marker))
	if i < 0 {
		t.Fatalf("no CSRF token in the page: %s", body)
	}
	rest := body[i+len(marker):]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: not within a minute: %v", what, err)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
