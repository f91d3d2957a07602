package workload

import (
	"fmt"
	"net/url"
	"strconv"

	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// Tracing turns on the dispatcher's OpenTelemetry tracing (docs/operations.md#tracing): the
// operator sets the standard OTEL_* variables on the dispatcher's container.
type Tracing struct {
	// Endpoint is the OTLP/HTTP collector, e.g. http://otel-collector.observability:4318
	// (OTEL_EXPORTER_OTLP_ENDPOINT; spans go to its /v1/traces).
	Endpoint string `json:"endpoint"`
	// SampleRatio, when set, samples this share of new traces, "0" to "1"; traces a
	// producer started are sampled as the producer decided
	// (OTEL_TRACES_SAMPLER=parentbased_traceidratio). Default: every trace.
	SampleRatio string `json:"sampleRatio,omitempty"`
}

func (t *Tracing) problems() []error {
	if t == nil {
		return nil
	}
	var errs []error
	if u, err := url.Parse(t.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("tracing.endpoint %q: give the OTLP/HTTP collector's URL, e.g. http://otel-collector.observability:4318", t.Endpoint))
	}
	if t.SampleRatio != "" {
		if r, err := strconv.ParseFloat(t.SampleRatio, 64); err != nil || r < 0 || r > 1 {
			errs = append(errs, fmt.Errorf("tracing.sampleRatio %q: give a number from 0 to 1, e.g. 0.1", t.SampleRatio))
		}
	}
	return errs
}

func (t *Tracing) env() []*corev1ac.EnvVarApplyConfiguration {
	if t == nil {
		return nil
	}
	env := func(k, v string) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(k).WithValue(v)
	}
	out := []*corev1ac.EnvVarApplyConfiguration{
		env("OTEL_EXPORTER_OTLP_ENDPOINT", t.Endpoint),
		env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
		env("OTEL_SERVICE_NAME", "hookline-dispatcher"),
	}
	if t.SampleRatio != "" {
		out = append(out, env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), env("OTEL_TRACES_SAMPLER_ARG", t.SampleRatio))
	}
	return out
}
