package status

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/signing"
	"github.com/hookline/hookline/internal/ssrf"
)

// The real delivery engine, a receiver that answers 410 Gone on demand, and
// the reporter: deliveries show in status, the disable shows as a condition
// and an Event, and the annotation re-enables the endpoint.
func TestWithTheDeliveryEngine(t *testing.T) {
	cluster(t)
	ctx := context.Background()
	ns := newNamespace(t)
	var answer atomic.Int32
	answer.Store(http.StatusOK)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(answer.Load()))
	}))
	t.Cleanup(rc.Close)

	ep := &hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"},
		Spec:       hooklinev1.WebhookEndpointSpec{URL: rc.URL + "/hook", AllowInsecureHTTP: true},
	}
	sub := &hooklinev1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "invoices"},
		Spec:       hooklinev1.SubscriptionSpec{EndpointRef: hooklinev1.EndpointRef{Name: "billing"}, EventTypes: []string{"*"}},
	}
	for _, o := range []client.Object{ep, sub} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	secret, err := signing.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	keys := signing.KeySet{Current: signing.Key{ID: "k1", Secret: secret, CreatedAt: time.Now().Add(-time.Hour)}}
	allow, err := ssrf.ParsePolicy([]string{"127.0.0.0/8", "::1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.NewStatic(registry.StaticObjects{
		Endpoints:     []hooklinev1.WebhookEndpoint{*ep},
		Subscriptions: []hooklinev1.Subscription{*sub},
		Secrets:       []corev1.Secret{registry.SigningSecret(ns, "billing", keys)},
	}, registry.Options{SSRF: allow})
	if err != nil {
		t.Fatal(err)
	}
	q := openQueue(t)
	engCtx, stopEngine := context.WithCancel(ctx)
	engDone := make(chan error, 1)
	var started atomic.Bool
	t.Cleanup(func() {
		stopEngine()
		if !started.Load() {
			return
		}
		if err := <-engDone; err != nil {
			t.Errorf("engine: %v", err)
		}
	})
	startReporterWith(t, q, Options{Namespaces: []string{ns}, ReportEvery: 100 * time.Millisecond, WriteInterval: 200 * time.Millisecond, Backlog: q},
		func(disabled []engine.DisabledEndpoint, obs engine.Observer) Engine {
			eng, err := engine.New(engine.Options{
				Queue: q, Routes: reg, Observer: obs, Disabled: disabled, Logger: testr.New(t),
				DisabledHold: 500 * time.Millisecond, SuspendedHold: 500 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			started.Store(true)
			go func() { engDone <- eng.Run(engCtx) }()
			return eng
		})

	publish := func(id string) {
		if _, err := q.PublishEvent(ctx, queue.Event{Namespace: ns, ID: id, Type: "invoice.paid", Time: time.Now(), Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	delivered := func(n int64) func() (bool, string) {
		return func() (bool, string) {
			e, s := billing(t, ns), invoices(t, ns)
			ok := e.Status.Delivery != nil && e.Status.Delivery.Delivered == n && s.Status.Delivery != nil && s.Status.Delivery.Delivered == n &&
				condOf(e.Status.Conditions, hooklinev1.ConditionDelivering).Status == "True" &&
				condOf(e.Status.Conditions, hooklinev1.ConditionDisabled).Status == "False"
			return ok, fmt.Sprintf("endpoint %+v %s; subscription %+v", e.Status.Delivery, describeConds(e.Status.Conditions), s.Status.Delivery)
		}
	}
	publish("evt_1")
	eventually(t, 60*time.Second, delivered(1))

	answer.Store(http.StatusGone)
	publish("evt_2")
	eventually(t, 60*time.Second, func() (bool, string) {
		e := billing(t, ns)
		d := condOf(e.Status.Conditions, hooklinev1.ConditionDisabled)
		return d.Status == "True" && d.Reason == hooklinev1.ReasonEndpointGone, describeConds(e.Status.Conditions)
	})
	eventually(t, 30*time.Second, func() (bool, string) {
		for _, ev := range listEvents(t, ns) {
			if ev.Reason == EventEndpointDisabled && strings.Contains(ev.Note, "410 Gone") && strings.Contains(ev.Note, "kubectl annotate") {
				return true, ""
			}
		}
		return false, "waiting for the EndpointDisabled Event"
	})

	answer.Store(http.StatusOK)
	patch := client.RawPatch("application/merge-patch+json",
		fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"now"}}}`, hooklinev1.AnnotationEnable))
	if err := k8s.Patch(ctx, billing(t, ns), patch); err != nil {
		t.Fatal(err)
	}
	// The held delivery comes back and goes through.
	eventually(t, 60*time.Second, delivered(2))
	if h := billing(t, ns).Status.LastHandledEnable; h != "now" {
		t.Fatalf("lastHandledEnable %q", h)
	}
}
