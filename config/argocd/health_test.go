package argocd

import "testing"

func TestHealth(t *testing.T) {
	cond := func(typ, status, reason string, gen int64) map[string]any {
		return map[string]any{"type": typ, "status": status, "reason": reason, "message": "m", "observedGeneration": gen}
	}
	obj := func(gen, observed int64, conds ...map[string]any) map[string]any {
		status := map[string]any{"observedGeneration": observed}
		var list []any
		for _, c := range conds {
			list = append(list, c)
		}
		if list != nil {
			status["conditions"] = list
		}
		return map[string]any{"metadata": map[string]any{"generation": gen}, "status": status}
	}
	tests := []struct {
		name string
		obj  map[string]any
		want string
	}{
		{"no status", map[string]any{"metadata": map[string]any{"generation": int64(1)}}, "Progressing"},
		{"not observed yet", obj(1, -1), "Progressing"},
		{"generation behind", obj(2, 1, cond("Ready", "True", "Ready", 1)), "Progressing"},
		{"ready", obj(2, 2, cond("Ready", "True", "Ready", 2)), "Healthy"},
		{"ready for an old generation", obj(2, 2, cond("Ready", "True", "Ready", 1)), "Progressing"},
		{"suspended", obj(1, 1, cond("Ready", "True", "Suspended", 1)), "Suspended"},
		{"waiting", obj(1, 1, cond("Ready", "False", "SecretNotFound", 1), cond("Reconciling", "True", "SecretNotFound", 1)), "Progressing"},
		{"stalled", obj(1, 1, cond("Ready", "False", "InvalidFilter", 1), cond("Stalled", "True", "InvalidFilter", 1)), "Degraded"},
		{"deliveries failing do not degrade", obj(1, 1, cond("Ready", "True", "Ready", 1), cond("Degraded", "True", "DeliveryFailing", 1)), "Healthy"},
	}
	for _, kind := range []string{"WebhookEndpoint", "Subscription"} {
		for _, tt := range tests {
			got, _, err := Health(kind, tt.obj)
			if err != nil || got != tt.want {
				t.Errorf("%s %s: got %q, %v; want %q", kind, tt.name, got, err, tt.want)
			}
		}
	}
	if _, _, err := Health("Deployment", obj(1, 1)); err == nil {
		t.Error("a health check for a kind hookline does not define")
	}
}
