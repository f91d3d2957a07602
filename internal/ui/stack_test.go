package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-logr/logr"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/app/dispatcher"
	"github.com/hookline/hookline/internal/app/operator"
	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/process"
	"github.com/hookline/hookline/internal/receiver"
	"github.com/hookline/hookline/internal/ui"
)

// --- the stack --------------------------------------------------------------------

// stack is a real API server, the operator and the dispatcher in this process, a
// receiver on loopback, and a dashboard per user.
// billingToken is the billing endpoint's bearer token, which no page may show.
const billingToken = "b1lling-t0ken-s3cret" //nolint:gosec // G101: a test's token

type stack struct {
	env      *controlplane.Env
	admin    client.Client
	apiURL   string
	ns       string
	recv     *receiver.Receiver
	broken   atomic.Bool
	recvURL  string
	shots    string
	owner    *ui.Server
	ownerURL string
	viewer   *ui.Server
	viewURL  string
	tokens   map[string]string
	// proxiedURL is the dashboard the dispatcher serves (--ui-listen), as behind an
	// authenticating proxy: each request carries a user's token.
	proxiedURL string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	env, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{env: env, ns: "shop", tokens: map[string]string{}}
	s.shots = filepath.Join(env.RepoRoot, "bin", "ui-screenshots")
	if err := os.MkdirAll(s.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	if s.admin, err = client.New(env.Config, client.Options{Scheme: process.Scheme()}); err != nil {
		t.Fatal(err)
	}
	must(t, s.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}))

	// The operator's and the dispatcher's logs go next to the screenshots, for a failure.
	logFile, err := os.Create(filepath.Join(s.shots, "stack.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	logger := process.NewLogger(&zap.Options{}, logFile)
	ctrl.SetLogger(logger)
	mgr, err := operator.NewManager(env.Config, operator.Options{MetricsAddr: "0", ProbeAddr: "0", Logger: logger.WithName("operator"), SkipNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	mgrDone := make(chan struct{})
	go func() { defer close(mgrDone); _ = mgr.Start(ctx) }()

	// The dispatcher's configuration comes from its own flags, so its defaults are the
	// command's.
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	flags := dispatcher.BindFlags(fs)
	must(t, fs.Parse([]string{"--kubeconfig", env.Kubeconfig, "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--data-dir", filepath.Join(t.TempDir(), "queue"), "--allow-cidr", "127.0.0.0/8", "--watch-namespaces", s.ns,
		"--max-request-timeout", "10s", "--status-interval", "1s", "--suspended-hold", "1s", "--ui-listen", "127.0.0.1:0"}))
	dcfg, _, err := flags.Config()
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := make(chan net.Addr, 1)
	dcfg.Logger = logger.WithName("dispatcher")
	dcfg.Listening = func(api, _ net.Addr) { apiAddr <- api }
	dcfg.UIListening = func(a net.Addr) { s.proxiedURL = "http://" + a.String() }
	dispDone := make(chan error, 1)
	go func() { dispDone <- dispatcher.Run(ctx, env.Config, dcfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-dispDone; err != nil {
			t.Logf("the dispatcher stopped: %v", err)
		}
		<-mgrDone
	})
	select {
	case a := <-apiAddr:
		s.apiURL = "http://" + a.String()
	case err := <-dispDone:
		t.Fatalf("the dispatcher stopped: %v", err)
	}

	// The receiver fails with a reason while broken, and verifies signatures once fixed.
	s.recv = &receiver.Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.broken.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":"database unavailable: connection pool exhausted","retry":true}`)
			return
		}
		s.recv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.recvURL = srv.URL + "/hooks"

	// The endpoint authenticates with a bearer token: the attempt log must show it masked.
	must(t, s.admin.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "billing-token", Labels: map[string]string{hooklinev1.LabelEndpointSecret: "true"}},
		StringData: map[string]string{"token": billingToken},
	}))
	must(t, s.admin.Create(ctx, &hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "billing"},
		Spec: hooklinev1.WebhookEndpointSpec{URL: s.recvURL, AllowInsecureHTTP: true,
			Auth: &hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: "billing-token", Key: "token"}}},
	}))
	// A receiver that has gone away: it answers 410, and the dispatcher disables its
	// endpoint.
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) }))
	t.Cleanup(gone.Close)
	must(t, s.admin.Create(ctx, &hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "legacy"},
		Spec:       hooklinev1.WebhookEndpointSpec{URL: gone.URL + "/hooks", AllowInsecureHTTP: true},
	}))
	must(t, s.admin.Create(ctx, &hooklinev1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "legacy"},
		Spec:       hooklinev1.SubscriptionSpec{EndpointRef: hooklinev1.EndpointRef{Name: "legacy"}, EventTypes: []string{"legacy.*"}},
	}))
	must(t, s.admin.Create(ctx, &hooklinev1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "invoices"},
		Spec: hooklinev1.SubscriptionSpec{
			EndpointRef: hooklinev1.EndpointRef{Name: "billing"}, EventTypes: []string{"invoice.*"},
			Delivery: &hooklinev1.DeliveryPolicy{Schedule: []hooklinev1.Duration{*hooklinev1.DurationOf(time.Second)}, MaxAttempts: ptr.To[int32](2)},
		},
	}))
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var ep hooklinev1.WebhookEndpoint
		var sb hooklinev1.Subscription
		_ = s.admin.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: "billing"}, &ep)
		_ = s.admin.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: "invoices"}, &sb)
		e, _ := json.MarshalIndent(ep.Status, "", " ")
		b, _ := json.MarshalIndent(sb.Status, "", " ")
		t.Logf("endpoint status: %s\nsubscription status: %s", e, b)
	})
	eventually(t, "the endpoint's signing keys", func() error {
		keys, err := receiver.FollowEndpoint(ctx, s.admin, s.ns, "billing", time.Second, logr.Discard())
		if err == nil {
			s.recv.Secrets = keys
		}
		return err
	})

	// The owner may do everything the dashboard offers; the viewer may only look.
	cs := kubernetes.NewForConfigOrDie(env.Config)
	// The owner publishes, and has the Role docs/dashboard.md shows: the test proves the
	// documented Role is enough for every page and action.
	owner, err := controlplane.ServiceAccountToken(ctx, cs, s.ns, "owner", rbacv1.PolicyRule{
		APIGroups: []string{hooklinev1.GroupVersion.Group}, Resources: []string{"events"}, Verbs: []string{"create"},
	})
	if err != nil {
		t.Fatal(err)
	}
	role := documentedRole(t, filepath.Join(env.RepoRoot, "docs", "dashboard.md"))
	role.Namespace = s.ns
	must(t, s.admin.Create(ctx, role))
	must(t, s.admin.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "owner", Namespace: s.ns}},
	}))
	eventually(t, "the documented Role in force", func() error {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:" + s.ns + ":owner",
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: s.ns, Verb: "create", Group: hooklinev1.GroupVersion.Group,
				Resource: "webhookendpoints", Subresource: "test"},
		}}, metav1.CreateOptions{})
		if err == nil && !sar.Status.Allowed {
			err = fmt.Errorf("not yet")
		}
		return err
	})
	viewer, err := controlplane.ServiceAccountToken(ctx, cs, s.ns, "viewer", rbacv1.PolicyRule{
		APIGroups: []string{hooklinev1.GroupVersion.Group},
		Resources: []string{"subscriptions", "webhookendpoints", "subscriptions/attempts", "subscriptions/deadletters", "webhookendpoints/attempts", "events"},
		Verbs:     []string{"get", "list"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.tokens["owner"], s.tokens["viewer"] = owner, viewer
	s.owner, s.ownerURL = s.dashboard(t, owner, []string{s.ns})
	s.viewer, s.viewURL = s.dashboard(t, viewer, nil)
	return s
}

// documentedRole reads the Role of the first yaml block of the doc.
func documentedRole(t *testing.T, doc string) *rbacv1.Role {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("%s has no yaml block", doc)
	}
	var role rbacv1.Role
	if err := yaml.UnmarshalStrict([]byte(block), &role); err != nil || role.Kind != "Role" || len(role.Rules) == 0 {
		t.Fatalf("the yaml block of %s is not a Role (%v):\n%s", doc, err, block)
	}
	return &role
}

// dashboard serves ui for a user with token, as `hookline ui` does.
func (s *stack) dashboard(t *testing.T, token string, namespaces []string) (*ui.Server, string) {
	t.Helper()
	cfg := rest.AnonymousClientConfig(s.env.Config)
	cfg.BearerToken = token
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ui.New(ln.Addr().String(), ui.Options{
		Kube:             cfg,
		Dispatcher:       &ui.Dispatcher{URL: s.apiURL, Token: token},
		Namespaces:       namespaces,
		DefaultNamespace: s.ns,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return srv, "http://" + ln.Addr().String()
}

func (s *stack) publish(t *testing.T, id, typ string, data any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "data": data})
	eventually(t, "publishing "+id, func() error {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, s.apiURL+"/v1/namespaces/"+s.ns+"/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+s.tokens["owner"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("%s: %s", resp.Status, msg)
		}
		return nil
	})
}

