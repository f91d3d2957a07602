package delivery

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/ssrf"
)

// Defaults from the design's delivery defaults.
const (
	DefaultTimeout        = 15 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	// DefaultMaxIdleConnsPerHost is far above net/http's 2 because one busy
	// endpoint takes many parallel deliveries, and every connection beyond
	// the idle limit is a new TCP and TLS handshake.
	DefaultMaxIdleConnsPerHost = 128
)

// Signer returns the webhook-signature header value for one attempt. ts is
// the attempt time truncated to the second, exactly as sent in
// webhook-timestamp.
type Signer func(msgID string, ts time.Time, body []byte) string

// APIKey sends a key in a header or in a query parameter; set exactly one of
// Header and QueryParam.
type APIKey struct {
	Header     string
	QueryParam string
	Value      string
}

type BasicAuth struct {
	Username string
	Password string
}

// ClientCert is a PEM certificate chain and key for mutual TLS.
type ClientCert struct {
	CertPEM []byte
	KeyPEM  []byte
}

// Auth holds at most one of APIKey, Basic and BearerToken; a client
// certificate can accompany any of them.
type Auth struct {
	APIKey      *APIKey
	Basic       *BasicAuth
	BearerToken string
	ClientCert  *ClientCert
}

// TargetConfig describes one endpoint with every secret already resolved.
type TargetConfig struct {
	URL string
	// Headers are sent on every request. Names that hookline sets itself
	// (webhook-*, content-type, the CloudEvents attributes) are refused.
	Headers http.Header
	Auth    Auth
	// CABundle, when set, replaces the system roots: an endpoint on a
	// private PKI should not also accept any public certificate.
	CABundle []byte
	// ServerName overrides the name used for SNI and certificate checks.
	ServerName     string
	Timeout        time.Duration // whole attempt; DefaultTimeout if zero
	ConnectTimeout time.Duration // TCP and TLS handshake; DefaultConnectTimeout if zero
	SSRF           ssrf.Policy
	Sign           Signer
}

// Target is an endpoint ready to send to. It is safe for concurrent use and
// meant to be built once and reused for every delivery to the endpoint.
type Target struct {
	reqURL  *url.URL // with the API key query parameter, never shown
	display string   // scheme://host, safe for errors and logs
	header  http.Header
	timeout time.Duration
	sign    Signer
	clock   clock.PassiveClock
	// secrets are scrubbed from stored response bodies: a receiver that
	// echoes the request would otherwise put them in the attempt log.
	secrets [][]byte

	pool   *Pool
	entry  *poolEntry
	closed atomic.Bool
}

// URL returns the endpoint's scheme and host, for logs.
func (t *Target) URL() string { return t.display }

// Close releases the target's share of its transport. Idle connections are
// closed once no target uses the transport.
func (t *Target) Close() {
	if t.closed.Swap(true) {
		return
	}
	t.pool.release(t.entry)
}

// reservedHeaders are set by hookline on every request; a user header with
// one of these names would let an endpoint's configuration forge an id, a
// timestamp or a signature, or break the payload format.
var reservedHeaders = map[string]bool{
	"Content-Type":        true,
	"Content-Length":      true,
	"Content-Encoding":    true,
	"Transfer-Encoding":   true,
	"Accept-Encoding":     true,
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authorization": true,
	"Upgrade":             true,
	"Te":                  true,
	"Trailer":             true,
	"Expect":              true,
	"Host":                true,
	"Ce-Specversion":      true,
	"Ce-Id":               true,
	"Ce-Source":           true,
	"Ce-Type":             true,
	"Ce-Time":             true,
	"Ce-Datacontenttype":  true,
	// Send sets it empty to mark deliveries idempotent for net/http.
	"X-Idempotency-Key": true,
}

func isReserved(canonical string) bool {
	return reservedHeaders[canonical] || strings.HasPrefix(canonical, "Webhook-")
}

// buildTarget checks cfg and turns it into a Target, in three steps: the URL,
// the configured headers, the auth.
func buildTarget(cfg TargetConfig) (*Target, error) {
	u, display, err := parseEndpointURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Sign == nil {
		return nil, fmt.Errorf("endpoint %s: no signer", display)
	}
	u.Fragment, u.RawFragment = "", ""

	t := &Target{display: display, sign: cfg.Sign, timeout: cfg.Timeout, header: http.Header{}}
	if t.timeout <= 0 {
		t.timeout = DefaultTimeout
	}
	if err := t.addHeaders(cfg.Headers); err != nil {
		return nil, err
	}
	if err := t.addAuth(cfg.Auth, u); err != nil {
		return nil, err
	}
	t.reqURL = u
	return t, nil
}

