package monitoring

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestBundleParses parses every alert and dashboard query with Prometheus's parser and
// checks each selects at least one metric by name.
func TestBundleParses(t *testing.T) {
	qs, err := Queries("../..")
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 6+9 {
		t.Fatalf("found %d queries, want the 6 alerts and the dashboard's panels", len(qs))
	}
	used, err := Metrics(qs)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hookline_endpoints_disabled", "hookline_deliveries_dead_total", "hookline_endpoint_backlog",
		"hookline_signing_key_next_rotation_timestamp_seconds", "up", "hookline_status_writes_total"} {
		if len(used[name]) == 0 {
			t.Errorf("no rule or panel uses %s: an alert of the bundle is missing", name)
		}
	}
}

// TestMetricsBrokenQueryFails makes sure a query that does not parse is reported with
// where it is.
func TestMetricsBrokenQueryFails(t *testing.T) {
	for _, q := range []Query{
		{Where: "rule Broken", Expr: "sum by (namespace (hookline_deliveries_total)"},
		{Where: "rule NoMetric", Expr: "time() > 0"},
	} {
		if _, err := Metrics([]Query{q}); err == nil {
			t.Errorf("%s: %q accepted", q.Where, q.Expr)
		}
	}
	missing := Missing(map[string][]string{"a_total": {"rule A"}, "up": {"rule Down"}}, SampleNames("# HELP b\nb_total 1\n"))
	if len(missing) != 1 || missing[0] != "a_total (used by rule A)" {
		t.Errorf("Missing = %q, want only a_total", missing)
	}
}

// TestChartCarriesTheBundle checks the chart's copies (make manifests) are the same files.
func TestChartCarriesTheBundle(t *testing.T) {
	for src, dst := range map[string]string{
		"config/monitoring/prometheusrule.yaml":      "charts/hookline/files/monitoring/prometheusrule.yaml",
		"config/monitoring/dashboards/hookline.json": "charts/hookline/files/monitoring/hookline.json",
	} {
		a, err := os.ReadFile(filepath.Join("../..", src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join("../..", dst))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run `make manifests`", dst, src)
		}
	}
}
