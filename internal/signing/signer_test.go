package signing

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks specification's test vector.
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTS     = 1614265330
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignStandardWebhooksVector(t *testing.T) {
	s, err := NewSigner(KeySet{Current: Key{ID: "k", Secret: vectorSecret}}, time.Unix(vectorTS, 0))
	if err != nil {
		t.Fatal(err)
	}
	got := s.Sign(vectorID, time.Unix(vectorTS, 0), []byte(vectorBody))
	if got != vectorSig {
		t.Fatalf("got %q, want %q", got, vectorSig)
	}
	// Signing twice must give the same answer: the pooled HMAC state is reset.
	if again := s.Sign(vectorID, time.Unix(vectorTS, 0), []byte(vectorBody)); again != got {
		t.Fatalf("second signature %q differs from first %q", again, got)
	}
}

func TestNewSignerLiveKeys(t *testing.T) {
	cur := Key{ID: "key_cur", Secret: testSecretB, CreatedAt: t0}
	prev := &Key{ID: "key_prev", Secret: testSecretA, ExpiresAt: t0.Add(time.Hour)}
	tests := []struct {
		name        string
		ks          KeySet
		now         time.Time
		wantIDs     []string
		wantExpires time.Time
	}{
		{name: "current only", ks: KeySet{Current: cur}, now: t0, wantIDs: []string{"key_cur"}},
		{name: "previous live", ks: KeySet{Current: cur, Previous: prev}, now: t0, wantIDs: []string{"key_cur", "key_prev"}, wantExpires: prev.ExpiresAt},
		{name: "previous expires now", ks: KeySet{Current: cur, Previous: prev}, now: prev.ExpiresAt, wantIDs: []string{"key_cur"}},
		{name: "previous expired", ks: KeySet{Current: cur, Previous: prev}, now: t0.Add(2 * time.Hour), wantIDs: []string{"key_cur"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(tt.ks, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(s.KeyIDs(), ","); got != strings.Join(tt.wantIDs, ",") {
				t.Errorf("keys %s, want %s", got, strings.Join(tt.wantIDs, ","))
			}
			if !s.Expires().Equal(tt.wantExpires) {
				t.Errorf("expires %v, want %v", s.Expires(), tt.wantExpires)
			}
			sig := s.Sign("msg_1", t0, []byte("{}"))
			if n := len(strings.Fields(sig)); n != len(tt.wantIDs) {
				t.Errorf("%d signatures in %q, want %d", n, sig, len(tt.wantIDs))
			}
		})
	}
}

func TestNewSignerRejectsMalformedKey(t *testing.T) {
	_, err := NewSigner(KeySet{Current: Key{ID: "key_bad", Secret: "whsec_short"}}, t0)
	if err == nil || !strings.Contains(err.Error(), "key_bad") {
		t.Fatalf("error %v should name the key ID", err)
	}
}

func TestSignCurrentKeyFirst(t *testing.T) {
	ks := KeySet{
		Current:  Key{ID: "new", Secret: testSecretB},
		Previous: &Key{ID: "old", Secret: testSecretA, ExpiresAt: t0.Add(time.Hour)},
	}
	both, err := NewSigner(ks, t0)
	if err != nil {
		t.Fatal(err)
	}
	onlyNew, _ := NewSigner(KeySet{Current: ks.Current}, t0)
	onlyOld, _ := NewSigner(KeySet{Current: *ks.Previous}, t0)
	body := []byte(`{"type":"invoice.paid"}`)
	want := onlyNew.Sign("msg_1", t0, body) + " " + onlyOld.Sign("msg_1", t0, body)
	if got := both.Sign("msg_1", t0, body); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSetHeadersVerify(t *testing.T) {
	s, err := NewSigner(KeySet{Current: Key{ID: "k", Secret: vectorSecret}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	s.SetHeaders(h, vectorID, time.Unix(vectorTS, 0), []byte(vectorBody))
	if h.Get("Webhook-Timestamp") != "1614265330" || h.Get("Webhook-Signature") != vectorSig || h.Get("Webhook-Id") != vectorID {
		t.Fatalf("unexpected headers %v", h)
	}
	if err := Verify([]string{vectorSecret}, h, []byte(vectorBody), time.Unix(vectorTS, 0), 0); err != nil {
		t.Fatal(err)
	}
}

func TestSignAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	s, err := NewSigner(KeySet{
		Current:  Key{ID: "new", Secret: testSecretB},
		Previous: &Key{ID: "old", Secret: testSecretA, ExpiresAt: t0.Add(time.Hour)},
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 1024)
	s.Sign("msg_1", t0, body) // fill the pools
	// The returned string is the one allocation a signature needs.
	if n := testing.AllocsPerRun(100, func() { s.Sign("msg_1", t0, body) }); n > 1 {
		t.Fatalf("Sign allocates %v times per call, want at most 1", n)
	}
}

func BenchmarkSign(b *testing.B) {
	body := bytes.Repeat([]byte(`{"k":"v"}`), 1024/9)
	for _, bc := range []struct {
		name string
		ks   KeySet
	}{
		{name: "1key", ks: KeySet{Current: Key{ID: "new", Secret: testSecretB}}},
		{name: "2keys", ks: KeySet{
			Current:  Key{ID: "new", Secret: testSecretB},
			Previous: &Key{ID: "old", Secret: testSecretA, ExpiresAt: t0.Add(time.Hour)},
		}},
	} {
		s, err := NewSigner(bc.ks, t0)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s.Sign("msg_2Lh9F2ZkZ0M6d3x6cYx0q1JwVbA", t0, body)
				}
			})
		})
	}
}
