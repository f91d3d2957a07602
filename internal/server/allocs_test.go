//go:build !race

// The race detector changes allocation counts, so these bounds hold only without it;
// `make test-allocs` (part of `make test`) runs them without.

package server_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/hookline/hookline/internal/server"
)

// TestHotPathAllocations bounds the allocations of ingest: routing, reading, decoding
// and validating a single ~1 KiB event and answering 202, and the same per event of a
// batch of 100, with a publisher that stores nothing. The bounds are today's counts
// plus the little slack net/http's recorder needs: a change that adds an allocation
// per event fails here, without timing anything.
func TestHotPathAllocations(t *testing.T) {
	h := newHandler(t, server.Options{Publisher: discard{}})
	events := make([]string, 100)
	for i := range events {
		events[i] = strings.Replace(event1K, `"id":"inv_123:paid",`, "", 1)
	}
	batch := `{"events":[` + strings.Join(events, ",") + `]}`
	cases := []struct {
		name, path, body string
		perEvent         int
		max, maxBytes    float64
	}{
		{"single event", "/v1/namespaces/shop/events", event1K, 1, singleEventAllocs, singleEventBytes},
		{"batch of 100, per event", "/v1/namespaces/shop/events:batch", batch, 100, batchEventAllocs, batchEventBytes},
	}
	for _, c := range cases {
		body := []byte(c.body)
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, c.path, nil)
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
		rd := bytes.NewReader(body)
		req.Body = io.NopCloser(rd)
		rec := httptest.NewRecorder()
		serve := func() {
			rd.Reset(body)
			rec.Body.Reset()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				t.Fatalf("%s: status %d: %s", c.name, rec.Code, rec.Body)
			}
		}
		serve()
		n := testing.AllocsPerRun(100, serve) / float64(c.perEvent)
		t.Logf("%s: %.2f allocations per event", c.name, n)
		if n > c.max {
			t.Errorf("%s: %.2f allocations per event, want at most %v: an allocation was added to ingest", c.name, n, c.max)
		}
		if b := bytesPerRun(100, serve) / float64(c.perEvent); b > c.maxBytes {
			t.Errorf("%s: %.0f bytes allocated per event, want at most %v: ingest allocates more per event", c.name, b, c.maxBytes)
		} else {
			t.Logf("%s: %.0f bytes allocated per event", c.name, b)
		}
	}
}

// bytesPerRun is testing.AllocsPerRun for bytes: the mean allocated by f
// over runs calls, after one to warm up.
func bytesPerRun(runs int, f func()) float64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(runs)
}

// Set from measurements (go test -run TestHotPathAllocations -v ./internal/server/).
const (
	singleEventAllocs = 19
	batchEventAllocs  = 6
	// Bytes per event, today's 1,560 and 4,266 with a tenth of slack: a
	// single event's body buffer is sized from its Content-Length (4,632
	// bytes when it was always 4 KiB); a batch's grows as it arrives.
	singleEventBytes = 1700
	batchEventBytes  = 4700
)
