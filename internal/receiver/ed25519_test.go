package receiver

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/signing"
)

// The receiver verifies v1a deliveries with the whpk_ public key, and with the whsk_
// private keys FollowEndpoint reads from an ed25519 endpoint's Secret.
func TestVerifiesEd25519(t *testing.T) {
	priv, _ := signing.GenerateEd25519Secret()
	pub, err := signing.PublicKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := signing.GenerateEd25519Secret()
	now := time.Unix(1795729200, 0)
	for _, key := range []string{pub, priv} {
		r := &Receiver{Secrets: func() []string { return []string{key} }, Now: func() time.Time { return now }}
		for _, tc := range []struct {
			req  *http.Request
			want int
		}{
			{signedRequest(t, priv, "msg_1", now, `{"type":"invoice.paid","data":{}}`), http.StatusNoContent},
			{signedRequest(t, other, "msg_2", now, `{"type":"x","data":{}}`), http.StatusUnauthorized},
		} {
			w := httptest.NewRecorder()
			r.ServeHTTP(w, tc.req)
			if w.Code != tc.want {
				t.Errorf("key %.5s, %s: status %d, want %d (%s)", key, tc.req.Header.Get("webhook-id"), w.Code, tc.want, w.Body)
			}
		}
	}
}
