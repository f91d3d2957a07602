package signing

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// verifyV1a is an independent Standard Webhooks "v1a" verifier, written from the
// specification rather than from Signer: the signed content is
// "{webhook-id}.{webhook-timestamp}.{body}", the header holds space-separated
// "version,signature" entries, and a v1a entry is the standard base64 of an
// ed25519 signature. It accepts a whpk_ or bare base64 public key, and returns
// how many v1a entries verified.
func verifyV1a(t *testing.T, publicKey string, h http.Header, body []byte) int {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(publicKey, "whpk_"))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("public key %q is not whpk_ + base64 of 32 bytes", publicKey)
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if id == "" || ts == "" {
		t.Fatalf("missing webhook-id or webhook-timestamp in %v", h)
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		t.Fatalf("webhook-timestamp %q is not Unix seconds", ts)
	}
	msg := []byte(id + "." + ts + "." + string(body))
	n := 0
	for _, entry := range strings.Split(h.Get("webhook-signature"), " ") {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1a" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			t.Fatalf("v1a signature %q is not standard base64", sig)
		}
		if ed25519.Verify(ed25519.PublicKey(raw), msg, b) {
			n++
		}
	}
	return n
}

func newEd25519Key(t *testing.T, id string) Key {
	t.Helper()
	s, err := GenerateEd25519Secret()
	if err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Secret: s, CreatedAt: t0}
}

func publicKeyOf(t *testing.T, k Key) string {
	t.Helper()
	pk, err := PublicKey(k.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pk, PublicKeyPrefix) {
		t.Fatalf("public key %q lacks %q", pk, PublicKeyPrefix)
	}
	return pk
}

func TestEd25519SignatureVerifiesIndependently(t *testing.T) {
	cur := newEd25519Key(t, "key_cur")
	s, err := NewSigner(KeySet{Current: cur}, t0)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"order.created","data":{"id":42}}`)
	h := http.Header{}
	s.SetHeaders(h, "msg_1", t0, body)
	sig := h.Get("webhook-signature")
	if !strings.HasPrefix(sig, "v1a,") || strings.Contains(sig, " ") {
		t.Fatalf("webhook-signature = %q, want one v1a entry", sig)
	}
	pk := publicKeyOf(t, cur)
	if n := verifyV1a(t, pk, h, body); n != 1 {
		t.Fatalf("%d v1a signatures verified, want 1", n)
	}
	// A bare base64 public key works the same.
	if n := verifyV1a(t, strings.TrimPrefix(pk, PublicKeyPrefix), h, body); n != 1 {
		t.Fatalf("bare base64 public key: %d verified, want 1", n)
	}
	// Tampering with body, id or timestamp, or another key, must fail.
	if n := verifyV1a(t, pk, h, []byte(`{"type":"order.created","data":{"id":43}}`)); n != 0 {
		t.Fatal("tampered body verified")
	}
	tampered := h.Clone()
	tampered.Set("webhook-id", "msg_2")
	if n := verifyV1a(t, pk, tampered, body); n != 0 {
		t.Fatal("changed webhook-id verified")
	}
	tampered = h.Clone()
	tampered.Set("webhook-timestamp", strconv.FormatInt(t0.Unix()+1, 10))
	if n := verifyV1a(t, pk, tampered, body); n != 0 {
		t.Fatal("changed webhook-timestamp verified")
	}
	if n := verifyV1a(t, publicKeyOf(t, newEd25519Key(t, "other")), h, body); n != 0 {
		t.Fatal("signature verified with an unrelated public key")
	}
	// The HMAC verifier ignores v1a entries, as the specification asks of v1 receivers.
	if err := Verify([]string{testSecretA}, h, body, t0, 0); !errors.Is(err, ErrNoMatchingSignature) {
		t.Fatalf("HMAC Verify on a v1a-only header: %v, want ErrNoMatchingSignature", err)
	}
}

func TestEd25519OverlapCarriesBothSignatures(t *testing.T) {
	cur, prev := newEd25519Key(t, "key_cur"), newEd25519Key(t, "key_prev")
	prev.ExpiresAt = t0.Add(time.Hour)
	ks := KeySet{Current: cur, Previous: &prev}
	s, err := NewSigner(ks, t0)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"n":1}`)
	h := http.Header{}
	s.SetHeaders(h, "msg_1", t0, body)
	entries := strings.Split(h.Get("webhook-signature"), " ")
	if len(entries) != 2 || !strings.HasPrefix(entries[0], "v1a,") || !strings.HasPrefix(entries[1], "v1a,") {
		t.Fatalf("webhook-signature = %q, want two v1a entries", h.Get("webhook-signature"))
	}
	for _, k := range []Key{cur, prev} {
		if n := verifyV1a(t, publicKeyOf(t, k), h, body); n != 1 {
			t.Fatalf("key %s: %d v1a signatures verified, want 1", k.ID, n)
		}
	}
	// After the overlap only the current key signs.
	s, err = NewSigner(ks, prev.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	h = http.Header{}
	s.SetHeaders(h, "msg_1", prev.ExpiresAt, body)
	if n := verifyV1a(t, publicKeyOf(t, prev), h, body); n != 0 {
		t.Fatal("expired previous key still signs")
	}
	if n := verifyV1a(t, publicKeyOf(t, cur), h, body); n != 1 {
		t.Fatal("current key does not sign after the overlap")
	}
}

