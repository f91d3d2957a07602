package signing

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestGenerateSecret(t *testing.T) {
	a, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two generated secrets are equal")
	}
	if !strings.HasPrefix(a, SecretPrefix) {
		t.Fatalf("generated secret lacks the %q prefix", SecretPrefix)
	}
	key, err := ParseSecret(a)
	if err != nil {
		t.Fatalf("generated secret does not parse: %v", err)
	}
	if len(key) != 32 {
		t.Fatalf("generated key has %d bytes, want 32", len(key))
	}
}

func TestParseSecret(t *testing.T) {
	key24 := []byte("0123456789abcdefghijklmn")
	b64 := base64.StdEncoding.EncodeToString(key24)
	tests := []struct {
		name    string
		in      string
		want    []byte
		wantMsg string // a fragment the error must contain
	}{
		{name: "prefixed", in: SecretPrefix + b64, want: key24},
		{name: "bare base64", in: b64, want: key24},
		{name: "empty", in: "", wantMsg: "the key is empty"},
		{name: "prefix only", in: SecretPrefix, wantMsg: "the key is empty"},
		{name: "not base64", in: SecretPrefix + "not*base64!", wantMsg: "not standard base64"},
		{name: "url-safe alphabet", in: SecretPrefix + "ab-_ab-_ab-_ab-_ab-_ab-_ab-_ab-_", wantMsg: "not standard base64"},
		{name: "missing padding", in: SecretPrefix + strings.TrimRight(base64.StdEncoding.EncodeToString(make([]byte, 25)), "="), wantMsg: "not standard base64"},
		{name: "too short", in: SecretPrefix + base64.StdEncoding.EncodeToString(make([]byte, 16)), wantMsg: "16 bytes"},
		// encoding/base64 skips line breaks, which suits keys pasted from files.
		{name: "trailing newline", in: SecretPrefix + b64 + "\n", want: key24},
		{name: "inner space", in: SecretPrefix + b64[:8] + " " + b64[8:], wantMsg: "not standard base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSecret(tt.in)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if string(got) != string(tt.want) {
					t.Fatalf("got %x, want %x", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatal("expected an error")
			}
			if !errors.Is(err, ErrMalformedSecret) {
				t.Errorf("error does not wrap ErrMalformedSecret: %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q does not say %q", msg, tt.wantMsg)
			}
			if !strings.Contains(msg, "a valid key is") {
				t.Errorf("error %q does not say what a valid key looks like", msg)
			}
			if body := strings.TrimPrefix(tt.in, SecretPrefix); len(body) > 3 && strings.Contains(msg, strings.TrimSpace(body)) {
				t.Errorf("error %q contains the key", msg)
			}
		})
	}
}

func TestNewKeyID(t *testing.T) {
	id := NewKeyID()
	if len(id) != len("key_")+16 || !strings.HasPrefix(id, "key_") {
		t.Fatalf("unexpected key ID shape %q", id)
	}
	if id == NewKeyID() {
		t.Fatal("two key IDs are equal")
	}
}
