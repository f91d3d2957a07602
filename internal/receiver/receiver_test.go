package receiver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/signing"
)

func signedRequest(t *testing.T, secret, id string, ts time.Time, body string) *http.Request {
	t.Helper()
	ks := signing.KeySet{Current: signing.Key{ID: "key_1", Secret: secret, CreatedAt: ts}}
	s, err := signing.NewSigner(ks, ts)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", bytes.NewBufferString(body))
	s.SetHeaders(req.Header, id, ts, []byte(body))
	return req
}

func TestVerifiesAndCounts(t *testing.T) {
	secret, _ := signing.GenerateSecret()
	other, _ := signing.GenerateSecret()
	now := time.Unix(1795729200, 0)
	r := &Receiver{Secrets: func() []string { return []string{secret} }, Now: func() time.Time { return now }}

	for _, tc := range []struct {
		req  *http.Request
		want int
	}{
		{signedRequest(t, secret, "msg_1", now, `{"type":"invoice.paid","data":{}}`), http.StatusNoContent},
		{signedRequest(t, secret, "msg_1", now, `{"type":"invoice.paid","data":{}}`), http.StatusNoContent},
		{signedRequest(t, other, "msg_2", now, `{"type":"x","data":{}}`), http.StatusUnauthorized},
		{signedRequest(t, secret, "msg_3", now.Add(-time.Hour), `{"type":"x","data":{}}`), http.StatusUnauthorized},
	} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, tc.req)
		if w.Code != tc.want {
			t.Errorf("%s: status %d, want %d (%s)", tc.req.Header.Get("webhook-id"), w.Code, tc.want, w.Body)
		}
	}
	if got, want := r.Stats(), (Stats{Accepted: 2, Unique: 1, Duplicates: 1, Rejected: 2}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if ds := r.Deliveries(); ds[0].Type != "invoice.paid" || ds[0].Duplicate || !ds[1].Duplicate {
		t.Errorf("deliveries %+v", ds)
	}
}

func TestFailsOnDemand(t *testing.T) {
	r := &Receiver{}
	r.FailWith(http.StatusServiceUnavailable)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", bytes.NewBufferString(`{}`)))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d while failing", w.Code)
	}
	r.FailWith(0)
	w = httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", bytes.NewBufferString(`{}`)))
	if w.Code != http.StatusNoContent || r.Stats().Accepted != 1 {
		t.Fatalf("status %d after recovering, stats %+v", w.Code, r.Stats())
	}
}

func TestHangUntilReleased(t *testing.T) {
	r := &Receiver{}
	srv := httptest.NewServer(r)
	defer srv.Close()
	r.Hang()
	done := make(chan int, 1)
	go func() {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, bytes.NewBufferString(`{}`))
		if err != nil {
			done <- 0
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case code := <-done:
		t.Fatalf("a hung receiver answered %d", code)
	case <-time.After(100 * time.Millisecond):
	}
	r.Release()
	if code := <-done; code != http.StatusNoContent {
		t.Fatalf("status %d after release", code)
	}
}