func (s *stack) waitDead(t *testing.T, n int) {
	t.Helper()
	d := &ui.Dispatcher{URL: s.apiURL, Token: s.tokens["owner"]}
	eventually(t, fmt.Sprintf("%d dead letters", n), func() error {
		dead, err := d.Dead(context.Background(), s.ns, "invoices", 100)
		if err == nil && len(dead) < n {
			at, _ := d.Attempts(context.Background(), s.ns, "invoices", 10)
			err = fmt.Errorf("%d dead letters so far; attempts %+v", len(dead), at)
		}
		return err
	})
}

func (s *stack) waitReceived(t *testing.T, id string) {
	t.Helper()
	eventually(t, id+" at the receiver", func() error {
		if !s.recv.SeenEvent(id) {
			return fmt.Errorf("not received")
		}
		return nil
	})
}

// screenshot saves the page, after checking what a screen reader and a keyboard need:
// every field has a label, every button a name, the chart a text alternative.
func (s *stack) screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	problems := get(t, ctx, chromedp.Evaluate[[]string](a11yCheck))
	for _, p := range problems {
		t.Errorf("%s page: %s", name, p)
	}
	png := get(t, ctx, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(s.shots, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

const a11yCheck = `(() => {
  const out = [];
  if (!document.documentElement.lang) out.push("the html element has no lang");
  document.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(el => {
    if (el.labels.length === 0 && !el.getAttribute("aria-label")) out.push("unlabelled field " + (el.id || el.name));
  });
  document.querySelectorAll("button").forEach(el => {
    if (!el.textContent.trim() && !el.getAttribute("aria-label")) out.push("a button without a name");
  });
  document.querySelectorAll("[role=img]").forEach(el => {
    const ref = el.getAttribute("aria-labelledby");
    if (!ref || !document.getElementById(ref) || !document.getElementById(ref).textContent.trim()) out.push("an image without a text alternative");
  });
  document.querySelectorAll("[aria-describedby]").forEach(el => {
    if (!document.getElementById(el.getAttribute("aria-describedby"))) out.push("aria-describedby names a missing element on " + el.id);
  });
  if (!document.querySelector("h1")) out.push("no h1");
  return out;
})()`
