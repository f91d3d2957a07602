package helm

import (
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/hookline/hookline/internal/workload"
)

// TestSecurityValues renders the TLS, cert-manager, NetworkPolicy and Secret
// opt-in values and finds each where it takes effect; the defaults render
// none of it.
func TestSecurityValues(t *testing.T) {
	c := setup(t)
	for _, o := range c.render(t) {
		if k := o.GetKind(); k == "NetworkPolicy" || k == "Certificate" {
			t.Errorf("the defaults render a %s", k)
		}
	}
	if s := settings(t, c.render(t)); s.TLS != nil || s.RequireSecretOptIn != nil {
		t.Errorf("the default settings carry tls %v, requireSecretOptIn %v", s.TLS, s.RequireSecretOptIn)
	}

	objs := c.render(t,
		"--set", "dispatcher.requireSecretOptIn=false",
		"--set", "dispatcher.tls.enabled=true",
		"--set", "dispatcher.tls.certManager.enabled=true",
		"--set", "dispatcher.tls.certManager.issuerRef.name=cluster-ca",
		"--set", "dispatcher.tls.certManager.issuerRef.kind=ClusterIssuer",
		"--set", "networkPolicy.enabled=true",
	)
	s := settings(t, objs)
	if s.TLS == nil || s.TLS.SecretName != "hookline-dispatcher-tls" || s.RequireSecretOptIn == nil || *s.RequireSecretOptIn {
		t.Errorf("settings: tls %+v, requireSecretOptIn %v", s.TLS, s.RequireSecretOptIn)
	}
	if err := s.Default("hookline/hookline:test").Validate(); err != nil {
		t.Errorf("the operator refuses the rendered settings: %v", err)
	}
	args := workload.Args(s.Default("hookline/hookline:test"))
	for _, want := range []string{"--require-secret-opt-in=false", "--tls-cert-file=/etc/hookline/tls/tls.crt", "--tls-key-file=/etc/hookline/tls/tls.key"} {
		if !slices.Contains(args, want) {
			t.Errorf("dispatcher args %v lack %s", args, want)
		}
	}

	cert := find(t, objs, "Certificate", "hookline-dispatcher")
	spec := cert.Object["spec"].(map[string]any)
	if spec["secretName"] != "hookline-dispatcher-tls" || cert.GetNamespace() != namespace {
		t.Errorf("Certificate %s/%s for Secret %v", cert.GetNamespace(), cert.GetName(), spec["secretName"])
	}
	if dns := spec["dnsNames"].([]any); !slices.Contains(dns, any("hookline-dispatcher."+namespace+".svc")) {
		t.Errorf("Certificate dnsNames %v lack the Service's name", dns)
	}
	if ref := spec["issuerRef"].(map[string]any); ref["name"] != "cluster-ca" || ref["kind"] != "ClusterIssuer" {
		t.Errorf("issuerRef %v", ref)
	}

	var np networkingv1.NetworkPolicy
	typed(t, find(t, objs, "NetworkPolicy", "hookline-dispatcher"), &np)
	if np.Spec.PodSelector.MatchLabels[workload.LabelComponent] != "dispatcher" || len(np.Spec.Ingress) != 2 {
		t.Fatalf("NetworkPolicy %+v", np.Spec)
	}
	api := np.Spec.Ingress[0]
	if api.Ports[0].Port.IntValue() != workload.APIPort || len(api.From) != 1 || api.From[0].NamespaceSelector.MatchLabels["hookline.io/publisher"] != "true" {
		t.Errorf("API rule %+v", api)
	}
	if m := np.Spec.Ingress[1]; m.Ports[0].Port.IntValue() != workload.MetricsPort || len(m.From) != 0 {
		t.Errorf("metrics rule %+v", m)
	}

	// No peers: nobody reaches the API port (no rule, rather than a rule without from,
	// which would let everyone in).
	var closed networkingv1.NetworkPolicy
	typed(t, find(t, c.render(t, "--set", "networkPolicy.enabled=true", "--set-json", "networkPolicy.from=[]"), "NetworkPolicy", "hookline-dispatcher"), &closed)
	for _, r := range closed.Spec.Ingress {
		if r.Ports[0].Port.IntValue() == workload.APIPort {
			t.Errorf("with no peers the API port is open: %+v", r)
		}
	}

	_, err := c.template("--set", "dispatcher.tls.enabled=true", "--set", "dispatcher.tls.certManager.enabled=true")
	if err == nil || !strings.Contains(err.Error(), "issuerRef.name is required") {
		t.Errorf("cert-manager without an issuer: %v", err)
	}
	_, err = c.template("--set", "dispatcher.tls.secretName=Not_A_Name")
	if err == nil {
		t.Error("an invalid TLS Secret name was accepted")
	}
}
