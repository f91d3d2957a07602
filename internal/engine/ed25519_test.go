package engine

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/signing"
)

// verifyV1aIndependently checks the webhook-signature header as a Standard Webhooks
// receiver using only crypto/ed25519 would: for each "v1a,<base64>" entry, an ed25519
// signature over "{webhook-id}.{webhook-timestamp}.{body}" made by the whpk_ public key.
// It returns the public keys (by index) that verified.
func verifyV1aIndependently(t *testing.T, h http.Header, body []byte, publicKeys ...string) []int {
	t.Helper()
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil || id == "" {
		t.Fatalf("bad webhook-id %q or webhook-timestamp %q", id, ts)
	}
	msg := []byte(id + "." + ts + "." + string(body))
	var ok []int
	for i, pk := range publicKeys {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(pk, "whpk_"))
		if err != nil || len(raw) != ed25519.PublicKeySize {
			t.Fatalf("public key %q is not whpk_ + base64 of 32 bytes", pk)
		}
		for _, entry := range strings.Fields(h.Get("webhook-signature")) {
			version, sig, _ := strings.Cut(entry, ",")
			if version != "v1a" {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(sig)
			if err == nil && ed25519.Verify(raw, msg, b) {
				ok = append(ok, i)
				break
			}
		}
	}
	return ok
}

// A delivery to an endpoint whose keys are ed25519 carries v1a signatures, one per live
// key, that verify with the public keys, through the whole dispatcher path (queue, fan-out,
// registry built from the signing Secret, delivery).
func TestDeliveryToEd25519EndpointCarriesV1a(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, nil)
	f.endpoint("asym", rc)

	cur, err := signing.GenerateEd25519Secret()
	if err != nil {
		t.Fatal(err)
	}
	prev, err := signing.GenerateEd25519Secret()
	if err != nil {
		t.Fatal(err)
	}
	ks := signing.KeySet{
		Current:  signing.Key{ID: "k-cur", Secret: cur, CreatedAt: time.Now().Add(-time.Minute)},
		Previous: &signing.Key{ID: "k-prev", Secret: prev, CreatedAt: time.Now().Add(-time.Hour), ExpiresAt: time.Now().Add(time.Hour)},
	}
	// Replace the HMAC key the fixture generated with the ed25519 set.
	f.objs.Secrets[len(f.objs.Secrets)-1] = registry.SigningSecret(ns, "asym", ks)
	curPub, _ := signing.PublicKey(cur)
	prevPub, _ := signing.PublicKey(prev)
	other, _ := signing.GenerateEd25519Secret()
	otherPub, _ := signing.PublicKey(other)

	f.subscription("invoices", "asym")
	f.start(testOptions())
	f.publish("e1")

	eventually(t, "a delivery", func() bool { return rc.count() == 1 })
	r := rc.requests()[0]
	entries := strings.Fields(r.header.Get("webhook-signature"))
	if len(entries) != 2 || !strings.HasPrefix(entries[0], "v1a,") || !strings.HasPrefix(entries[1], "v1a,") {
		t.Fatalf("webhook-signature = %q, want two v1a entries (current and previous key)", r.header.Get("webhook-signature"))
	}
	if got := verifyV1aIndependently(t, r.header, r.body, curPub, prevPub, otherPub); len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Fatalf("public keys that verified: %v, want the current and previous key only", got)
	}
	if got := verifyV1aIndependently(t, r.header, append(r.body, ' '), curPub); len(got) != 0 {
		t.Fatal("a changed body verified")
	}
}
