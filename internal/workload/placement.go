package workload

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
)

// ZoneLabel and HostnameLabel are the well-known node labels replicas are spread over.
const (
	ZoneLabel     = corev1.LabelTopologyZone
	HostnameLabel = corev1.LabelHostname
)

// placement sets where the dispatcher's pods may run. With the external queue the
// replicas share the work, so by default they prefer different nodes (anti-affinity) and
// spread evenly over zones: losing a node or a zone then takes as few of them as it can.
// Both are preferences (ScheduleAnyway, preferred anti-affinity), so a cluster with one
// zone or fewer nodes than replicas still runs them all. Settings that give Affinity or
// TopologySpreadConstraints replace the defaults; empty ones turn them off.
func placement(s Settings, spec *corev1ac.PodSpecApplyConfiguration) {
	external := s.Queue == QueueExternal
	switch {
	case s.Affinity != nil:
		spec.WithAffinity(convert[corev1ac.AffinityApplyConfiguration](*s.Affinity))
	case external:
		spec.WithAffinity(corev1ac.Affinity().WithPodAntiAffinity(corev1ac.PodAntiAffinity().
			WithPreferredDuringSchedulingIgnoredDuringExecution(corev1ac.WeightedPodAffinityTerm().
				WithWeight(100).
				WithPodAffinityTerm(corev1ac.PodAffinityTerm().
					WithTopologyKey(HostnameLabel).
					WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(podLabels()))))))
	}
	switch {
	case s.TopologySpreadConstraints != nil:
		for _, c := range s.TopologySpreadConstraints {
			spec.WithTopologySpreadConstraints(convert[corev1ac.TopologySpreadConstraintApplyConfiguration](c))
		}
	case external:
		spec.WithTopologySpreadConstraints(corev1ac.TopologySpreadConstraint().
			WithMaxSkew(1).
			WithTopologyKey(ZoneLabel).
			WithWhenUnsatisfiable(corev1.ScheduleAnyway).
			WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(podLabels())))
	}
}

// convert turns an API object into its apply configuration, which has the same JSON
// form.
func convert[AC any](v any) *AC {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", v, err))
	}
	ac := new(AC)
	if err := json.Unmarshal(data, ac); err != nil {
		panic(fmt.Sprintf("decoding %T into its apply configuration: %v", v, err))
	}
	return ac
}
