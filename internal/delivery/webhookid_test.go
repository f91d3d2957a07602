package delivery

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// TestWebhookIDOfUnchanged: the webhook-id of a delivery must not change
// between versions (receivers de-duplicate on it, across an upgrade too), so
// the stack-buffer path and the streaming path for long ids both give what the
// plain definition gives: "msg_" and 18 bytes of SHA-256 over the three
// values, each followed by a zero byte, in URL-safe base64.
func TestWebhookIDOfUnchanged(t *testing.T) {
	reference := func(ns, id, uid string) string {
		h := sha256.New()
		for _, s := range []string{ns, id, uid} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		return "msg_" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:18])
	}
	uid := "8d1e4a52-7c1e-4f0e-9a43-0d6a3c1b2e77"
	for _, n := range []int{0, 1, 100, 256 - 3 - 36 - 7, 256 - 3 - 36 - 6, 256 - 3 - 36 - 5, 300, 4096} {
		id := strings.Repeat("e", n)
		if got, want := WebhookIDOf("billing", id, uid), reference("billing", id, uid); got != want {
			t.Errorf("event id of %d bytes: %s, want %s", n, got, want)
		}
	}
	// Pinned: the id a receiver saw for this delivery before this code changed.
	if got, want := WebhookIDOf("shop", "order-1", "uid-a"), "msg_ooJZ-VjSsHN99UkQ7XA-IjiZ"; got != want {
		t.Errorf("WebhookIDOf = %q, want %q", got, want)
	}
}
