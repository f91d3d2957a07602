package delivery

import (
	"encoding/base64"
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
	// OAuth2 fetches the bearer token with the client credentials grant.
	OAuth2 *OAuth2
}

// TargetConfig describes one endpoint with every secret already resolved.
type TargetConfig struct {
	URL string
	// Headers are sent on every request. Names that hookline sets itself
	// (webhook-*, content-type, the CloudEvents attributes) are refused.
	Headers http.Header
	// SecretHeaderValues are the values of Headers that come from Secrets:
	// like auth values, they are scrubbed from stored response bodies.
	SecretHeaderValues []string
	Auth               Auth
	// CABundle, when set, replaces the system roots: an endpoint on a
	// private PKI should not also accept any public certificate.
	CABundle []byte
	// ServerName overrides the name used for SNI and certificate checks.
	ServerName     string
	Timeout        time.Duration // whole attempt; DefaultTimeout if zero
	ConnectTimeout time.Duration // TCP and TLS handshake; DefaultConnectTimeout if zero
	SSRF           ssrf.Policy
	// Proxy, when set, carries the endpoint's requests; nil connects directly.
	Proxy *Proxy
	Sign  Signer
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
	// authHeader is the static auth header's name (Authorization, or an
	// API key's header), masked in Result.Headers.
	authHeader string
	// shownHeader is the configured headers as Result.Headers shows them,
	// rendered once (renderConfiguredHeaders).
	shownHeader  string
	userAgentSet bool

	// oauth fetches the access token sent with every request; nil without OAuth2.
	oauth *tokenSource

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
	if t.oauth != nil {
		t.oauth.client.CloseIdleConnections()
	}
}

// ReservedHeaders are set by hookline on every request, or belong to the connection
// rather than to the message; a user header with one of these names would let an
// endpoint's configuration forge an id, a timestamp or a signature, break the payload
// format or the framing. Names are canonical. ReservedHeaderPrefixes extend the list.
// The CRD's rule on spec.headers[].name refuses the same names at apply time; a test
// walks this list against the API server.
var ReservedHeaders = []string{
	"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Accept-Encoding",
	"Connection", "Keep-Alive", "Upgrade", "Te", "Trailer", "Expect", "Host",
	// Send sets it empty to mark deliveries idempotent for net/http.
	"X-Idempotency-Key",
}

// ReservedHeaderPrefixes: the signature headers, the CloudEvents attributes and the
// proxy headers (Proxy-Authorization, Proxy-Connection, ...).
var ReservedHeaderPrefixes = []string{"Webhook-", "Ce-", "Proxy-"}

var reservedHeaders = func() map[string]bool {
	m := map[string]bool{}
	for _, h := range ReservedHeaders {
		m[h] = true
	}
	return m
}()

// IsReservedHeader reports whether a header name (any case) cannot be configured.
func IsReservedHeader(name string) bool {
	canonical := http.CanonicalHeaderKey(name)
	if reservedHeaders[canonical] {
		return true
	}
	for _, p := range ReservedHeaderPrefixes {
		if strings.HasPrefix(canonical, p) {
			return true
		}
	}
	return false
}

// Refusal says which part of a TargetConfig a TargetError is about.
type Refusal int

const (
	// RefusedConfig: the endpoint's spec (URL, header names, auth combination). The CRD's
	// rules refuse all of these at apply time.
	RefusedConfig Refusal = iota
	// RefusedValue: a header, auth or API key value, which comes from a Secret: empty, or
	// with control characters.
	RefusedValue
	// RefusedTLS: the CA bundle or the client certificate and key do not load.
	RefusedTLS
)

// TargetError is NewTarget's and CheckTarget's refusal of a configuration. Its message
// names the endpoint by scheme and host and never holds a secret value.
type TargetError struct {
	Refusal Refusal
	msg     string
}

func (e *TargetError) Error() string { return e.msg }

func refuse(r Refusal, format string, args ...any) error {
	return &TargetError{Refusal: r, msg: fmt.Sprintf(format, args...)}
}

// CheckTarget runs every check NewTarget runs, without building a target or a transport.
// The operator calls it on the configuration it resolves from the same Secrets, so an
// endpoint the dispatcher would refuse is reported on the endpoint, not only in the
// dispatcher.
func CheckTarget(cfg TargetConfig) error {
	if cfg.Sign == nil {
		cfg.Sign = func(string, time.Time, []byte) string { return "" }
	}
	t, err := buildTarget(cfg)
	if err != nil {
		return err
	}
	if _, err := tlsConfig(cfg); err != nil {
		return refuse(RefusedTLS, "endpoint %s: %v", t.display, err)
	}
	if o := cfg.Auth.OAuth2; o != nil {
		if _, err := newTokenSource(o, nil, DefaultTimeout, clock.RealClock{}); err != nil {
			return err
		}
	}
	return nil
}

