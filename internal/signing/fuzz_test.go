package signing

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzVerify checks, for arbitrary ids, timestamps, bodies and header values,
// that Verify never panics, accepts a genuine signature, and never accepts one
// made with another key or for another body.
func FuzzVerify(f *testing.F) {
	f.Add(vectorID, int64(vectorTS), []byte(vectorBody), []byte(`{"test": 2432232315}`), vectorSig, "1614265330")
	f.Add("", int64(0), []byte{}, []byte{0}, "", "")
	f.Add("msg.with.dots", int64(-1), []byte("a.b"), []byte("a.c"), "v1, v1,,v1,=== v2,x", "+1")
	f.Add("msg\x00", int64(1<<62), []byte("\xff\xfe"), []byte(""), "v1,"+strings.Repeat("A", 44), "0x10")

	secret := vectorSecret
	other := testSecretB
	signer, err := NewSigner(KeySet{Current: Key{ID: "k", Secret: secret}}, time.Unix(0, 0))
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, id string, ts int64, body, otherBody []byte, sigHeader, tsHeader string) {
		now := time.Unix(ts, 0)

		// Arbitrary headers: no panic, and acceptance only if the header
		// really holds the signature for this id, timestamp and body.
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, tsHeader)
		h.Set(HeaderSignature, sigHeader)
		if err := Verify([]string{secret}, h, body, now, 0); err == nil {
			if _, perr := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64); perr != nil {
				t.Fatalf("accepted an unparsable timestamp %q", tsHeader)
			}
			if !containsGenuine(h, secret, body) {
				t.Fatalf("accepted header %q that holds no genuine signature", sigHeader)
			}
		}

		// A genuine signature. http.Header trims and cannot carry some bytes,
		// so the id is taken as the header stores it.
		h = http.Header{}
		h.Set(HeaderID, id)
		if h.Get(HeaderID) != id || id == "" {
			return
		}
		signer.SetHeaders(h, id, now, body)
		if err := Verify([]string{secret}, h, body, now, 0); err != nil {
			t.Fatalf("genuine signature rejected: %v", err)
		}
		if err := Verify([]string{other}, h, body, now, 0); err == nil {
			t.Fatal("accepted a signature made with another key")
		}
		if !bytes.Equal(body, otherBody) {
			if err := Verify([]string{secret}, h, otherBody, now, 0); err == nil {
				t.Fatal("accepted a signature made for another body")
			}
		}
	})
}

// containsGenuine reports whether h's signature header holds the v1
// signature of its own id and timestamp spelling with body, computed here
// independently of the package's code.
func containsGenuine(h http.Header, secret string, body []byte) bool {
	key, err := ParseSecret(secret)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get(HeaderID) + "." + h.Get(HeaderTimestamp) + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, f := range strings.Fields(h.Get(HeaderSignature)) {
		if f == want {
			return true
		}
	}
	return false
}
