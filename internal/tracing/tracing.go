// Package tracing is hookline's OpenTelemetry tracing: off unless the standard OTEL_*
// environment variables ask for an OTLP exporter, and then a span for each event's ingest
// (a child of the producer's W3C traceparent), its fan-out, and every delivery attempt,
// linked across the queue by the traceparent stored with the event. Metrics stay
// Prometheus.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Span names.
const (
	SpanIngest  = "hookline.ingest"
	SpanFanout  = "hookline.fanout"
	SpanAttempt = "hookline.attempt"
)

// Attribute keys.
const (
	AttrNamespace    = attribute.Key("hookline.namespace")
	AttrEventID      = attribute.Key("hookline.event.id")
	AttrEventType    = attribute.Key("hookline.event.type")
	AttrEndpoint     = attribute.Key("hookline.endpoint")
	AttrSubscription = attribute.Key("hookline.subscription")
	AttrAttempt      = attribute.Key("hookline.attempt")
	AttrOutcome      = attribute.Key("hookline.outcome")
	AttrDeliveries   = attribute.Key("hookline.deliveries")
	AttrStatusCode   = attribute.Key("http.response.status_code")
)

const instrumentation = "github.com/hookline/hookline"

var (
	tracer     atomic.Pointer[trace.Tracer]
	propagator = propagation.TraceContext{}
)

// Enabled reports whether spans are recorded. When it is false every function here is a
// no-op that costs a load and a branch.
func Enabled() bool { return tracer.Load() != nil }

// Use makes tp the provider of hookline's spans; nil turns tracing off. Setup calls it;
// tests call it with their own provider.
func Use(tp trace.TracerProvider) {
	if tp == nil {
		tracer.Store(nil)
		return
	}
	t := tp.Tracer(instrumentation)
	tracer.Store(&t)
}

// Setup turns tracing on when the environment asks for it: OTEL_TRACES_EXPORTER=otlp, or
// an OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, unless
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. The exporter is OTLP over
// http/protobuf and reads the rest of the standard variables itself (headers, timeout,
// certificates, compression); the sampler follows OTEL_TRACES_SAMPLER and the resource
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. The returned function flushes and stops
// the exporter; it is nil when tracing is off.
func Setup(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	if !wanted() {
		return nil, nil
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := os.Getenv(v); p != "" {
			if p != "http/protobuf" {
				return nil, fmt.Errorf("%s=%s: hookline exports traces over OTLP http/protobuf only; set it to http/protobuf (the collector's port 4318)", v, p)
			}
			break
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("setting up the OTLP trace exporter from OTEL_* variables: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(serviceName(service))))
	if err != nil {
		res = resource.Default()
	}
	if os.Getenv("OTEL_SERVICE_NAME") != "" {
		res = resource.Default() // the variable wins, and Default reads it
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	Use(tp)
	return func(ctx context.Context) error {
		Use(nil)
		return tp.Shutdown(ctx)
	}, nil
}

func serviceName(s string) string {
	if s == "" {
		return "hookline"
	}
	return s
}

func wanted() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch strings.ToLower(os.Getenv("OTEL_TRACES_EXPORTER")) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Middleware puts the W3C trace context of incoming requests (traceparent, tracestate)
// into their context, for the ingest span to continue. It is h itself when tracing is off
// at the time it is built.
func Middleware(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Enabled() && r.Header.Get("Traceparent") != "" {
			r = r.WithContext(propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		}
		h.ServeHTTP(w, r)
	})
}

// traceparent renders a span's context as a W3C traceparent.
func traceparent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	return c["traceparent"]
}

// fromTraceparent is a context whose remote parent is tp.
func fromTraceparent(tp string) context.Context {
	return propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
}

// Ingest starts the span of storing one event, a child of the producer's trace context in
// ctx (see Middleware). It returns the traceparent to store with the event ("" when
// tracing is off) and the function that ends the span.
func Ingest(ctx context.Context, namespace, id, typ string) (tp string, end func(error)) {
	t := tracer.Load()
	if t == nil {
		return "", func(error) {}
	}
	ctx, span := (*t).Start(ctx, SpanIngest, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		AttrNamespace.String(namespace), AttrEventID.String(id), AttrEventType.String(typ)))
	return traceparent(ctx), func(err error) { endSpan(span, err) }
}

// Fanout starts the span of matching a stored event to its subscriptions, a child of the
// event's ingest span. It returns the traceparent the event's deliveries carry, so their
// attempts are children of the fan-out; tp and the result are "" when the event has no
// trace.
//
//nolint:contextcheck // the span continues the trace stored with the event (tp), not the caller's context
func Fanout(tp, namespace, id, typ string) (child string, end func(deliveries int, err error)) {
	t := tracer.Load()
	if t == nil || tp == "" {
		return tp, func(int, error) {}
	}
	ctx, span := (*t).Start(fromTraceparent(tp), SpanFanout, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		AttrNamespace.String(namespace), AttrEventID.String(id), AttrEventType.String(typ)))
	return traceparent(ctx), func(n int, err error) {
		span.SetAttributes(AttrDeliveries.Int(n))
		endSpan(span, err)
	}
}

// Attempt is the span of one delivery attempt; the zero value records nothing.
type Attempt struct{ span trace.Span }

// StartAttempt starts the span of one delivery attempt, a child of the delivery's stored
// traceparent, and returns the traceparent to send to the receiver: the attempt's own.
//
//nolint:contextcheck // the span continues the trace stored with the event (tp), not the caller's context
func StartAttempt(tp, namespace, endpoint, subscription, eventID string, attempt int) (Attempt, string) {
	t := tracer.Load()
	if t == nil || tp == "" {
		return Attempt{}, ""
	}
	ctx, span := (*t).Start(fromTraceparent(tp), SpanAttempt, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		AttrNamespace.String(namespace), AttrEndpoint.String(endpoint), AttrSubscription.String(subscription),
		AttrEventID.String(eventID), AttrAttempt.Int(attempt)))
	return Attempt{span: span}, traceparent(ctx)
}

// End records the attempt's HTTP status (0: no response), its outcome (delivered, retry,
// dead, ...) and error, and ends the span.
func (a Attempt) End(statusCode int, outcome string, err error) {
	if a.span == nil {
		return
	}
	if statusCode != 0 {
		a.span.SetAttributes(AttrStatusCode.Int(statusCode))
	}
	a.span.SetAttributes(AttrOutcome.String(outcome))
	if err == nil && outcome != "delivered" {
		err = errors.New(outcome)
	}
	endSpan(a.span, err)
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
