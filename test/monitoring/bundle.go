// Package monitoring reads hookline's observability bundle (config/monitoring): the alerting
// rules and the Grafana dashboard, every expression parsed with Prometheus's own PromQL
// parser. Its tests check the bundle parses and that the chart carries the same copy; the
// real-node tests (test/node) check every metric it uses against a running dispatcher's and
// operator's /metrics.
package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// Synthetic are series Prometheus itself makes, not a target: `up` for the dispatcher-down
// alert.
var Synthetic = map[string]bool{"up": true}

// Query is one PromQL expression of the bundle and where it is.
type Query struct {
	Where string // "rule HooklineBacklogGrowing", "panel Backlog by endpoint"
	Expr  string
}

// Queries reads every alert expression of config/monitoring/prometheusrule.yaml and every
// panel target of config/monitoring/dashboards/hookline.json under root.
func Queries(root string) ([]Query, error) {
	var qs []Query
	raw, err := os.ReadFile(filepath.Join(root, "config", "monitoring", "prometheusrule.yaml"))
	if err != nil {
		return nil, err
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert, Record, Expr string
				}
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		return nil, fmt.Errorf("prometheusrule.yaml: %w", err)
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			qs = append(qs, Query{Where: "rule " + r.Alert + r.Record, Expr: r.Expr})
		}
	}
	raw, err = os.ReadFile(filepath.Join(root, "config", "monitoring", "dashboards", "hookline.json"))
	if err != nil {
		return nil, err
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		return nil, fmt.Errorf("hookline.json: %w", err)
	}
	for _, p := range dash.Panels {
		for _, t := range p.Targets {
			qs = append(qs, Query{Where: "panel " + p.Title, Expr: t.Expr})
		}
	}
	return qs, nil
}

// grafanaVars stand in for the dashboard's variables, so its queries parse as Prometheus
// would receive them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*")

// Metrics parses every query and returns the metric names each uses, by name, with the
// queries using it.
func Metrics(qs []Query) (map[string][]string, error) {
	used := map[string][]string{}
	for _, q := range qs {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(q.Expr))
		if err != nil {
			return nil, fmt.Errorf("%s: %q does not parse: %w", q.Where, q.Expr, err)
		}
		names := 0
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
				used[vs.Name] = append(used[vs.Name], q.Where)
				names++
			}
			return nil
		})
		if names == 0 {
			return nil, fmt.Errorf("%s: %q selects no metric by name", q.Where, q.Expr)
		}
	}
	return used, nil
}

// Missing lists the metrics used but absent from the scraped sample names.
func Missing(used map[string][]string, scraped map[string]bool) []string {
	var out []string
	for name, where := range used {
		if !scraped[name] && !Synthetic[name] {
			out = append(out, fmt.Sprintf("%s (used by %s)", name, strings.Join(where, ", ")))
		}
	}
	sort.Strings(out)
	return out
}

// SampleNames are the metric names of the samples in a Prometheus text exposition, with
// histograms' _bucket, _sum and _count series as they are.
func SampleNames(exposition string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(exposition, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}
