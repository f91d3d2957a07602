package signing

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	testSecretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	testSecretB = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
)

var t0 = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

func TestKeySetSecretDataRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		ks   KeySet
	}{
		{name: "current only", ks: KeySet{Current: Key{ID: "key_a", Secret: testSecretA, CreatedAt: t0}}},
		{name: "with previous and request", ks: KeySet{
			Current:     Key{ID: "key_b", Secret: testSecretB, CreatedAt: t0},
			Previous:    &Key{ID: "key_a", Secret: testSecretA, CreatedAt: t0.Add(-90 * 24 * time.Hour), ExpiresAt: t0.Add(24 * time.Hour)},
			LastRequest: "2026-11-26-leak",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := KeySetFromSecretData(tt.ks.ToSecretData())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.ks) {
				t.Fatalf("round trip changed the set:\n got %+v\nwant %+v", got, tt.ks)
			}
		})
	}
}

func TestToSecretDataLayout(t *testing.T) {
	ks := KeySet{
		Current:     Key{ID: "key_b", Secret: testSecretB, CreatedAt: t0.Add(1500 * time.Millisecond)},
		Previous:    &Key{ID: "key_a", Secret: testSecretA, CreatedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(time.Hour)},
		LastRequest: "r1",
	}
	want := map[string]string{
		"current":              testSecretB,
		"current.id":           "key_b",
		"current.created":      "2026-11-26T20:00:01Z",
		"previous":             testSecretA,
		"previous.id":          "key_a",
		"previous.created":     "2026-11-26T19:00:00Z",
		"previous.expires":     "2026-11-26T21:00:00Z",
		"rotation.lastRequest": "r1",
	}
	got := map[string]string{}
	for k, v := range ks.ToSecretData() {
		got[k] = string(v)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("layout:\n got %v\nwant %v", got, want)
	}
}

func TestKeySetFromSecretDataErrors(t *testing.T) {
	valid := func() map[string][]byte {
		return KeySet{
			Current:  Key{ID: "key_b", Secret: testSecretB, CreatedAt: t0},
			Previous: &Key{ID: "key_a", Secret: testSecretA, CreatedAt: t0, ExpiresAt: t0},
		}.ToSecretData()
	}
	tests := []struct {
		name    string
		mutate  func(map[string][]byte)
		wantMsg string
	}{
		{name: "empty Secret", mutate: func(d map[string][]byte) { clear(d) }, wantMsg: `"current" is missing`},
		{name: "bad current", mutate: func(d map[string][]byte) { d["current"] = []byte("whsec_***") }, wantMsg: `"current": malformed signing secret`},
		{name: "no current id", mutate: func(d map[string][]byte) { delete(d, "current.id") }, wantMsg: `"current.id"`},
		{name: "no current created", mutate: func(d map[string][]byte) { delete(d, "current.created") }, wantMsg: `"current.created"`},
		{name: "bad created", mutate: func(d map[string][]byte) { d["current.created"] = []byte("yesterday") }, wantMsg: "RFC 3339"},
		{name: "previous without expiry", mutate: func(d map[string][]byte) { delete(d, "previous.expires") }, wantMsg: `"previous.expires"`},
		{name: "previous without id", mutate: func(d map[string][]byte) { delete(d, "previous.id") }, wantMsg: `"previous.id"`},
		{name: "short previous", mutate: func(d map[string][]byte) { d["previous"] = []byte("whsec_c2hvcnQ=") }, wantMsg: "5 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.mutate(d)
			_, err := KeySetFromSecretData(d)
			if err == nil {
				t.Fatal("expected an error")
			}
			if !errors.Is(err, ErrInvalidKeySet) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q: want ErrInvalidKeySet saying %q", err, tt.wantMsg)
			}
			for _, s := range []string{testSecretA, testSecretB} {
				if strings.Contains(err.Error(), strings.TrimPrefix(s, SecretPrefix)) {
					t.Fatalf("error %q contains a key", err)
				}
			}
		})
	}
}

func TestKeySetFromSecretDataPreviousWithoutCreated(t *testing.T) {
	d := KeySet{
		Current:  Key{ID: "key_b", Secret: testSecretB, CreatedAt: t0},
		Previous: &Key{ID: "key_a", Secret: testSecretA, ExpiresAt: t0},
	}.ToSecretData()
	delete(d, DataPreviousCreated)
	ks, err := KeySetFromSecretData(d)
	if err != nil {
		t.Fatal(err)
	}
	if ks.Previous == nil || !ks.Previous.CreatedAt.IsZero() || !ks.Previous.ExpiresAt.Equal(t0) {
		t.Fatalf("unexpected previous key %+v", ks.Previous)
	}
}

func TestKeySetFromUserSecret(t *testing.T) {
	const bare = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	tests := []struct {
		name    string
		data    map[string][]byte
		key     string
		wantErr string
	}{
		{name: "default data key", data: map[string][]byte{"secret": []byte(testSecretA)}},
		{name: "named data key", data: map[string][]byte{"hmac": []byte(testSecretA)}, key: "hmac"},
		{name: "bare base64", data: map[string][]byte{"secret": []byte(bare)}},
		{name: "trailing newline from a file", data: map[string][]byte{"secret": []byte(testSecretA + "\n")}},
		{name: "missing data key", data: map[string][]byte{"other": []byte(testSecretA)}, wantErr: `data key "secret" is missing`},
		{name: "malformed", data: map[string][]byte{"secret": []byte("hunter2")}, wantErr: "not standard base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := KeySetFromUserSecret(tt.data, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error %q contains the key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// All accepted spellings of the same key are one key.
			if ks.Current.Secret != testSecretA {
				t.Errorf("secret not normalised: got %q", ks.Current.Secret)
			}
			if ks.Current.ID != "key_f74e1720b7614881" {
				t.Errorf("key ID %q is not the stable fingerprint", ks.Current.ID)
			}
			if ks.Previous != nil || !ks.Current.CreatedAt.IsZero() {
				t.Errorf("a user key has no previous key or creation time: %+v", ks)
			}
		})
	}
}

func TestKeyFormattingRedactsSecret(t *testing.T) {
	ks := KeySet{
		Current:  Key{ID: "key_b", Secret: testSecretB, CreatedAt: t0},
		Previous: &Key{ID: "key_a", Secret: testSecretA, ExpiresAt: t0},
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, ks)
		if strings.Contains(out, "whsec_") || !strings.Contains(out, "key_a") || !strings.Contains(out, "key_b") {
			t.Errorf("%s: %s", verb, out)
		}
	}
}
