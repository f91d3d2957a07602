package catalog_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/catalog"
	"github.com/hookline/hookline/internal/controlplane"
)

// TestLiveCatalog runs the dispatcher's catalog against a real kube-apiserver and etcd:
// it sees EventTypes created, changed and deleted, enforcing the current generation's
// schema.
func TestLiveCatalog(t *testing.T) {
	env, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cat-"}}
	if err := c.Create(ctx, nsObj); err != nil {
		t.Fatal(err)
	}
	ns := nsObj.Name

	et := &hooklinev1.EventType{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "invoice-paid"},
		Spec: hooklinev1.EventTypeSpec{Type: "invoice.paid", Enforce: true,
			Schema: &apiextensionsv1.JSON{Raw: []byte(`{"type":"object","required":["invoice"]}`)}},
	}
	if err := c.Create(ctx, et); err != nil {
		t.Fatal(err)
	}

	cat, err := catalog.New(env.Config, nil, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cat.Start(ctx) }()
	if err := cat.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cat.CheckReady(ctx); err != nil {
		t.Fatal(err)
	}
	// Listed at start: enforced at once.
	if v := cat.CheckData(ns, "invoice.paid", []byte(`{}`)); v == nil || v.Rule != "required" || v.EventType != "invoice-paid" {
		t.Fatalf("CheckData = %+v, want a required violation", v)
	}
	if v := cat.CheckData(ns, "invoice.paid", []byte(`{"invoice":"in_1"}`)); v != nil {
		t.Fatalf("valid data refused: %+v", v)
	}

	// A new generation's schema replaces the old.
	et.Spec.Schema = &apiextensionsv1.JSON{Raw: []byte(`{"type":"object","required":["invoice","amount"]}`)}
	if err := c.Update(ctx, et); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new schema", func() bool {
		v := cat.CheckData(ns, "invoice.paid", []byte(`{"invoice":"in_1"}`))
		return v != nil && v.Rule == "required"
	})

	// Enforcement off: anything goes.
	et.Spec.Enforce = false
	if err := c.Update(ctx, et); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "enforce off", func() bool { return cat.CheckData(ns, "invoice.paid", []byte(`[]`)) == nil })

	// Deleted: gone from the catalog.
	if err := c.Delete(ctx, et); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion", func() bool { return cat.Lookup(ns, "invoice.paid") == nil })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
