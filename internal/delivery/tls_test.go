package delivery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// testCA is a throwaway certificate authority; the validity window is wide
// so that no test depends on the real date.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial int64

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-24 * time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate as PEM and as a tls.Certificate.
func (ca *testCA) issue(t *testing.T, cn string, dns []string, ips []net.IP, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-24 * time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, cert
}

var localhostIPs = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}

func tlsReceiver(t *testing.T, conf *tls.Config, h2 bool) *receiver {
	rc := newReceiver(t, nil)
	rc.TLS = conf
	rc.EnableHTTP2 = h2
	rc.StartTLS()
	return rc
}

func TestCustomCA(t *testing.T) {
	ca := newCA(t, "receiver CA")
	_, _, serverCert := ca.issue(t, "receiver", nil, localhostIPs, x509.ExtKeyUsageServerAuth)
	rc := tlsReceiver(t, &tls.Config{Certificates: []tls.Certificate{serverCert}}, true)
	p, _ := newTestPool(t)

	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, CABundle: ca.pem})
	if res := Send(context.Background(), tg, testMessage(), t0); res.Verdict != Delivered {
		t.Fatalf("Send with the receiver's CA = %+v", res)
	}
	if got := rc.last(t); !got.TLS || got.Proto != 2 {
		t.Errorf("TLS %v HTTP/%d, want TLS and HTTP/2 where the receiver offers it", got.TLS, got.Proto)
	}

	other := newCA(t, "someone else")
	for name, bundle := range map[string][]byte{"system roots": nil, "another CA": other.pem} {
		tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, CABundle: bundle})
		res := Send(context.Background(), tg, testMessage(), t0)
		var ua x509.UnknownAuthorityError
		if !errors.As(res.Err, &ua) || res.Verdict != Retry {
			t.Errorf("%s: %+v, want an unknown-authority error", name, res)
		}
	}
	if n := rc.requests.Load(); n != 1 {
		t.Errorf("receiver got %d requests, want only the trusted one", n)
	}
}

func TestServerName(t *testing.T) {
	ca := newCA(t, "receiver CA")
	_, _, serverCert := ca.issue(t, "receiver", []string{"hooks.partner.example"}, nil, x509.ExtKeyUsageServerAuth)
	rc := tlsReceiver(t, &tls.Config{Certificates: []tls.Certificate{serverCert}}, false)
	p, _ := newTestPool(t)

	plain := newTestTarget(t, p, TargetConfig{URL: rc.URL, CABundle: ca.pem})
	var he x509.HostnameError
	if res := Send(context.Background(), plain, testMessage(), t0); !errors.As(res.Err, &he) {
		t.Errorf("certificate without the IP: %+v, want a hostname error", res)
	}
	named := newTestTarget(t, p, TargetConfig{URL: rc.URL, CABundle: ca.pem, ServerName: "hooks.partner.example"})
	if res := Send(context.Background(), named, testMessage(), t0); res.Verdict != Delivered {
		t.Errorf("with serverName: %+v", res)
	}
}

func TestMutualTLS(t *testing.T) {
	serverCA := newCA(t, "receiver CA")
	clientCA := newCA(t, "client CA")
	_, _, serverCert := serverCA.issue(t, "receiver", nil, localhostIPs, x509.ExtKeyUsageServerAuth)
	certPEM, keyPEM, _ := clientCA.issue(t, "hookline-dispatcher", nil, nil, x509.ExtKeyUsageClientAuth)
	clientPool := x509.NewCertPool()
	clientPool.AddCert(clientCA.cert)
	rc := tlsReceiver(t, &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientPool,
	}, false)
	p, _ := newTestPool(t)

	withCert := newTestTarget(t, p, TargetConfig{URL: rc.URL, CABundle: serverCA.pem,
		Auth: Auth{ClientCert: &ClientCert{CertPEM: certPEM, KeyPEM: keyPEM}, BearerToken: "also-a-token"}})
	if res := Send(context.Background(), withCert, testMessage(), t0); res.Verdict != Delivered {
		t.Fatalf("Send with client certificate = %+v", res)
	}
	got := rc.last(t)
	if got.Peer != "hookline-dispatcher" || got.Header.Get("Authorization") != "Bearer also-a-token" {
		t.Errorf("peer %q authorization %q", got.Peer, got.Header.Get("Authorization"))
	}

	without := newTestTarget(t, p, TargetConfig{URL: rc.URL, CABundle: serverCA.pem})
	if res := Send(context.Background(), without, testMessage(), t0); res.Err == nil || res.Verdict != Retry {
		t.Errorf("Send without client certificate = %+v, want a TLS failure", res)
	}
	if n := rc.requests.Load(); n != 1 {
		t.Errorf("receiver accepted %d requests, want 1", n)
	}
	if n := p.Transports(); n != 2 {
		t.Errorf("two TLS configurations use %d transports, want 2", n)
	}
}

func TestOldTLSRefused(t *testing.T) {
	ca := newCA(t, "receiver CA")
	_, _, serverCert := ca.issue(t, "receiver", nil, localhostIPs, x509.ExtKeyUsageServerAuth)
	// A receiver on old TLS is what this test refuses.
	rc := tlsReceiver(t, &tls.Config{ //nolint:gosec // G402: see above
		Certificates: []tls.Certificate{serverCert},
		MinVersion:   tls.VersionTLS10,
		MaxVersion:   tls.VersionTLS11,
	}, false)
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, CABundle: ca.pem})
	res := Send(context.Background(), tg, testMessage(), t0)
	t.Logf("TLS 1.1 receiver: %v", res.Err)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "protocol version") {
		t.Errorf("Send to a TLS 1.1 receiver = %+v, want a protocol version error", res)
	}
	if n := rc.requests.Load(); n != 0 {
		t.Errorf("receiver got %d requests", n)
	}
}

func TestPoolSharesAndReleasesClients(t *testing.T) {
	ca := newCA(t, "receiver CA")
	p, _ := newTestPool(t)
	mk := func(cfg TargetConfig) *Target {
		cfg.Sign = hmacSigner
		tg, err := p.NewTarget(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}
	a := mk(TargetConfig{URL: "https://a.example/"})
	b := mk(TargetConfig{URL: "https://b.example/", Timeout: time.Second, Headers: map[string][]string{"X-A": {"1"}}})
	c := mk(TargetConfig{URL: "https://c.example/", CABundle: ca.pem})
	d := mk(TargetConfig{URL: "https://d.example/", CABundle: ca.pem, ServerName: "x"})
	e := mk(TargetConfig{URL: "https://e.example/", ConnectTimeout: time.Second})
	if a.entry != b.entry {
		t.Errorf("same TLS settings, different transports")
	}
	if n := p.Transports(); n != 4 {
		t.Errorf("%d transports, want 4", n)
	}
	a.Close()
	a.Close() // closing twice must not release b's share
	if n := p.Transports(); n != 4 {
		t.Errorf("after closing a: %d transports, want 4", n)
	}
	for _, tg := range []*Target{b, c, d, e} {
		tg.Close()
	}
	if n := p.Transports(); n != 0 {
		t.Errorf("after closing all: %d transports", n)
	}
}
