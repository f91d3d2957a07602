package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestOffByDefault(t *testing.T) {
	for _, v := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(v, "")
	}
	stop, err := Setup(context.Background(), "x")
	if stop != nil || err != nil || Enabled() {
		t.Fatalf("Setup without OTEL_* variables: %v, %v; want tracing off", stop != nil, err)
	}
	if tp, _ := Ingest(context.Background(), "ns", "id", "t"); tp != "" {
		t.Errorf("Ingest with tracing off stored %q", tp)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	if stop, _ := Setup(context.Background(), "x"); stop != nil {
		t.Error("OTEL_SDK_DISABLED=true did not keep tracing off")
	}
}

func TestOnlyHTTPProtobuf(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	_, err := Setup(context.Background(), "x")
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: hookline exports traces over OTLP http/protobuf only") {
		t.Fatalf("Setup with grpc: %v", err)
	}
	if Enabled() {
		t.Error("tracing on after a refused setup")
	}
}

// TestMiddlewareContinuesTheProducersTrace: a request's traceparent becomes the parent of
// the ingest span, whose own context is what is stored with the event.
func TestMiddlewareContinuesTheProducersTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	Use(tp)
	t.Cleanup(func() { Use(nil) })

	const producer = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var stored string
	h := Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		var end func(error)
		stored, end = Ingest(r.Context(), "team-a", "evt-1", "invoice.paid")
		end(nil)
	}))
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/namespaces/team-a/events", nil)
	req.Header.Set("Traceparent", producer)
	h.ServeHTTP(httptest.NewRecorder(), req)

	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != SpanIngest {
		t.Fatalf("spans: %v", spans)
	}
	s := spans[0]
	if s.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("ingest parent %v, want the producer's span", s.Parent())
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + s.SpanContext().SpanID().String() + "-01"; stored != want {
		t.Errorf("stored traceparent %q, want %q", stored, want)
	}

	// Without a traceparent the ingest span starts a trace of its own.
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", nil))
	if s := rec.Ended()[1]; s.Parent().IsValid() || !strings.Contains(stored, s.SpanContext().TraceID().String()) {
		t.Errorf("a request without traceparent: parent %v, stored %q", s.Parent(), stored)
	}
}