func buildTarget(cfg TargetConfig) (*Target, error) {
	u, display, err := parseEndpointURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Sign == nil {
		return nil, refuse(RefusedConfig, "endpoint %s: no signer", display)
	}
	t := &Target{display: display, sign: cfg.Sign, timeout: cfg.Timeout, header: http.Header{}}
	if t.timeout <= 0 {
		t.timeout = DefaultTimeout
	}
	if err := t.addHeaders(cfg.Headers); err != nil {
		return nil, err
	}
	for _, v := range cfg.SecretHeaderValues {
		if v != "" {
			t.secrets = append(t.secrets, []byte(v))
		}
	}
	if err := t.addAuth(cfg.Auth, u); err != nil {
		return nil, err
	}
	if cfg.Proxy != nil {
		if err := checkProxyURL(cfg.Proxy.URL); err != nil {
			return nil, refuse(RefusedConfig, "endpoint %s: %v", display, err)
		}
	}
	t.reqURL = u
	t.renderConfiguredHeaders()
	return t, nil
}

// parseEndpointURL checks an endpoint's URL and returns it with what may be
// shown of it: scheme and host only, because Slack, Discord and Teams put
// the webhook's secret in the path.
func parseEndpointURL(raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL, which may hold a key.
		return nil, "", refuse(RefusedConfig, "endpoint URL does not parse")
	}
	display := (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "", refuse(RefusedConfig, "endpoint %s: scheme must be http or https", display)
	case u.Host == "":
		return nil, "", refuse(RefusedConfig, "endpoint %s: URL has no host", display)
	case u.User != nil:
		return nil, "", refuse(RefusedConfig, "endpoint %s: credentials in the URL are not allowed; use basic auth", display)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, display, nil
}

// addHeaders adds the endpoint's own headers, refusing the ones hookline or
// the connection owns.
func (t *Target) addHeaders(headers map[string][]string) error {
	for name, values := range headers {
		if !validHeaderName(name) {
			return refuse(RefusedConfig, "endpoint %s: %q is not a valid header name", t.display, name)
		}
		key := http.CanonicalHeaderKey(name)
		if IsReservedHeader(key) {
			return refuse(RefusedConfig, "endpoint %s: header %s is set by hookline or belongs to the connection and cannot be configured", t.display, key)
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return refuse(RefusedValue, "endpoint %s: header %s has a value with control characters", t.display, key)
			}
			t.header[key] = append(t.header[key], v)
		}
	}
	return nil
}

// addAuth applies at most one auth method: a header, or for an API key in
// the query, a parameter of u. Every credential is remembered for scrubbing.
func (t *Target) addAuth(a Auth, u *url.URL) error {
	kinds := 0
	for _, set := range []bool{a.APIKey != nil, a.Basic != nil, a.BearerToken != "", a.OAuth2 != nil} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		return refuse(RefusedConfig, "endpoint %s: use one of API key, basic, bearer and OAuth2 auth", t.display)
	}
	switch {
	case a.APIKey != nil:
		return t.addAPIKey(a.APIKey, u)
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
	case a.OAuth2 != nil:
		// The token is set per request; the configured headers must leave room for it.
		if _, ok := t.header["Authorization"]; ok {
			return refuse(RefusedConfig, "endpoint %s: header Authorization is set both by OAuth2 auth and by headers", t.display)
		}
		if a.OAuth2.ClientSecret != "" {
			t.secrets = append(t.secrets, []byte(a.OAuth2.ClientSecret))
		}
	}
	return nil
}

func (t *Target) addAPIKey(k *APIKey, u *url.URL) error {
	if k.Value == "" || (k.Header == "") == (k.QueryParam == "") {
		return refuse(RefusedValue, "endpoint %s: an API key needs a non-empty value and exactly one of header and query parameter", t.display)
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
		return refuse(RefusedConfig, "endpoint %s: %q is not a valid header name", t.display, k.Header)
	}
	key := http.CanonicalHeaderKey(k.Header)
	if IsReservedHeader(key) {
		return refuse(RefusedConfig, "endpoint %s: header %s is set by hookline and cannot carry an API key", t.display, key)
	}
	return t.setAuthHeader(key, k.Value)
}

// setAuthHeader sets an auth header that the endpoint's own headers must not
// also set.
func (t *Target) setAuthHeader(key, value string) error {
	if _, ok := t.header[key]; ok {
		return refuse(RefusedConfig, "endpoint %s: header %s is set both by auth and by headers", t.display, key)
	}
	if !validHeaderValue(value) {
		return refuse(RefusedValue, "endpoint %s: auth value for %s has control characters", t.display, key)
	}
	t.header[key] = []string{value}
	t.authHeader = key
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
