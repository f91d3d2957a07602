package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResendPostsOneDeadDelivery(t *testing.T) {
	var method, path, auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, path, auth = r.Method, r.URL.Path, r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"resent":4711}`))
	}))
	defer srv.Close()
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := runResend([]string{"--server", srv.URL, "-n", "shop", "--subscription", "invoices", "--id", "4711", "--token-file", token})
	if err != nil {
		t.Fatal(err)
	}
	if method != http.MethodPost || path != "/v1/namespaces/shop/subscriptions/invoices/deliveries/4711/resend" || auth != "Bearer s3cr3t" {
		t.Errorf("sent %s %s with %q", method, path, auth)
	}

	for _, args := range [][]string{
		{"--server", srv.URL, "--id", "4711"},
		{"--server", srv.URL, "--subscription", "invoices", "--id", "0"},
	} {
		if err := runResend(args); err == nil || !strings.Contains(err.Error(), "--") {
			t.Errorf("runResend(%v) = %v, want an error naming the flag", args, err)
		}
	}
}
