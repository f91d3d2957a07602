package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookline/hookline/internal/server"
)

// selfSigned returns a PEM certificate and key for 127.0.0.1 named cn.
func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), cert
}

// writeAtomically replaces a file as kubelet updates a Secret volume: the
// reader sees the old content or the new one, never half of it.
func writeAtomically(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPSWithReloadedCertificate serves the publishing API over HTTPS from
// files, replaces them as a renewal would, and sees the new certificate on
// the next handshake once the check interval has passed; a broken file keeps
// the last good certificate.
func TestHTTPSWithReloadedCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c1, k1, x1 := selfSigned(t, "first")
	c2, k2, x2 := selfSigned(t, "second")
	writeAtomically(t, certFile, c1)
	writeAtomically(t, keyFile, k1)

	clk := clocktesting.NewFakePassiveClock(time.Now())
	reloader, err := server.NewCertReloader(certFile, keyFile, clk, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	pub := &recorder{}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewHTTPServer(newLimitedHandler(t, pub, server.Limits{}), server.Limits{})
	go func() { _ = srv.Serve(server.LimitListener(tls.NewListener(ln, reloader.TLSConfig()), 0)) }()
	t.Cleanup(func() { _ = srv.Close() })

	roots := x509.NewCertPool()
	roots.AddCert(x1)
	roots.AddCert(x2)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}}
	publishTLS := func() (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "https://"+ln.Addr().String()+"/v1/namespaces/team-a/events", strings.NewReader(`{"type":"invoice.paid","data":{}}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0].Subject.CommonName
	}

	if status, cn := publishTLS(); status != http.StatusAccepted || cn != "first" {
		t.Fatalf("first publish: %d with certificate %q", status, cn)
	}
	writeAtomically(t, certFile, c2)
	writeAtomically(t, keyFile, k2)
	if _, cn := publishTLS(); cn != "first" {
		t.Fatalf("before the check interval: certificate %q, want first", cn)
	}
	clk.SetTime(clk.Now().Add(10 * time.Second))
	if status, cn := publishTLS(); status != http.StatusAccepted || cn != "second" {
		t.Fatalf("after the renewal: %d with certificate %q, want second", status, cn)
	}
	writeAtomically(t, certFile, []byte("not PEM"))
	clk.SetTime(clk.Now().Add(10 * time.Second))
	if status, cn := publishTLS(); status != http.StatusAccepted || cn != "second" {
		t.Fatalf("after a broken renewal: %d with certificate %q, want the last good one", status, cn)
	}

	// Plain HTTP on the TLS port gets nothing stored.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+ln.Addr().String()+"/v1/namespaces/team-a/events", strings.NewReader(`{"type":"a.b","data":{}}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			t.Error("plain HTTP was accepted on the TLS port")
		}
	}
	if len(pub.events) != 4 {
		t.Errorf("%d events stored, want the 4 sent over HTTPS", len(pub.events))
	}
	if _, err := server.NewCertReloader(filepath.Join(dir, "missing.crt"), keyFile, clk, testr.New(t)); err == nil {
		t.Error("a missing certificate file was accepted")
	}
}
