package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hookline/hookline/internal/server"
)

type discard struct{}

func (discard) Publish(context.Context, server.Event) (server.PublishResult, error) {
	return server.PublishResult{}, nil
}

// event1K is an event of about 1 KiB, mostly data.
var event1K = `{"type":"invoice.paid","id":"inv_123:paid","data":{"invoice":"in_123","customer":"cus_456","lines":[` +
	strings.Repeat(`{"sku":"sku_abcdef","qty":2,"amount":1999,"currency":"eur"},`, 14) + `{"sku":"last","qty":1,"amount":1,"currency":"eur"}]}}`

// BenchmarkHandlerOneEvent measures the handler's own cost per event (routing, reading,
// decoding, validating, answering) with a publisher that does nothing.
func BenchmarkHandlerOneEvent(b *testing.B) {
	h := newHandler(b, server.Options{Publisher: discard{}})
	body := []byte(event1K)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		// One request, its body reset each time: what is measured is the handler, not
		// building requests.
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

func BenchmarkHandlerBatch100(b *testing.B) {
	h := newHandler(b, server.Options{Publisher: discard{}})
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
