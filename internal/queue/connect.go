package queue

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Auth is how the queue proves who it is to an external NATS server: at most
// one of a credentials file (a user JWT and its nkey seed), a user name and
// password, or a token. Every secret is a file, meant to be a mounted
// Kubernetes Secret, and is read again on every (re)connect, so a rotated
// Secret is used from the next connection on without a restart.
type Auth struct {
	// UserFile and PasswordFile hold a user name and its password (trailing
	// newlines are ignored).
	UserFile, PasswordFile string
	// TokenFile holds an authorization token.
	TokenFile string
}

// TLSFiles secure the connection to an external NATS server. Like Auth's
// files, they are read again on every (re)connect.
type TLSFiles struct {
	// CAFile holds the PEM certificates of the authorities that sign the
	// servers' certificates; empty trusts the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key, for servers
	// that verify clients (mutual TLS).
	CertFile, KeyFile string
	// ServerName is the name expected in the servers' certificates; empty
	// takes the host of the URL the client connects to.
	ServerName string
}

func (t TLSFiles) enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.ServerName != "" }

// The flags each file comes from, so that errors say what to change.
//
//nolint:gosec // G101: these are command-line flag names, not credentials.
const (
	flagCreds    = "--nats-creds-file"
	flagUser     = "--nats-user-file"
	flagPassword = "--nats-password-file"
	flagToken    = "--nats-token-file"
	flagCA       = "--nats-ca-file"
	flagCert     = "--nats-cert-file"
	flagKey      = "--nats-key-file"
	flagSNI      = "--nats-tls-server-name"
)

// connectionProblems checks the external connection settings that need no
// file access: which settings go together and which exclude each other.
func (c Config) connectionProblems() []error {
	var errs []error
	given := func(v string) bool { return v != "" }
	if c.Embedded {
		for flag, v := range map[string]string{
			flagCreds: c.CredsFile, flagUser: c.Auth.UserFile, flagPassword: c.Auth.PasswordFile, flagToken: c.Auth.TokenFile,
			flagCA: c.TLS.CAFile, flagCert: c.TLS.CertFile, flagKey: c.TLS.KeyFile, flagSNI: c.TLS.ServerName,
		} {
			if given(v) {
				errs = append(errs, fmt.Errorf("%s applies to an external NATS server only (--queue=external); the embedded server takes no credentials", flag))
			}
		}
		return errs
	}
	var modes []string
	if given(c.CredsFile) {
		modes = append(modes, flagCreds)
	}
	if given(c.Auth.UserFile) || given(c.Auth.PasswordFile) {
		modes = append(modes, flagUser+"/"+flagPassword)
		if given(c.Auth.UserFile) != given(c.Auth.PasswordFile) {
			errs = append(errs, fmt.Errorf("%s and %s go together: set both, or neither", flagUser, flagPassword))
		}
	}
	if given(c.Auth.TokenFile) {
		modes = append(modes, flagToken)
	}
	if len(modes) > 1 {
		errs = append(errs, fmt.Errorf("choose one way to authenticate to NATS, not %s", strings.Join(modes, " and ")))
	}
	if given(c.TLS.CertFile) != given(c.TLS.KeyFile) {
		errs = append(errs, fmt.Errorf("%s and %s go together (a client certificate and its key): set both, or neither", flagCert, flagKey))
	}
	if RedactURL(c.URL) != c.URL && len(modes) > 0 {
		errs = append(errs, fmt.Errorf("--nats-url carries credentials and %s is set too: keep the credentials in one place, preferably the file", modes[0]))
	}
	return errs
}

