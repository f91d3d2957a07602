package workload

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestPlacement(t *testing.T) {
	podSpec := func(s Settings) corev1.PodSpec {
		return typed[appsv1.Deployment](t, Render(s).Deployment).Spec.Template.Spec
	}

	// The embedded queue's one pod goes where its volume is: nothing to spread.
	if p := podSpec(embedded()); p.Affinity != nil || len(p.TopologySpreadConstraints) != 0 {
		t.Errorf("embedded: affinity %+v, spread %+v", p.Affinity, p.TopologySpreadConstraints)
	}

	p := podSpec(external())
	if p.Affinity == nil || p.Affinity.PodAntiAffinity == nil || len(p.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatalf("external: affinity %+v, want a preferred anti-affinity", p.Affinity)
	}
	term := p.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	if term.TopologyKey != corev1.LabelHostname || !reflect.DeepEqual(term.LabelSelector.MatchLabels, podLabels()) {
		t.Errorf("anti-affinity term %+v: want the dispatcher's pods on different nodes", term)
	}
	if len(p.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
		t.Error("a required anti-affinity would leave replicas pending on a small cluster")
	}
	want := []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector: term.LabelSelector}}
	if !reflect.DeepEqual(p.TopologySpreadConstraints, want) {
		t.Errorf("spread = %+v, want %+v", p.TopologySpreadConstraints, want)
	}

	// Given settings replace the defaults; empty ones turn them off.
	s := external()
	s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"hookline"}}}}},
	}}}
	s.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 2, TopologyKey: "rack", WhenUnsatisfiable: corev1.DoNotSchedule}}
	p = podSpec(s)
	if !reflect.DeepEqual(p.Affinity, s.Affinity) || !reflect.DeepEqual(p.TopologySpreadConstraints, s.TopologySpreadConstraints) {
		t.Errorf("overridden: affinity %+v, spread %+v", p.Affinity, p.TopologySpreadConstraints)
	}
	s.Affinity, s.TopologySpreadConstraints = &corev1.Affinity{}, []corev1.TopologySpreadConstraint{}
	if p = podSpec(s); (p.Affinity != nil && !reflect.DeepEqual(*p.Affinity, corev1.Affinity{})) || len(p.TopologySpreadConstraints) != 0 {
		t.Errorf("turned off: affinity %+v, spread %+v", p.Affinity, p.TopologySpreadConstraints)
	}
}

// TestNATSSecretVolumes: each Secret is mounted as a directory with its keys listed,
// never with subPath, so a rotated Secret reaches the running pods.
func TestNATSSecretVolumes(t *testing.T) {
	s := Settings{Queue: QueueExternal, NATS: NATS{URL: "tls://nats:4222", TokenSecret: "nats-token",
		TLS: &NATSTLS{CASecret: "nats-tls", ClientSecret: "nats-tls"}}}.Default(image)
	pod := typed[appsv1.Deployment](t, Render(s).Deployment).Spec.Template.Spec
	got := map[string][]string{}
	for _, v := range pod.Volumes {
		if v.Secret == nil {
			continue
		}
		var keys []string
		for _, it := range v.Secret.Items {
			if it.Key != it.Path {
				t.Errorf("volume %s: key %s mounted as %s", v.Name, it.Key, it.Path)
			}
			keys = append(keys, it.Key)
		}
		got[v.Name+"="+v.Secret.SecretName] = keys
	}
	want := map[string][]string{"nats-token=nats-token": {"token"}, "nats-ca=nats-tls": {"ca.crt"}, "nats-client-tls=nats-tls": {"tls.crt", "tls.key"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("secret volumes = %v, want %v", got, want)
	}
	for _, m := range pod.Containers[0].VolumeMounts {
		if m.SubPath != "" || (m.Name != "data" && m.Name != "tmp" && !m.ReadOnly) {
			t.Errorf("mount %+v: Secrets are mounted read-only, as directories", m)
		}
	}
	refs := s.NATSSecrets()
	if len(refs) != 3 || refs[0].Setting != "nats.tokenSecret" || refs[1].Kind != SecretCA || refs[2].Kind != SecretClientTLS {
		t.Errorf("NATSSecrets() = %+v", refs)
	}
	if refs := embedded().NATSSecrets(); refs != nil {
		t.Errorf("embedded NATSSecrets() = %+v", refs)
	}
}