// Switching an endpoint from HMAC to ed25519 is a rotation: during the overlap the
// header carries the new key's v1a signature and the old key's v1 signature.
func TestMixedAlgorithmOverlap(t *testing.T) {
	cur := newEd25519Key(t, "key_cur")
	prev := Key{ID: "key_prev", Secret: testSecretA, ExpiresAt: t0.Add(time.Hour)}
	s, err := NewSigner(KeySet{Current: cur, Previous: &prev}, t0)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"n":2}`)
	h := http.Header{}
	s.SetHeaders(h, "msg_3", t0, body)
	sig := h.Get("webhook-signature")
	if !strings.HasPrefix(sig, "v1a,") || !strings.Contains(sig, " v1,") {
		t.Fatalf("webhook-signature = %q, want a v1a entry then a v1 entry", sig)
	}
	if n := verifyV1a(t, publicKeyOf(t, cur), h, body); n != 1 {
		t.Fatal("v1a entry does not verify")
	}
	if err := Verify([]string{testSecretA}, h, body, t0, 0); err != nil {
		t.Fatalf("v1 entry of the previous HMAC key: %v", err)
	}
}

func TestEd25519KeySetRoundTrip(t *testing.T) {
	cur := newEd25519Key(t, "key_cur")
	ks := KeySet{Current: cur}
	got, err := KeySetFromSecretData(ks.ToSecretData())
	if err != nil {
		t.Fatal(err)
	}
	if got.Current.Secret != cur.Secret || Algorithm(got.Current.Secret) != AlgorithmEd25519 {
		t.Fatalf("round trip changed the key: %v", got)
	}
	if pk, _ := PublicKey(testSecretA); pk != "" {
		t.Fatalf("HMAC secret has public key %q", pk)
	}
}

func TestParseEd25519SecretErrors(t *testing.T) {
	good := newEd25519Key(t, "k").Secret
	seed, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(good, PrivateKeyPrefix))
	full := ed25519.NewKeyFromSeed(seed)
	if _, err := ParseEd25519Secret(PrivateKeyPrefix + base64.StdEncoding.EncodeToString(full)); err != nil {
		t.Fatalf("64-byte private key refused: %v", err)
	}
	bad := append([]byte(nil), full...)
	bad[40] ^= 1
	for name, in := range map[string]string{
		"short":         PrivateKeyPrefix + base64.StdEncoding.EncodeToString(seed[:16]),
		"not base64":    PrivateKeyPrefix + "!!!",
		"mismatched":    PrivateKeyPrefix + base64.StdEncoding.EncodeToString(bad),
		"missing prefx": base64.StdEncoding.EncodeToString(seed),
	} {
		_, err := ParseEd25519Secret(in)
		if !errors.Is(err, ErrMalformedSecret) || !strings.Contains(err.Error(), "whsk_") {
			t.Errorf("%s: err = %v, want ErrMalformedSecret naming whsk_", name, err)
		}
		if strings.Contains(fmt9(err), strings.TrimPrefix(in, PrivateKeyPrefix)) && len(in) > 10 {
			t.Errorf("%s: error leaks the key", name)
		}
	}
}

func fmt9(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Verify, which receivers built on this package use, accepts v1a signatures for whpk_
// public keys and whsk_ private keys. Checked against signatures made here with
// crypto/ed25519 directly, not with Signer.
func TestVerifyAcceptsV1a(t *testing.T) {
	k := newEd25519Key(t, "k")
	priv, err := ParseEd25519Secret(k.Secret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"a":1}`)
	ts := strconv.FormatInt(t0.Unix(), 10)
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte("msg_9."+ts+"."+string(body))))
	h := http.Header{}
	h.Set("webhook-id", "msg_9")
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl v1a,"+sig)
	pub := publicKeyOf(t, k)
	for _, secret := range []string{pub, k.Secret} {
		if err := Verify([]string{testSecretA, secret}, h, body, t0, 0); err != nil {
			t.Errorf("Verify with %.5s key: %v", secret, err)
		}
	}
	if err := Verify([]string{pub}, h, []byte(`{"a":2}`), t0, 0); !errors.Is(err, ErrNoMatchingSignature) {
		t.Errorf("changed body: %v, want ErrNoMatchingSignature", err)
	}
	if err := Verify([]string{publicKeyOf(t, newEd25519Key(t, "o"))}, h, body, t0, 0); !errors.Is(err, ErrNoMatchingSignature) {
		t.Errorf("other key: %v, want ErrNoMatchingSignature", err)
	}
	if err := Verify([]string{"whpk_AAAA"}, h, body, t0, 0); !errors.Is(err, ErrMalformedSecret) {
		t.Errorf("short public key: %v, want ErrMalformedSecret", err)
	}
}

func BenchmarkSignEd25519(b *testing.B) {
	body := []byte(strings.Repeat(`{"k":"v"}`, 1024/9))
	cur, _ := GenerateEd25519Secret()
	prev, _ := GenerateEd25519Secret()
	for _, bc := range []struct {
		name string
		ks   KeySet
	}{
		{name: "1key", ks: KeySet{Current: Key{ID: "new", Secret: cur}}},
		{name: "2keys", ks: KeySet{Current: Key{ID: "new", Secret: cur}, Previous: &Key{ID: "old", Secret: prev, ExpiresAt: t0.Add(time.Hour)}}},
	} {
		s, err := NewSigner(bc.ks, t0)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				s.Sign("msg_2Lh9F2ZkZ0M6d3x6cYx0q1JwVbA", t0, body)
			}
		})
	}
}