// connectOptions returns the nats.go options that authenticate and secure the
// connection to an external server. Each file is read and checked now, so a
// missing or unparseable one fails the start with an error naming its flag, and
// read again on every reconnect, so a rotated Secret takes effect then. A file
// that goes bad after the start fails that reconnect (logged); the client keeps
// trying, and reads the file again each time.
func (c Config) connectOptions(log logr.Logger) ([]nats.Option, error) {
	var opts []nats.Option
	var errs []error
	switch {
	case c.CredsFile != "":
		if _, err := readCreds(c.CredsFile); err != nil {
			errs = append(errs, err)
		}
		file := c.CredsFile
		opts = append(opts, nats.UserJWT(
			func() (string, error) {
				cr, err := readCreds(file)
				return cr.jwt, err
			},
			func(nonce []byte) ([]byte, error) {
				cr, err := readCreds(file)
				if err != nil {
					return nil, err
				}
				kp, err := nkeys.FromSeed(cr.seed)
				if err != nil {
					return nil, err
				}
				defer kp.Wipe()
				return kp.Sign(nonce)
			}))
	case c.Auth.UserFile != "":
		user, err1 := readSecretFile(flagUser, c.Auth.UserFile, "a NATS user name")
		pass, err2 := readSecretFile(flagPassword, c.Auth.PasswordFile, "the NATS user's password")
		errs = append(errs, err1, err2)
		last := struct {
			sync.Mutex
			user, pass string
		}{user: user, pass: pass}
		opts = append(opts, nats.UserInfoHandler(func() (string, string) {
			u, err1 := readSecretFile(flagUser, c.Auth.UserFile, "a NATS user name")
			p, err2 := readSecretFile(flagPassword, c.Auth.PasswordFile, "the NATS user's password")
			last.Lock()
			defer last.Unlock()
			if err := errors.Join(err1, err2); err != nil {
				// The callback cannot fail the connection; the server will refuse the
				// last good pair if it was rotated, and the next reconnect reads again.
				log.Error(err, "Reading the NATS user and password for a reconnect; using the last ones read")
				return last.user, last.pass
			}
			last.user, last.pass = u, p
			return u, p
		}))
	case c.Auth.TokenFile != "":
		token, err := readSecretFile(flagToken, c.Auth.TokenFile, "a NATS authorization token")
		errs = append(errs, err)
		last := struct {
			sync.Mutex
			token string
		}{token: token}
		opts = append(opts, nats.TokenHandler(func() string {
			t, err := readSecretFile(flagToken, c.Auth.TokenFile, "a NATS authorization token")
			last.Lock()
			defer last.Unlock()
			if err != nil {
				log.Error(err, "Reading the NATS token for a reconnect; using the last one read")
				return last.token
			}
			last.token = t
			return t
		}))
	}
	if c.TLS.enabled() {
		tlsOpts, err := c.TLS.options()
		errs = append(errs, err)
		opts = append(opts, tlsOpts...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return opts, nil
}

func (t TLSFiles) options() ([]nats.Option, error) {
	var certCB nats.TLSCertHandler
	var rootsCB nats.RootCAsHandler
	if t.CertFile != "" {
		certCB = func() (tls.Certificate, error) { return loadClientCert(t.CertFile, t.KeyFile) }
	}
	if t.CAFile != "" {
		rootsCB = func() (*x509.CertPool, error) { return loadCA(t.CAFile) }
	}
	var errs []error
	if certCB != nil {
		if _, err := certCB(); err != nil {
			errs = append(errs, err)
		}
	}
	if rootsCB != nil {
		if _, err := rootsCB(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Secure before ClientTLSConfig, which keeps a TLS configuration already
	// set: the server name goes in it.
	opts := []nats.Option{nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName})}
	if certCB != nil || rootsCB != nil {
		opts = append(opts, nats.ClientTLSConfig(certCB, rootsCB))
	}
	return opts, nil
}

// readSecretFile reads a one-value file such as a password, without its
// trailing newline (editors and `echo` add one; Secrets made with
// --from-literal have none).
func readSecretFile(flag, path, what string) (string, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the path is the dispatcher's own flag
	if err != nil {
		return "", fileError(flag, path, what, err)
	}
	v := strings.TrimRight(string(data), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s=%s is empty: it should hold %s", flag, path, what)
	}
	return v, nil
}

func fileError(flag, path, what string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s=%s: no such file: it should hold %s; check that the Secret is mounted there and has the key", flag, path, what)
	}
	return fmt.Errorf("%s=%s: reading %s: %w", flag, path, what, err)
}

type creds struct {
	jwt  string
	seed []byte
}

// readCreds reads a NATS credentials file, as `nsc generate creds` writes it:
// the user's JWT and its nkey seed between their BEGIN/END lines.
func readCreds(path string) (creds, error) {
	const what = "a NATS credentials file (a user JWT and its nkey seed, as `nsc generate creds` writes it)"
	data, err := os.ReadFile(path) //nolint:gosec // G304: the path is the dispatcher's own flag
	if err != nil {
		return creds{}, fileError(flagCreds, path, what, err)
	}
	jwt, err := nkeys.ParseDecoratedJWT(data)
	if err != nil || !strings.HasPrefix(jwt, "eyJ") {
		return creds{}, fmt.Errorf("%s=%s: no user JWT found: it should hold %s", flagCreds, path, what)
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return creds{}, fmt.Errorf("%s=%s: no user nkey seed found (%v): it should hold %s", flagCreds, path, err, what)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return creds{}, fmt.Errorf("%s=%s: the nkey is not a seed: it should hold %s", flagCreds, path, what)
	}
	// Wipe clears the key pair's own bytes, which seed may share.
	return creds{jwt: jwt, seed: append([]byte(nil), seed...)}, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	const what = "the PEM certificates of the authority that signs the NATS servers' certificates (a Secret's ca.crt)"
	data, err := os.ReadFile(path) //nolint:gosec // G304: the path is the dispatcher's own flag
	if err != nil {
		return nil, fileError(flagCA, path, what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s=%s: no PEM certificate found: it should hold %s", flagCA, path, what)
	}
	return pool, nil
}

func loadClientCert(certFile, keyFile string) (tls.Certificate, error) {
	if _, err := os.Stat(certFile); err != nil {
		return tls.Certificate{}, fileError(flagCert, certFile, "a PEM client certificate (a kubernetes.io/tls Secret's tls.crt)", err)
	}
	if _, err := os.Stat(keyFile); err != nil {
		return tls.Certificate{}, fileError(flagKey, keyFile, "the client certificate's PEM private key (a kubernetes.io/tls Secret's tls.key)", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s=%s and %s=%s are not a usable client certificate and key: %w", flagCert, certFile, flagKey, keyFile, err)
	}
	return cert, nil
}

// explainConnectError adds to a failed connection's error what to check, for
// the failures that come from the settings.
func (c Config) explainConnectError(err error) error {
	where := RedactURL(c.URL)
	auth := c.authDescription()
	msg := err.Error()
	switch {
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(msg, "authorization violation") ||
		strings.Contains(strings.ToLower(msg), "authentication"):
		if auth == "" {
			return fmt.Errorf("connecting to NATS at %s: %w: the server wants credentials; set %s, %s and %s, or %s", where, err, flagCreds, flagUser, flagPassword, flagToken)
		}
		return fmt.Errorf("connecting to NATS at %s: %w: the server refused the credentials from %s; check that they are the ones the server's configuration has (and not expired)", where, err, auth)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("connecting to NATS at %s: %w: TLS is set (%s, %s or %s) and the server does not offer it; check the URL, or turn TLS on in the server", where, err, flagCA, flagCert, flagSNI)
	case errors.Is(err, nats.ErrTLS) || strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:"):
		hint := "check " + flagCA + " (the authority that signs the servers' certificates) and " + flagSNI + " (the name in them)"
		// With TLS 1.3 the client finishes its side of the handshake before
		// the server has judged the client's certificate, so a refusal can
		// arrive as the alert ("certificate required") or, when the client
		// writes first, as the server closing right after the handshake. The
		// client had already accepted the server's certificate by then.
		refusedClient := strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") ||
			strings.Contains(msg, "unknown certificate") || strings.Contains(msg, "after TLS handshake")
		switch {
		case refusedClient && c.TLS.CertFile == "":
			hint = "the server verifies clients: set " + flagCert + " and " + flagKey + " to a certificate its authority signed"
		case refusedClient:
			hint = "the server refused the client certificate in " + flagCert + ": it must be signed by the authority the server trusts, for client authentication, and not expired"
		}
		return fmt.Errorf("connecting to NATS at %s over TLS: %w: %s", where, err, hint)
	}
	return fmt.Errorf("connecting to NATS at %s: %w", where, err)
}

func (c Config) authDescription() string {
	switch {
	case c.CredsFile != "":
		return flagCreds + "=" + c.CredsFile
	case c.Auth.UserFile != "":
		return flagUser + "=" + c.Auth.UserFile + " and " + flagPassword + "=" + c.Auth.PasswordFile
	case c.Auth.TokenFile != "":
		return flagToken + "=" + c.Auth.TokenFile
	}
	return ""
}

// RedactURL hides a password or token in a NATS URL list (comma-separated).
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, hasPassword := u.User.Password(); hasPassword {
			parts[i] = u.Redacted()
		} else {
			// A user part alone is a token.
			u.User = url.User("xxxxx")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// CheckCredentials checks that data is a NATS credentials file, for the operator
// to report a bad Secret before the dispatcher fails on it. The error never
// holds the file's content.
func CheckCredentials(data []byte) error {
	jwt, err := nkeys.ParseDecoratedJWT(data)
	if err != nil || !strings.HasPrefix(jwt, "eyJ") {
		return errors.New("no user JWT found")
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return errors.New("no user nkey seed found")
	}
	kp.Wipe()
	return nil
}

// CheckCA checks that data holds PEM certificates.
func CheckCA(data []byte) error {
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return errors.New("no PEM certificate found")
	}
	return nil
}

// CheckClientCert checks that cert and key are a PEM certificate and its key.
func CheckClientCert(cert, key []byte) error {
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return fmt.Errorf("not a usable certificate and key: %w", err)
	}
	return nil
}
