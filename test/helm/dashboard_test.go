package helm

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/hookline/hookline/internal/workload"
)

// TestDashboardValues: dispatcher.dashboard reaches the operator's settings, from which it
// renders --ui-listen and a port named dashboard on the container and the Service; the
// NetworkPolicy opens that port to networkPolicy.dashboardFrom only. The defaults render
// none of it.
func TestDashboardValues(t *testing.T) {
	c := setup(t)
	if s := settings(t, c.render(t)); s.Dashboard != nil {
		t.Errorf("the default settings carry dashboard %+v", s.Dashboard)
	}
	var open networkingv1.NetworkPolicy
	typed(t, find(t, c.render(t, "--set", "networkPolicy.enabled=true"), "NetworkPolicy", "hookline-dispatcher"), &open)
	for _, r := range open.Spec.Ingress {
		if p := r.Ports[0].Port.IntValue(); p != workload.APIPort && p != workload.MetricsPort {
			t.Errorf("without the dashboard the NetworkPolicy opens port %d", p)
		}
	}

	const proxy = `[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"auth"}},"podSelector":{"matchLabels":{"app":"oauth2-proxy"}}}]`
	objs := c.render(t,
		"--set", "dispatcher.dashboard.enabled=true",
		"--set", "dispatcher.dashboard.port=8443",
		"--set", "dispatcher.tls.enabled=true",
		"--set", "networkPolicy.enabled=true",
		"--set-json", "networkPolicy.dashboardFrom="+proxy,
	)
	s := settings(t, objs)
	if want := (&workload.Dashboard{Enabled: true, Port: 8443}); !cmp.Equal(s.Dashboard, want) {
		t.Errorf("settings dashboard %+v, want %+v", s.Dashboard, want)
	}
	d := s.Default("hookline/hookline:test")
	if err := d.Validate(); err != nil {
		t.Fatalf("the operator refuses the rendered settings: %v", err)
	}

	// What the operator renders from those settings.
	rendered := workload.Render(d)
	var deployment appsv1.Deployment
	var service corev1.Service
	convert(t, rendered.Deployment, &deployment)
	convert(t, rendered.Service, &service)
	container := deployment.Spec.Template.Spec.Containers[0]
	if !slices.Contains(container.Args, "--ui-listen=:8443") || !slices.Contains(container.Args, "--tls-cert-file=/etc/hookline/tls/tls.crt") {
		t.Errorf("dispatcher args %q lack --ui-listen=:8443 and the TLS certificate it shares with the API", container.Args)
	}
	if !slices.ContainsFunc(container.Ports, func(p corev1.ContainerPort) bool { return p.Name == "dashboard" && p.ContainerPort == 8443 }) {
		t.Errorf("container ports %+v lack dashboard 8443", container.Ports)
	}
	if !slices.ContainsFunc(service.Spec.Ports, func(p corev1.ServicePort) bool {
		return p.Name == "dashboard" && p.Port == 8443 && p.TargetPort.String() == "dashboard"
	}) {
		t.Errorf("Service ports %+v lack dashboard 8443", service.Spec.Ports)
	}

	var np networkingv1.NetworkPolicy
	typed(t, find(t, objs, "NetworkPolicy", "hookline-dispatcher"), &np)
	var rule *networkingv1.NetworkPolicyIngressRule
	for i, r := range np.Spec.Ingress {
		if r.Ports[0].Port.IntValue() == 8443 {
			rule = &np.Spec.Ingress[i]
		}
	}
	if rule == nil {
		t.Fatalf("the NetworkPolicy %+v does not open the dashboard's port 8443", np.Spec.Ingress)
	}
	if len(rule.From) != 1 || rule.From[0].PodSelector.MatchLabels["app"] != "oauth2-proxy" ||
		rule.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "auth" {
		t.Errorf("dashboard rule from %+v, want the proxy's pods only", rule.From)
	}
	if *rule.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("dashboard rule protocol %s", *rule.Ports[0].Protocol)
	}

	// Peers for a dashboard that is off open nothing and change no setting.
	off := c.render(t, "--set", "networkPolicy.enabled=true", "--set-json", "networkPolicy.dashboardFrom="+proxy)
	typed(t, find(t, off, "NetworkPolicy", "hookline-dispatcher"), &np)
	if len(np.Spec.Ingress) != 2 {
		t.Errorf("dashboardFrom without the dashboard: ingress %+v", np.Spec.Ingress)
	}
}

// convert turns an apply configuration the operator renders into the API type it configures.
func convert(t *testing.T, ac any, out any) {
	t.Helper()
	data, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
}