// parseEndpointURL parses an endpoint's URL and returns it with the part of it
// that may be shown (scheme and host).
func parseEndpointURL(raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL, which may hold a key.
		return nil, "", errors.New("endpoint URL does not parse")
	}
	// Only scheme and host are ever shown: Slack, Discord and Teams put the
	// webhook's secret in the path.
	display := (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", fmt.Errorf("endpoint %s: scheme must be http or https", display)
	}
	if u.Host == "" {
		return nil, "", fmt.Errorf("endpoint %s: URL has no host", display)
	}
	if u.User != nil {
		return nil, "", fmt.Errorf("endpoint %s: credentials in the URL are not allowed; use basic auth", display)
	}
	return u, display, nil
}

// addHeaders adds the endpoint's configured headers, refusing invalid ones and
// those hookline sets itself.
func (t *Target) addHeaders(headers http.Header) error {
	for name, values := range headers {
		if !validHeaderName(name) {
			return fmt.Errorf("endpoint %s: %q is not a valid header name", t.display, name)
		}
		key := http.CanonicalHeaderKey(name)
		if isReserved(key) {
			return fmt.Errorf("endpoint %s: header %s is set by hookline and cannot be configured", t.display, key)
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return fmt.Errorf("endpoint %s: header %s has a value with control characters", t.display, key)
			}
			t.header[key] = append(t.header[key], v)
		}
	}
	return nil
}

// addAuth adds the one kind of auth a sets, as a header or, for an API key in
// a query parameter, to u; it remembers the secret values so they can be
// scrubbed from what receivers echo.
func (t *Target) addAuth(a Auth, u *url.URL) error {
	kinds := 0
	for _, set := range []bool{a.APIKey != nil, a.Basic != nil, a.BearerToken != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		return fmt.Errorf("endpoint %s: use one of API key, basic and bearer auth", t.display)
	}
	switch {
	case a.APIKey != nil:
		k := a.APIKey
		if k.Value == "" || (k.Header == "") == (k.QueryParam == "") {
			return fmt.Errorf("endpoint %s: an API key needs a value and exactly one of header and query parameter", t.display)
		}
		t.secrets = append(t.secrets, []byte(k.Value))
		if k.Header == "" {
			if u.RawQuery != "" {
				u.RawQuery += "&"
			}
			u.RawQuery += url.QueryEscape(k.QueryParam) + "=" + url.QueryEscape(k.Value)
			return nil
		}
		if !validHeaderName(k.Header) {
			return fmt.Errorf("endpoint %s: %q is not a valid header name", t.display, k.Header)
		}
		key := http.CanonicalHeaderKey(k.Header)
		if isReserved(key) {
			return fmt.Errorf("endpoint %s: header %s is set by hookline and cannot carry an API key", t.display, key)
		}
		return t.setAuthHeader(key, k.Value)
	case a.Basic != nil:
		cred := base64.StdEncoding.EncodeToString([]byte(a.Basic.Username + ":" + a.Basic.Password))
		if a.Basic.Password != "" {
			t.secrets = append(t.secrets, []byte(a.Basic.Password))
		}
		t.secrets = append(t.secrets, []byte(cred))
		return t.setAuthHeader("Authorization", "Basic "+cred)
	case a.BearerToken != "":
		t.secrets = append(t.secrets, []byte(a.BearerToken))
		return t.setAuthHeader("Authorization", "Bearer "+a.BearerToken)
	}
	return nil
}

// setAuthHeader sets an auth header, which no configured header may also set.
func (t *Target) setAuthHeader(key, value string) error {
	if _, ok := t.header[key]; ok {
		return fmt.Errorf("endpoint %s: header %s is set both by auth and by headers", t.display, key)
	}
	if !validHeaderValue(value) {
		return fmt.Errorf("endpoint %s: auth value for %s has control characters", t.display, key)
	}
	t.header[key] = []string{value}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
