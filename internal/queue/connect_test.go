package queue_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/hookline/hookline/internal/queue"
)

// These tests run a real nats-server in the test process, listening on
// loopback with the authentication or TLS under test, and open the queue on it
// as `hookline dispatcher --queue=external` does.

// natsServer starts a JetStream server with opts (its listener, store and
// logging are set here) and stops it when the test ends.
func natsServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoSigs = true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("configuring nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func external(url string) queue.Config {
	return queue.Config{URL: url, MaxRequestTimeout: 15 * time.Second}
}

func open(t *testing.T, cfg queue.Config) (*queue.Queue, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, cfg, testr.New(t))
	if err == nil {
		t.Cleanup(q.Close)
	}
	return q, err
}

// mustOpen opens the queue and proves it works: the streams exist, so a
// JetStream request went through with these credentials.
func mustOpen(t *testing.T, cfg queue.Config) *queue.Queue {
	t.Helper()
	q, err := open(t, cfg)
	if err != nil {
		t.Fatalf("opening the queue: %v", err)
	}
	if _, err := q.PublishEvent(context.Background(), queue.Event{Namespace: "ns", ID: "e1", Type: "t", Data: []byte(`{}`)}); err != nil {
		t.Fatalf("publishing through the connection: %v", err)
	}
	return q
}

func wantOpenError(t *testing.T, cfg queue.Config, wants ...string) {
	t.Helper()
	_, err := open(t, cfg)
	if err == nil {
		t.Fatalf("opened; want an error containing %q", wants)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\ndoes not contain %q", err, w)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConnectUserPassword(t *testing.T) {
	srv := natsServer(t, &server.Options{Users: []*server.User{{Username: "hookline", Password: "s3cret"}}})
	dir := t.TempDir()
	cfg := external(srv.ClientURL())
	// A newline at the end, as `echo` or an editor leaves it, is not part of the password.
	cfg.Auth.UserFile = writeFile(t, dir, "username", "hookline\n")
	cfg.Auth.PasswordFile = writeFile(t, dir, "password", "s3cret\n")
	mustOpen(t, cfg)

	cfg.Auth.PasswordFile = writeFile(t, dir, "wrong", "guess")
	wantOpenError(t, cfg, "Authorization Violation", "the server refused the credentials from --nats-user-file="+cfg.Auth.UserFile+" and --nats-password-file="+cfg.Auth.PasswordFile)

	wantOpenError(t, external(srv.ClientURL()), "the server wants credentials; set --nats-creds-file")
}

func TestConnectToken(t *testing.T) {
	srv := natsServer(t, &server.Options{Authorization: "t0ken-abc"})
	dir := t.TempDir()
	cfg := external(srv.ClientURL())
	cfg.Auth.TokenFile = writeFile(t, dir, "token", "t0ken-abc")
	mustOpen(t, cfg)

	cfg.Auth.TokenFile = writeFile(t, dir, "old", "t0ken-old")
	wantOpenError(t, cfg, "the server refused the credentials from --nats-token-file="+cfg.Auth.TokenFile)
}

// TestConnectCredsFile runs the server in operator mode (decentralised JWT
// authentication): the account is trusted through the operator, the user
// through the account, and the client proves it holds the user's nkey.
func TestConnectCredsFile(t *testing.T) {
	operatorKP, _ := nkeys.CreateOperator()
	operatorPub, _ := operatorKP.PublicKey()
	operator := jwt.NewOperatorClaims(operatorPub)
	operator.Name = "test"
	if _, err := operator.Encode(operatorKP); err != nil {
		t.Fatal(err)
	}
	accountKP, _ := nkeys.CreateAccount()
	accountPub, _ := accountKP.PublicKey()
	account := jwt.NewAccountClaims(accountPub)
	account.Name = "hookline"
	account.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accountJWT, err := account.Encode(operatorKP)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accountPub, accountJWT); err != nil {
		t.Fatal(err)
	}
	// JetStream needs a system account.
	systemKP, _ := nkeys.CreateAccount()
	systemPub, _ := systemKP.PublicKey()
	systemJWT, err := jwt.NewAccountClaims(systemPub).Encode(operatorKP)
	if err != nil {
		t.Fatal(err)
	}
	if err := resolver.Store(systemPub, systemJWT); err != nil {
		t.Fatal(err)
	}
	srv := natsServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{operator}, AccountResolver: resolver, SystemAccount: systemPub})

	// userCreds is a creds file for a new user signed by signer.
	userCreds := func(signer nkeys.KeyPair) string {
		userKP, _ := nkeys.CreateUser()
		userPub, _ := userKP.PublicKey()
		user := jwt.NewUserClaims(userPub)
		userJWT, err := user.Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := userKP.Seed()
		creds, err := jwt.FormatUserConfig(userJWT, seed)
		if err != nil {
			t.Fatal(err)
		}
		return string(creds)
	}
	dir := t.TempDir()
	cfg := external(srv.ClientURL())
	cfg.CredsFile = writeFile(t, dir, "good.creds", userCreds(accountKP))
	mustOpen(t, cfg)

	// A user of an account the server does not know.
	strangerKP, _ := nkeys.CreateAccount()
	cfg.CredsFile = writeFile(t, dir, "stranger.creds", userCreds(strangerKP))
	wantOpenError(t, cfg, "the server refused the credentials from --nats-creds-file="+cfg.CredsFile)

	cfg.CredsFile = writeFile(t, dir, "garbled.creds", "user: alice\npassword: x\n")
	wantOpenError(t, cfg, "--nats-creds-file="+cfg.CredsFile+": no user JWT found", "nsc generate creds")
}

