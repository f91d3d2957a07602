package helm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// TestMonitoringBundle renders the chart with monitoring.enabled and finds the same bundle
// as config/monitoring: a ServiceMonitor in the dispatcher's namespace, a PodMonitor, the
// PrometheusRule with config/monitoring's groups, and the dashboard with Grafana's label.
// (The release is named hookline, so the objects are too.) Off by default: a cluster without the Prometheus Operator's CRDs must install the chart.
func TestMonitoringBundle(t *testing.T) {
	c := setup(t)
	for _, o := range c.render(t) {
		if o.GetAPIVersion() == "monitoring.coreos.com/v1" {
			t.Errorf("%s %s rendered with monitoring disabled", o.GetKind(), o.GetName())
		}
	}
	objs := c.render(t, "--set", "monitoring.enabled=true", "--set", "dispatcher.namespace=delivery",
		"--set", "monitoring.labels.release=prom")
	sm := find(t, objs, "ServiceMonitor", "hookline-dispatcher")
	if sm.GetNamespace() != "delivery" || sm.GetLabels()["release"] != "prom" {
		t.Errorf("ServiceMonitor in %q with labels %v, want the dispatcher's namespace and release=prom", sm.GetNamespace(), sm.GetLabels())
	}
	find(t, objs, "PodMonitor", "hookline-operator")
	dash := find(t, objs, "ConfigMap", "hookline-dashboard")
	if dash.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard labels %v lack grafana_dashboard", dash.GetLabels())
	}
	rule := find(t, objs, "PrometheusRule", "hookline")
	raw, err := os.ReadFile(filepath.Join(c.root, "config", "monitoring", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want["spec"], rule.Object["spec"]); diff != "" {
		t.Errorf("the chart's rules differ from config/monitoring's (-config +chart):\n%s", diff)
	}
}
