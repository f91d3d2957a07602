package workload

import (
	"os"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The operator may only grant what it holds (it has no escalate or bind verbs), so every
// rule of the dispatcher must be covered by the operator's generated ClusterRole. The
// controllers suite checks the same on the API server; this finds a missing marker
// without one.
func TestOperatorHoldsWhatItGrants(t *testing.T) {
	data, err := os.ReadFile("../../config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var operator rbacv1.ClusterRole
	if err := yaml.Unmarshal(data, &operator); err != nil {
		t.Fatal(err)
	}
	covered := func(group, resource, verb string) bool {
		for _, r := range operator.Rules {
			if (slices.Contains(r.APIGroups, group) || slices.Contains(r.APIGroups, "*")) &&
				(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) &&
				(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
				return true
			}
		}
		return false
	}
	for _, r := range append(NamespacedRules(), AuthRules()...) {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if !covered(g, res, v) {
						t.Errorf("the dispatcher gets %s on %s.%s, which the operator does not hold: add a kubebuilder:rbac marker and run make manifests", v, res, g)
					}
				}
			}
		}
	}
}
