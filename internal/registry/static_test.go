package registry_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/signing"
)

func names(subs []*registry.Subscription) string {
	var out []string
	for _, s := range subs {
		out = append(out, s.Name)
	}
	return strings.Join(out, ",")
}

func TestStaticMatching(t *testing.T) {
	ks := signing.KeySet{Current: newKey("k1", t0)}
	suspended := subscriptionObj("a", "suspended", "ep", "*")
	suspended.Spec.Suspend = true
	badFilter := subscriptionObj("a", "bad-filter", "ep", "*")
	badFilter.Spec.Filter = "data.amount >"
	filtered := subscriptionObj("a", "filtered", "ep", "invoice.paid")
	filtered.Spec.Filter = "data.amount > 10"
	reg, err := registry.NewStatic(registry.StaticObjects{
		Endpoints: []hooklinev1.WebhookEndpoint{endpointObj("a", "ep", "https://example.com/hook")},
		Subscriptions: []hooklinev1.Subscription{
			subscriptionObj("a", "invoices", "ep", "invoice.*"),
			subscriptionObj("a", "paid", "ep", "invoice.paid", "order.paid"),
			subscriptionObj("a", "all", "ep", "*"),
			subscriptionObj("a", "orphan", "missing-endpoint", "*"),
			subscriptionObj("b", "other-namespace", "ep", "*"),
			suspended, badFilter, filtered,
		},
		Secrets: []corev1Secret{registry.SigningSecret("a", "ep", ks)},
	}, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	for _, tc := range []struct{ ns, typ, want string }{
		{"a", "invoice.paid", "all,filtered,invoices,paid"},
		{"a", "invoice.paid.late", "all,invoices"},
		{"a", "order.paid", "all,paid"},
		{"a", "user.created", "all"},
		{"b", "invoice.paid", ""}, // its endpoint is in another namespace
		{"c", "invoice.paid", ""},
	} {
		// Twice: the second answer comes from the memo.
		for range 2 {
			if got := names(reg.Matching(tc.ns, tc.typ)); got != tc.want {
				t.Errorf("Matching(%q, %q) = %q, want %q", tc.ns, tc.typ, got, tc.want)
			}
		}
	}

	bad := reg.Subscription("a", "bad-filter")
	if bad == nil || bad.Usable || bad.Reason != hooklinev1.ReasonInvalidFilter || !strings.Contains(bad.Message, "spec.filter") {
		t.Errorf("bad-filter = %+v, want unusable with reason InvalidFilter", bad)
	}
	if f := reg.Subscription("a", "filtered"); f.Filter == nil || f.Filter.String() != "data.amount > 10" {
		t.Errorf("filtered has filter %v", f.Filter)
	}
	if s := reg.SubscriptionByUID("a", reg.Subscription("a", "paid").UID); s == nil || s.Name != "paid" {
		t.Errorf("SubscriptionByUID = %v", s)
	}
	if got := len(reg.Subscriptions("a")); got != 7 {
		t.Errorf("Subscriptions(a) has %d entries, want 7", got)
	}
	if err := reg.WaitForSync(context.Background()); err != nil || !reg.Ready() || reg.CheckReady(context.Background()) != nil {
		t.Errorf("a static registry is ready at once")
	}
}

func TestStaticEndpointReadiness(t *testing.T) {
	ks := signing.KeySet{Current: newKey("k1", t0)}
	withBearer := func(name, secret string) hooklinev1.WebhookEndpoint {
		ep := endpointObj("a", name, "https://example.com/hook")
		ep.Spec.Auth = &hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: secret, Key: "token"}}
		return ep
	}
	withCA := endpointObj("a", "bad-ca", "https://example.com/hook")
	withCA.Spec.TLS = &hooklinev1.EndpointTLS{CA: &hooklinev1.SecretKeyRef{Name: "ca", Key: "ca.crt"}}
	insecure := endpointObj("a", "insecure", "http://example.com/hook")
	insecure.Spec.AllowInsecureHTTP = false

	// A Secret that has not opted in: its value must not reach any endpoint.
	unlabelled := secretObj("a", "db-password", map[string]string{"token": "hunter2"})
	unlabelled.Labels = nil
	eps := []hooklinev1.WebhookEndpoint{
		withBearer("ok", "token"),
		withBearer("missing-secret", "nope"),
		withBearer("missing-key", "empty"),
		withBearer("not-opted-in", "db-password"),
		endpointObj("a", "no-keys", "https://example.com/hook"),
		endpointObj("a", "bad-keys", "https://example.com/hook"),
		withCA, insecure,
	}
	secrets := []corev1Secret{
		secretObj("a", "token", map[string]string{"token": "t0ken\n"}),
		secretObj("a", "empty", map[string]string{"other": "x"}),
		secretObj("a", "ca", map[string]string{"ca.crt": "not PEM"}),
		unlabelled,
		registry.SigningSecret("a", "bad-keys", signing.KeySet{Current: signing.Key{ID: "x", Secret: "whsec_short", CreatedAt: t0}}),
	}
	for _, ep := range eps {
		if ep.Name != "no-keys" && ep.Name != "bad-keys" {
			secrets = append(secrets, registry.SigningSecret("a", ep.Name, ks))
		}
	}
	reg, err := registry.NewStatic(registry.StaticObjects{Endpoints: eps, Secrets: secrets}, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	// With the rule turned off for the installation, the same endpoint is ready.
	optOut, err := registry.NewStatic(registry.StaticObjects{Endpoints: eps, Secrets: secrets}, registry.Options{AllowUnlabelledSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	defer optOut.Close()
	if e := optOut.Endpoint("a", "not-opted-in"); e == nil || !e.Ready {
		t.Errorf("with AllowUnlabelledSecrets, not-opted-in = %+v, want ready", e)
	}

	for _, tc := range []struct {
		name, reason, message string
	}{
		{"ok", hooklinev1.ReasonReady, ""},
		{"missing-secret", hooklinev1.ReasonSecretNotFound, `spec.auth.bearer refers to Secret "nope", which does not exist`},
		{"missing-key", hooklinev1.ReasonSecretInvalid, `Secret "empty" has no key "token"`},
		{"not-opted-in", hooklinev1.ReasonSecretNotOptedIn, `kubectl label secret db-password hookline.io/endpoint-secret=true`},
		{"no-keys", registry.ReasonSigningKeyPending, strconv.Quote(signing.SecretName("no-keys")) + " does not exist yet"},
		{"bad-keys", hooklinev1.ReasonSigningKeyInvalid, `data key "current"`},
		{"bad-ca", hooklinev1.ReasonTLSInvalid, "CA bundle"},
		{"insecure", registry.ReasonInvalidConfiguration, "allowInsecureHTTP"},
	} {
		e := reg.Endpoint("a", tc.name)
		if e == nil {
			t.Errorf("%s: no entry", tc.name)
			continue
		}
		if e.Reason != tc.reason || !strings.Contains(e.Message, tc.message) || e.Ready != (tc.reason == hooklinev1.ReasonReady) {
			t.Errorf("%s: ready=%v reason=%q message=%q; want reason %q, message containing %q", tc.name, e.Ready, e.Reason, e.Message, tc.reason, tc.message)
		}
		if e.Ready != (e.Target != nil) {
			t.Errorf("%s: ready=%v but target=%v", tc.name, e.Ready, e.Target)
		}
		if strings.Contains(e.Message, "t0ken") || strings.Contains(e.Message, "hunter2") {
			t.Errorf("%s: message leaks a secret: %s", tc.name, e.Message)
		}
	}
	ok := reg.Endpoint("a", "ok")
	if ok.Timeout != delivery.DefaultTimeout || ok.Limits != (registry.Limits{MaxInFlight: 32, DisableAfter: 120 * time.Hour}) {
		t.Errorf("defaults: timeout %v limits %+v", ok.Timeout, ok.Limits)
	}
}

// TestStaticEndpointDelivers sends through a static endpoint to a loopback receiver: the
// resolved auth and headers are sent and the signature verifies.
func TestStaticEndpointDelivers(t *testing.T) {
	rcv := newReceiver(t)
	ks := signing.KeySet{Current: newKey("k1", t0)}
	ep := endpointObj("a", "ep", rcv.URL+"/hook")
	one, burst := int32(5), int32(7)
	ep.Spec.Limits = &hooklinev1.EndpointLimits{Timeout: hooklinev1.DurationOf(3 * time.Second), RateLimit: &one, Burst: &burst, DisableAfter: hooklinev1.DurationOf(time.Hour)}
	ep.Spec.Auth = &hooklinev1.EndpointAuth{APIKey: &hooklinev1.APIKeyAuth{In: hooklinev1.APIKeyInHeader, Name: "X-Api-Key", ValueFrom: hooklinev1.SecretKeyRef{Name: "creds", Key: "key"}}}
	plain := "literal"
	ep.Spec.Headers = []hooklinev1.Header{
		{Name: "X-Tenant", Value: &plain},
		{Name: "X-From-Secret", ValueFrom: &hooklinev1.SecretKeyRef{Name: "creds", Key: "header"}},
	}
	reg, err := registry.NewStatic(registry.StaticObjects{
		Endpoints: []hooklinev1.WebhookEndpoint{ep},
		Secrets: []corev1Secret{
			registry.SigningSecret("a", "ep", ks),
			secretObj("a", "creds", map[string]string{"key": "k3y", "header": "h\r\n"}),
		},
	}, registry.Options{SSRF: loopback()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	e := reg.Endpoint("a", "ep")
	if !e.Ready {
		t.Fatalf("not ready: %s", e.Message)
	}
	if e.Timeout != 3*time.Second || e.Limits != (registry.Limits{Rate: 5, Burst: 7, MaxInFlight: 32, DisableAfter: time.Hour}) {
		t.Errorf("limits: timeout %v %+v", e.Timeout, e.Limits)
	}
	res := delivery.Send(context.Background(), e.Target, delivery.Message{ID: "msg_1", WebhookID: "msg_1", Type: "a.b", Time: t0, Data: []byte(`{}`)}, time.Now())
	if res.Verdict != delivery.Delivered {
		t.Fatalf("send: %+v", res)
	}
	req, body := rcv.last()
	if got := req.Header.Get("X-Api-Key") + "|" + req.Header.Get("X-Tenant") + "|" + req.Header.Get("X-From-Secret"); got != "k3y|literal|h" {
		t.Errorf("headers = %q", got)
	}
	if err := signing.Verify([]string{ks.Current.Secret}, req.Header, body, time.Now(), time.Minute); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
}

// TestSignDropsExpiredPreviousKey: the previous key signs until it expires and not after,
// without anything rebuilding the endpoint.
func TestSignDropsExpiredPreviousKey(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	prev := newKey("k0", t0.Add(-time.Hour))
	prev.ExpiresAt = t0.Add(time.Minute)
	ks := signing.KeySet{Current: newKey("k1", t0), Previous: &prev}
	reg, err := registry.NewStatic(registry.StaticObjects{
		Endpoints: []hooklinev1.WebhookEndpoint{endpointObj("a", "ep", "https://example.com/")},
		Secrets:   []corev1Secret{registry.SigningSecret("a", "ep", ks)},
	}, registry.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	e := reg.Endpoint("a", "ep")
	sig := func() string { return e.Sign("msg_1", t0, []byte("{}")) }
	if n := len(strings.Fields(sig())); n != 2 || strings.Join(e.KeyIDs(), ",") != "k1,k0" {
		t.Fatalf("before expiry: %d signatures, keys %v; want 2 (k1,k0)", n, e.KeyIDs())
	}
	clk.SetTime(prev.ExpiresAt)
	if n := len(strings.Fields(sig())); n != 1 || strings.Join(e.KeyIDs(), ",") != "k1" {
		t.Fatalf("at expiry: %d signatures, keys %v; want 1 (k1)", n, e.KeyIDs())
	}
}

func TestDeliveryPolicy(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		name    string
		in      *hooklinev1.DeliveryPolicy
		check   func(p delivery.Policy, timeout time.Duration, ordered bool) bool
		wantErr string
	}{
		{"nil is the default", nil, func(p delivery.Policy, to time.Duration, o bool) bool {
			return p.MaxAttempts == 11 && len(p.Schedule) == 10 && to == 0 && !o
		}, ""},
		{"schedule", &hooklinev1.DeliveryPolicy{Schedule: durations(0, 5*time.Second, time.Minute), Timeout: hooklinev1.DurationOf(5 * time.Second), Ordering: hooklinev1.OrderingOrdered, ClientErrors: hooklinev1.ClientErrorsDrop},
			func(p delivery.Policy, to time.Duration, o bool) bool {
				return p.MaxAttempts == 4 && p.Schedule[2] == time.Minute && to == 5*time.Second && o && p.ClientErrors == delivery.DropClientErrors
			}, ""},
		{"exponential", &hooklinev1.DeliveryPolicy{Exponential: &hooklinev1.ExponentialBackoff{InitialInterval: *hooklinev1.DurationOf(time.Second), MaxInterval: *hooklinev1.DurationOf(time.Hour), Multiplier: 3}, MaxAge: hooklinev1.DurationOf(2 * time.Hour), RetryAfterMax: hooklinev1.DurationOf(10 * time.Minute)},
			func(p delivery.Policy, _ time.Duration, _ bool) bool {
				return p.Schedule == nil && p.Exponential.Initial == time.Second && p.Exponential.Max == time.Hour &&
					p.Exponential.Multiplier == 3 && p.MaxAttempts == 20 && p.MaxAge == 2*time.Hour && p.RetryAfterMax == 10*time.Minute
			}, ""},
		{"maxAttempts overrides", &hooklinev1.DeliveryPolicy{MaxAttempts: i32(3)}, func(p delivery.Policy, _ time.Duration, _ bool) bool {
			return p.MaxAttempts == 3 && len(p.Schedule) == 10
		}, ""},
		{"bad schedule", &hooklinev1.DeliveryPolicy{Schedule: durations(5*time.Second, -time.Second)}, nil, "spec.delivery"},
		{"bad maxAge", &hooklinev1.DeliveryPolicy{MaxAge: hooklinev1.DurationOf(-time.Hour)}, nil, "spec.delivery"},
		{"bad ordering", &hooklinev1.DeliveryPolicy{Ordering: "Sometimes"}, nil, "spec.delivery.ordering"},
	} {
		p, to, o, err := registry.DeliveryPolicy(tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.check(p, to, o):
			t.Errorf("%s: got %+v timeout %v ordered %v", tc.name, p, to, o)
		}
	}
}

func durations(ds ...time.Duration) []hooklinev1.Duration {
	out := make([]hooklinev1.Duration, len(ds))
	for i, d := range ds {
		out[i] = *hooklinev1.DurationOf(d)
	}
	return out
}
