package server_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/catalog"
	"github.com/hookline/hookline/internal/server"
)

const invoiceSchema = `{"type":"object","required":["invoice","amount"],"properties":{"invoice":{"type":"string"},"amount":{"type":"integer","minimum":0},"lines":{"type":"array","items":{"type":"object","required":["sku"],"properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1},"amount":{"type":"integer"},"currency":{"type":"string","enum":["eur","usd"]}}}}}}`

// benchSchema checks every field of event1K's data.
const benchSchema = `{"type":"object","required":["invoice","customer","lines"],"additionalProperties":false,"properties":{"invoice":{"type":"string","pattern":"^in_"},"customer":{"type":"string","pattern":"^cus_"},"lines":{"type":"array","minItems":1,"maxItems":100,"items":{"type":"object","required":["sku","qty","amount","currency"],"additionalProperties":false,"properties":{"sku":{"type":"string","minLength":1},"qty":{"type":"integer","minimum":1},"amount":{"type":"integer","minimum":0},"currency":{"type":"string","enum":["eur","usd"]}}}}}}`

func testCatalog(enforce bool) *catalog.Catalog {
	return schemaCatalog(invoiceSchema, enforce)
}

func schemaCatalog(schema string, enforce bool) *catalog.Catalog {
	return catalog.NewStatic([]hooklinev1.EventType{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "invoice-paid", Generation: 1},
		Spec: hooklinev1.EventTypeSpec{Type: "invoice.paid", Enforce: enforce,
			Schema: &apiextensionsv1.JSON{Raw: []byte(schema)}},
	}})
}

func postJSON(h http.Handler, path, body string) *httptest.ResponseRecorder {
	return post(h, path, "application/json", body)
}

func TestEnforcedSchemaRefusesData(t *testing.T) {
	pub := &batchRecorder{}
	h := newHandler(t, server.Options{Publisher: pub, Schemas: testCatalog(true)})

	rec := postJSON(h, "/v1/namespaces/shop/events", `{"type":"invoice.paid","data":{"invoice":"in_1","amount":-5}}`)
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422: %s", rec.Code, rec.Body)
	}
	e := decodeError(t, rec)
	if e.Error.Field != "data.amount" || !strings.Contains(e.Error.Message, `rule "minimum"`) ||
		!strings.Contains(e.Error.Message, "#/properties/amount/minimum") || !strings.Contains(e.Error.Message, "invoice-paid") {
		t.Fatalf("error = %+v", e.Error)
	}

	rec = postJSON(h, "/v1/namespaces/shop/events", `{"type":"invoice.paid","data":{"invoice":"in_1"}}`)
	if e := decodeError(t, rec); rec.Code != 422 || e.Error.Field != "data" || !strings.Contains(e.Error.Message, `rule "required"`) {
		t.Fatalf("missing property: %d %+v", rec.Code, e.Error)
	}

	// A whole batch is refused, naming the event's index, when one event does not match.
	rec = postJSON(h, "/v1/namespaces/shop/events:batch", `{"events":[`+
		`{"type":"invoice.paid","data":{"invoice":"in_1","amount":1}},`+
		`{"type":"order.created","data":{"anything":true}},`+
		`{"type":"invoice.paid","data":{"invoice":"in_2","amount":1,"lines":[{"sku":"a","qty":0}]}}]}`)
	if e := decodeError(t, rec); rec.Code != 422 || e.Error.Field != "events[2].data.lines[0].qty" {
		t.Fatalf("batch: %d %+v", rec.Code, e.Error)
	}
	if pub.calls != 0 {
		t.Fatalf("%d events were stored; refused requests must store nothing", pub.calls)
	}

	// Matching data, and types the catalog does not list, are accepted.
	for _, body := range []string{
		`{"type":"invoice.paid","data":{"invoice":"in_1","amount":0}}`,
		`{"type":"order.created","data":{"amount":-5}}`,
	} {
		if rec := postJSON(h, "/v1/namespaces/shop/events", body); rec.Code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", body, rec.Code, rec.Body)
		}
	}
	if rec := postJSON(h, "/v1/namespaces/other/events", `{"type":"invoice.paid","data":{"amount":-5}}`); rec.Code != http.StatusAccepted {
		t.Fatalf("another namespace's catalog applied: %d %s", rec.Code, rec.Body)
	}
	if pub.calls != 3 {
		t.Fatalf("stored %d events, want 3", pub.calls)
	}
}

func TestSchemaNotEnforcedWithoutEnforce(t *testing.T) {
	pub := &recorder{}
	h := newHandler(t, server.Options{Publisher: pub, Schemas: testCatalog(false)})
	if rec := postJSON(h, "/v1/namespaces/shop/events", `{"type":"invoice.paid","data":{"amount":-5}}`); rec.Code != http.StatusAccepted {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// BenchmarkHandlerOneEventEnforced is BenchmarkHandlerOneEvent with the event's type
// enforcing a schema that checks every field of the data: the cost of validation.
func BenchmarkHandlerOneEventEnforced(b *testing.B) {
	h := newHandler(b, server.Options{Publisher: discard{}, Schemas: schemaCatalog(benchSchema, true)})
	body := []byte(event1K)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/v1/namespaces/shop/events", nil)
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
		rd := bytes.NewReader(body)
		req.Body = io.NopCloser(rd)
		rec := httptest.NewRecorder()
		for pb.Next() {
			rd.Reset(body)
			rec.Body.Reset()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}

func BenchmarkHandlerBatch100Enforced(b *testing.B) {
	h := newHandler(b, server.Options{Publisher: discard{}, Schemas: schemaCatalog(benchSchema, true)})
	events := make([]string, 100)
	for i := range events {
		events[i] = strings.Replace(event1K, `"id":"inv_123:paid",`, "", 1)
	}
	body := []byte(`{"events":[` + strings.Join(events, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/v1/namespaces/shop/events:batch", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
