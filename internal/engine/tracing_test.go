package engine

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/hookline/hookline/internal/tracing"
)

// collected is one span as an OTLP receiver got it.
type collected struct {
	traceID, spanID, parentID string
	name                      string
	attrs                     map[string]string
	failed                    bool
}

// otlpCollector is an OTLP/HTTP trace receiver in the test process: it decodes the
// protobuf export requests the dispatcher's exporter sends to /v1/traces.
type otlpCollector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []collected
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	c := &otlpCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf POST to /v1/traces", http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *otlpCollector) add(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				cs := collected{
					traceID: hex.EncodeToString(s.GetTraceId()), spanID: hex.EncodeToString(s.GetSpanId()),
					parentID: hex.EncodeToString(s.GetParentSpanId()), name: s.GetName(), attrs: map[string]string{},
					failed: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
				}
				for _, kv := range s.GetAttributes() {
					v := kv.GetValue()
					switch {
					case v.GetStringValue() != "":
						cs.attrs[kv.GetKey()] = v.GetStringValue()
					default:
						cs.attrs[kv.GetKey()] = fmt.Sprint(v.GetIntValue())
					}
				}
				c.spans = append(c.spans, cs)
			}
		}
	}
}

func (c *otlpCollector) all() []collected {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]collected(nil), c.spans...)
}

// TestTracingSpanTree runs tracing as the dispatcher does, configured by OTEL_* variables,
// and checks the trees an OTLP receiver gets for a delivered, a retried and a dead event:
// producer → ingest → fan-out → one span per attempt, with the receiver getting each
// attempt's traceparent.
func TestTracingSpanTree(t *testing.T) {
	col := newOTLPCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	stop, err := tracing.Setup(context.Background(), "hookline-test")
	if err != nil || stop == nil {
		t.Fatalf("Setup: %v (enabled %v)", err, stop != nil)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = stop(context.Background())
		}
	}()

	f := newFixture(t)
	var mu sync.Mutex
	tries := map[string]int{}
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		mu.Lock()
		tries[r.id()]++
		n := tries[r.id()]
		mu.Unlock()
		switch {
		case r.id() == "delivered", r.id() == "retried" && n > 1:
			w.WriteHeader(http.StatusNoContent)
		case r.id() == "retried":
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp", schedule("1s"))
	f.start(testOptions())

	// Each event is published as the dispatcher's API does, under a producer's trace.
	producers := map[string]trace.SpanContext{}
	for i, id := range []string{"delivered", "retried", "dead"} {
		sc := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{0x4b, byte(i + 1), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14},
			SpanID:  trace.SpanID{0xaa, byte(i + 1), 1, 2, 3, 4, 5, 6}, TraceFlags: trace.FlagsSampled, Remote: true,
		})
		producers[id] = sc
		ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
		ev := event(id)
		var end func(error)
		ev.TraceParent, end = tracing.Ingest(ctx, ev.Namespace, ev.ID, ev.Type)
		_, err := f.q.PublishEvent(ctx, ev)
		end(err)
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(45 * time.Second)
	for f.subscriptionStats("invoices").Delivered != 2 || len(f.dead("invoices")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: stats %+v, %d dead, %d requests", f.subscriptionStats("invoices"), len(f.dead("invoices")), rc.count())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(context.Background()); err != nil {
		t.Fatalf("flushing spans: %v", err)
	}
	stopped = true

	spans := col.all()
	byTrace := map[string][]collected{}
	for _, s := range spans {
		byTrace[s.traceID] = append(byTrace[s.traceID], s)
	}
	sent := traceparentsSent(rc) // attempt span id -> the traceparent the receiver got
	want := map[string][]string{
		"delivered": {"1:204:delivered"},
		"retried":   {"1:502:retry", "2:204:delivered"},
		"dead":      {"1:500:retry", "2:500:dead"},
	}
	for id, sc := range producers {
		tr := byTrace[sc.TraceID().String()]
		ingest := only(t, id, tr, tracing.SpanIngest)
		if ingest.parentID != sc.SpanID().String() || ingest.attrs["hookline.event.id"] != id {
			t.Errorf("%s: ingest span %+v, want a child of the producer's span %s", id, ingest, sc.SpanID())
		}
		fanout := only(t, id, tr, tracing.SpanFanout)
		if fanout.parentID != ingest.spanID || fanout.attrs["hookline.deliveries"] != "1" {
			t.Errorf("%s: fan-out span %+v, want a child of ingest with 1 delivery", id, fanout)
		}
		var got []string
		for _, s := range tr {
			if s.name != tracing.SpanAttempt {
				continue
			}
			if s.parentID != fanout.spanID || s.attrs["hookline.endpoint"] != "erp" || s.attrs["hookline.subscription"] != "invoices" {
				t.Errorf("%s: attempt span %+v, want a child of the fan-out for erp/invoices", id, s)
			}
			if s.failed != (s.attrs["hookline.outcome"] != "delivered") {
				t.Errorf("%s: attempt span %+v: error status and outcome disagree", id, s)
			}
			if _, ok := sent[s.spanID]; !ok {
				t.Errorf("%s: the receiver got no traceparent naming attempt span %s", id, s.spanID)
			}
			got = append(got, s.attrs["hookline.attempt"]+":"+s.attrs["http.response.status_code"]+":"+s.attrs["hookline.outcome"])
		}
		sort.Strings(got)
		if strings.Join(got, " ") != strings.Join(want[id], " ") {
			t.Errorf("%s: attempts %v, want %v", id, got, want[id])
		}
	}
	if t.Failed() {
		for _, s := range spans {
			t.Logf("span %+v", s)
		}
	}
}

func only(t *testing.T, id string, spans []collected, name string) collected {
	t.Helper()
	var found []collected
	for _, s := range spans {
		if s.name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d %s spans, want 1 (trace has %d spans)", id, len(found), name, len(spans))
	}
	return found[0]
}

// traceparentsSent maps the span id of each traceparent rc received to the
// whole header.
func traceparentsSent(rc *receiver) map[string]string {
	sent := map[string]string{}
	for _, r := range rc.requests() {
		tp := r.header.Get("Traceparent")
		if parts := strings.Split(tp, "-"); len(parts) == 4 {
			sent[parts[2]] = tp
		}
	}
	return sent
}
