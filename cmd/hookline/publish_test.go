package main

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublishOverHTTPS publishes to an HTTPS server trusted through
// --ca-file, and fails, naming the problem, without it.
func TestPublishOverHTTPS(t *testing.T) {
	var got string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = r.URL.Path + " " + string(b)
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"id":"msg_1","duplicate":false}`)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("a.b.c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--server", srv.URL, "-n", "shop", "--type", "invoice.paid", "--data", `{"n":1}`, "--token-file", tok}
	if err := runPublish(append(args, "--ca-file", ca)); err != nil {
		t.Fatalf("publish with --ca-file: %v", err)
	}
	if !strings.HasPrefix(got, "/v1/namespaces/shop/events ") || !strings.Contains(got, `"invoice.paid"`) {
		t.Errorf("the server got %q", got)
	}
	if err := runPublish(args); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("publish without the CA: %v, want a certificate error", err)
	}
	if err := runPublish(append(args, "--ca-file", tok)); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("publish with a CA file that is not PEM: %v", err)
	}
}