// pki is a certificate authority and the PEM files it issued.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, caKey: key}
	p.caFile = writeFile(t, p.dir, "ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return p
}

// issue writes a certificate and key for name (a server's DNS name, or a
// client's common name) and returns their files.
func (p *pki) issue(t *testing.T, name string, serial int64, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, p.dir, name+".crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, p.dir, name+".key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}

// TestConnectMutualTLS: the server's certificate names nats.test (not the
// loopback address the client dials, so the server name must be given) and
// the server verifies the client's certificate.
func TestConnectMutualTLS(t *testing.T) {
	p := newPKI(t)
	serverCert, serverKey := p.issue(t, "nats.test", 2, x509.ExtKeyUsageServerAuth)
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: serverCert, KeyFile: serverKey, CaFile: p.caFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := natsServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: tlsCfg, TLSTimeout: 5})
	clientCert, clientKey := p.issue(t, "hookline-dispatcher", 3, x509.ExtKeyUsageClientAuth)

	cfg := external(srv.ClientURL())
	cfg.TLS = queue.TLSFiles{CAFile: p.caFile, CertFile: clientCert, KeyFile: clientKey, ServerName: "nats.test"}
	mustOpen(t, cfg)

	noClientCert := cfg
	noClientCert.TLS.CertFile, noClientCert.TLS.KeyFile = "", ""
	wantOpenError(t, noClientCert, "over TLS", "the server verifies clients: set --nats-cert-file and --nats-key-file")

	stranger := newPKI(t)
	strangerCert, strangerKey := stranger.issue(t, "stranger", 4, x509.ExtKeyUsageClientAuth)
	untrustedClient := cfg
	untrustedClient.TLS.CertFile, untrustedClient.TLS.KeyFile = strangerCert, strangerKey
	wantOpenError(t, untrustedClient, "over TLS", "the server refused the client certificate in --nats-cert-file")

	wrongName := cfg
	wrongName.TLS.ServerName = "other.test"
	wantOpenError(t, wrongName, "over TLS", "--nats-tls-server-name")

	otherCA := cfg
	otherCA.TLS.CAFile = newPKI(t).caFile
	wantOpenError(t, otherCA, "over TLS", "check --nats-ca-file")

	// The server asks for TLS, and the client, given no authority, checks the
	// server's certificate against the system's.
	noCA := external(strings.Replace(srv.ClientURL(), "tls://", "nats://", 1))
	wantOpenError(t, noCA, "over TLS", "check --nats-ca-file")

	plainServer := natsServer(t, &server.Options{})
	wantTLS := cfg
	wantTLS.URL = plainServer.ClientURL()
	wantOpenError(t, wantTLS, "TLS is set (--nats-ca-file, --nats-cert-file or --nats-tls-server-name) and the server does not offer it")
}

