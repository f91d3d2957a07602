package workload

import (
	"slices"
	"strings"
	"testing"
)

func TestEgressSettings(t *testing.T) {
	for _, tt := range []struct {
		name string
		e    *Egress
		want string // substring of the error; empty: valid
	}{
		{"none", nil, ""},
		{"proxy", &Egress{Proxy: "http://egress.hookline-system.svc:3128", NoProxy: []string{".svc", "10.0.0.0/8"}, AllowPrivateProxy: true}, ""},
		{"empty", &Egress{}, "egress.proxy is empty"},
		{"socks", &Egress{Proxy: "socks5://p:1080"}, `egress.proxy: proxy URL scheme "socks5"`},
		{"credentials", &Egress{Proxy: "http://u:p@p:3128"}, "egress.proxy must not contain credentials"},
		{"list in one entry", &Egress{Proxy: "http://p:3128", NoProxy: []string{"a.example,b.example"}}, `egress.noProxy "a.example,b.example"`},
	} {
		s := Settings{Egress: tt.e}.Default("hookline:test")
		err := s.Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.want)
		}
	}

	args := Args(Settings{Egress: &Egress{Proxy: "http://p:3128", NoProxy: []string{".svc", "10.0.0.0/8"}, AllowPrivateProxy: true}}.Default("hookline:test"))
	for _, want := range []string{"--egress-proxy=http://p:3128", "--egress-no-proxy=.svc,10.0.0.0/8", "--egress-proxy-allow-private"} {
		if !slices.Contains(args, want) {
			t.Errorf("Args() = %v, missing %s", args, want)
		}
	}
	if args := Args(Settings{}.Default("hookline:test")); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--egress") }) {
		t.Errorf("Args() without egress = %v", args)
	}
}

func TestTracingSettings(t *testing.T) {
	for _, tt := range []struct {
		name string
		tr   *Tracing
		want string
	}{
		{"none", nil, ""},
		{"endpoint", &Tracing{Endpoint: "http://otel-collector.observability:4318", SampleRatio: "0.25"}, ""},
		{"no endpoint", &Tracing{}, `tracing.endpoint "": give the OTLP/HTTP collector's URL`},
		{"grpc scheme", &Tracing{Endpoint: "dns:///collector:4317"}, "tracing.endpoint"},
		{"ratio over 1", &Tracing{Endpoint: "http://c:4318", SampleRatio: "2"}, `tracing.sampleRatio "2": give a number from 0 to 1`},
	} {
		err := Settings{Tracing: tt.tr}.Default("hookline:test").Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.want)
		}
	}
	got := map[string]string{}
	for _, e := range (&Tracing{Endpoint: "http://c:4318", SampleRatio: "0.1"}).env() {
		got[*e.Name] = *e.Value
	}
	if got["OTEL_EXPORTER_OTLP_ENDPOINT"] != "http://c:4318" || got["OTEL_EXPORTER_OTLP_PROTOCOL"] != "http/protobuf" ||
		got["OTEL_TRACES_SAMPLER"] != "parentbased_traceidratio" || got["OTEL_TRACES_SAMPLER_ARG"] != "0.1" {
		t.Errorf("env: %v", got)
	}
	d := Render(Settings{Tracing: &Tracing{Endpoint: "http://c:4318"}}.Default("hookline:test")).Deployment
	found := false
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		found = found || (*e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" && *e.Value == "http://c:4318")
	}
	if !found {
		t.Error("the rendered dispatcher has no OTEL_EXPORTER_OTLP_ENDPOINT")
	}
}

func TestEventRetentionSettings(t *testing.T) {
	for _, tt := range []struct {
		name string
		r    *EventRetention
		want string
	}{
		{"none", nil, ""},
		{"both", &EventRetention{MaxAge: "72h", MaxBytes: "4GiB"}, ""},
		{"keep none, no byte bound", &EventRetention{MaxAge: "0", MaxBytes: "0"}, ""},
		{"days", &EventRetention{MaxAge: "7d"}, `eventRetention.maxAge "7d": give a duration such as 168h`},
		{"under a second", &EventRetention{MaxAge: "10ms"}, `eventRetention.maxAge "10ms": give at least 1s`},
		{"not a size", &EventRetention{MaxBytes: "lots"}, `eventRetention.maxBytes "lots": give a size such as 1GiB`},
		{"negative size", &EventRetention{MaxBytes: "-1Gi"}, `eventRetention.maxBytes "-1Gi"`},
	} {
		err := Settings{EventRetention: tt.r}.Default("hookline:test").Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.want)
		}
	}
	args := Args(Settings{EventRetention: &EventRetention{MaxAge: "72h", MaxBytes: "4GiB"}, ExtraArgs: []string{"--event-retention=24h"}}.Default("hookline:test"))
	i, j := slices.Index(args, "--event-retention=72h"), slices.Index(args, "--event-retention=24h")
	if i < 0 || !slices.Contains(args, "--event-retention-bytes=4GiB") || j < i {
		t.Errorf("Args() = %v: want --event-retention=72h and --event-retention-bytes=4GiB, before extraArgs (which override them)", args)
	}
}