// TestFileErrors: a missing or unparseable file fails the start with an error
// naming its flag, before any connection is tried.
func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	empty := writeFile(t, dir, "empty", "\n")
	notPEM := writeFile(t, dir, "not-pem", "hello")
	// Nothing listens here: the errors must come before a connection is tried.
	url := "nats://127.0.0.1:1"
	for name, tt := range map[string]struct {
		mod  func(*queue.Config)
		want string
	}{
		"creds missing":    {func(c *queue.Config) { c.CredsFile = missing }, "--nats-creds-file=" + missing + ": no such file: it should hold a NATS credentials file"},
		"user missing":     {func(c *queue.Config) { c.Auth = queue.Auth{UserFile: missing, PasswordFile: empty} }, "--nats-user-file=" + missing + ": no such file"},
		"password empty":   {func(c *queue.Config) { c.Auth = queue.Auth{UserFile: notPEM, PasswordFile: empty} }, "--nats-password-file=" + empty + " is empty"},
		"token missing":    {func(c *queue.Config) { c.Auth.TokenFile = missing }, "--nats-token-file=" + missing + ": no such file: it should hold a NATS authorization token; check that the Secret is mounted"},
		"ca missing":       {func(c *queue.Config) { c.TLS.CAFile = missing }, "--nats-ca-file=" + missing + ": no such file"},
		"ca not pem":       {func(c *queue.Config) { c.TLS.CAFile = notPEM }, "--nats-ca-file=" + notPEM + ": no PEM certificate found"},
		"key missing":      {func(c *queue.Config) { c.TLS.CertFile, c.TLS.KeyFile = notPEM, missing }, "--nats-key-file=" + missing + ": no such file"},
		"cert not pem":     {func(c *queue.Config) { c.TLS.CertFile, c.TLS.KeyFile = notPEM, notPEM }, "are not a usable client certificate and key"},
		"cert without key": {func(c *queue.Config) { c.TLS.CertFile = notPEM }, "--nats-cert-file and --nats-key-file go together"},
		"user without password": {func(c *queue.Config) { c.Auth.UserFile = notPEM },
			"--nats-user-file and --nats-password-file go together"},
		"two ways": {func(c *queue.Config) { c.CredsFile, c.Auth.TokenFile = notPEM, notPEM },
			"choose one way to authenticate to NATS, not --nats-creds-file and --nats-token-file"},
		"url credentials too": {func(c *queue.Config) { c.URL, c.Auth.TokenFile = "nats://tok@127.0.0.1:1", notPEM },
			"--nats-url carries credentials and --nats-token-file is set too"},
		"embedded": {func(c *queue.Config) {
			*c = queue.Config{Embedded: true, DataDir: dir, MaxRequestTimeout: time.Second, CredsFile: notPEM}
		},
			"--nats-creds-file applies to an external NATS server only"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := external(url)
			tt.mod(&cfg)
			wantOpenError(t, cfg, tt.want)
		})
	}
}

// TestCredentialsRotation: the password is read again when the client
// reconnects. The Secret's file is rewritten, the server switched to the new
// password, which disconnects the client; it comes back with the new one.
func TestCredentialsRotation(t *testing.T) {
	opts := &server.Options{Users: []*server.User{{Username: "hookline", Password: "first"}}}
	srv := natsServer(t, opts)
	dir := t.TempDir()
	cfg := external(srv.ClientURL())
	cfg.Auth.UserFile = writeFile(t, dir, "username", "hookline")
	cfg.Auth.PasswordFile = writeFile(t, dir, "password", "first")
	q := mustOpen(t, cfg)

	// Rewritten the way the kubelet updates a mounted Secret: a new file
	// renamed over the old one.
	tmp := writeFile(t, dir, "password.new", "second")
	if err := os.Rename(tmp, cfg.Auth.PasswordFile); err != nil {
		t.Fatal(err)
	}
	nc := q.Conn()
	reconnected := make(chan struct{})
	nc.SetReconnectHandler(func(*nats.Conn) { close(reconnected) })
	reload := *opts
	reload.Users = []*server.User{{Username: "hookline", Password: "second"}}
	reload.Host, reload.Port = "127.0.0.1", srv.Addr().(*net.TCPAddr).Port
	if err := srv.ReloadOptions(&reload); err != nil {
		t.Fatalf("reloading the server with the new password: %v", err)
	}
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatalf("the client did not reconnect with the rotated password: status %v, last error %v", nc.Status(), nc.LastError())
	}
	if _, err := q.PublishEvent(context.Background(), queue.Event{Namespace: "ns", ID: "e2", Type: "t", Data: []byte(`{}`)}); err != nil {
		t.Fatalf("publishing after the rotation: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://a:4222,nats://b:4222":         "nats://a:4222,nats://b:4222",
		"nats://user:pass@a:4222,tls://t@b:1": "nats://user:xxxxx@a:4222,tls://xxxxx@b:1",
	} {
		if got := queue.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
