package delivery

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/ssrf"
)

// PoolOptions tunes a Pool; zero values take the defaults.
type PoolOptions struct {
	Clock               clock.PassiveClock
	MaxIdleConnsPerHost int
}

// Pool shares HTTP transports between targets. Endpoints that need the same
// TLS settings, connect timeout and SSRF policy share one transport, so
// connections to a host are reused across endpoints and the number of
// transports stays small however many endpoints there are.
type Pool struct {
	clock          clock.PassiveClock
	maxIdlePerHost int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*poolEntry
}

// poolEntry holds a transport, not an http.Client: Send calls RoundTrip
// directly, so a redirect is never followed. A redirect is a failed attempt:
// following it would send the signed payload, with its auth headers, to a
// URL the endpoint's owner never configured.
type poolEntry struct {
	key       [sha256.Size]byte
	transport *http.Transport
	refs      int
}

func NewPool(opts PoolOptions) *Pool {
	p := &Pool{
		clock:          opts.Clock,
		maxIdlePerHost: opts.MaxIdleConnsPerHost,
		entries:        map[[sha256.Size]byte]*poolEntry{},
	}
	if p.clock == nil {
		p.clock = clock.RealClock{}
	}
	if p.maxIdlePerHost <= 0 {
		p.maxIdlePerHost = DefaultMaxIdleConnsPerHost
	}
	return p
}

// CloseIdleConnections closes idle connections of every transport, for
// shutdown.
func (p *Pool) CloseIdleConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.entries {
		e.transport.CloseIdleConnections()
	}
}

// Transports returns how many distinct transports the pool holds.
func (p *Pool) Transports() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

func (p *Pool) release(e *poolEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(p.entries, e.key)
		e.transport.CloseIdleConnections()
	}
}

// NewTarget validates cfg and builds a Target that shares a transport with
// every other target of the same TLS and dial settings.
func (p *Pool) NewTarget(cfg TargetConfig) (*Target, error) {
	t, err := buildTarget(cfg)
	if err != nil {
		return nil, err
	}
	t.clock = p.clock
	t.pool = p

	connect := cfg.ConnectTimeout
	if connect <= 0 {
		connect = DefaultConnectTimeout
	}
	key := transportKey(cfg, connect)

	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entries[key]
	if e == nil {
		tlsConf, err := tlsConfig(cfg)
		if err != nil {
			return nil, refuse(RefusedTLS, "endpoint %s: %v", t.display, err)
		}
		e = &poolEntry{key: key, transport: newTransport(tlsConf, connect, cfg.SSRF, cfg.Proxy, p.maxIdlePerHost)}
		p.entries[key] = e
	}
	if o := cfg.Auth.OAuth2; o != nil {
		// The token server gets a transport of its own: its TLS trust is not the
		// receiver's, and it is dialed through the same SSRF guard and proxy.
		tr := newTransport(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs}, connect, cfg.SSRF, cfg.Proxy, 2)
		if t.oauth, err = newTokenSource(o, tr, t.timeout, p.clock); err != nil {
			return nil, err
		}
	}
	e.refs++
	t.entry = e
	return t, nil
}

func newTransport(tlsConf *tls.Config, connect time.Duration, policy ssrf.Policy, proxy *Proxy, maxIdlePerHost int) *http.Transport {
	d := &net.Dialer{
		Timeout:   connect,
		KeepAlive: 30 * time.Second,
		Control:   policy.Control,
	}
	// Never a proxy from the environment: only one configured for hookline, whose
	// own address the SSRF guard vets (see Proxy).
	var proxyFunc func(*http.Request) (*url.URL, error)
	if proxy != nil {
		proxyFunc = proxy.proxyFunc(policy)
	}
	return &http.Transport{
		Proxy:                  proxyFunc,
		DialContext:            dialer(d, proxy),
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    connect,
		ForceAttemptHTTP2:      true,
		MaxIdleConnsPerHost:    maxIdlePerHost,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true, // we keep 20 KB of the answer; no point inflating it
		MaxResponseHeaderBytes: 64 << 10,
	}
}

func tlsConfig(cfg TargetConfig) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	if len(cfg.CABundle) > 0 {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(cfg.CABundle) {
			return nil, errors.New("CA bundle holds no PEM certificate")
		}
		c.RootCAs = roots
	}
	if cc := cfg.Auth.ClientCert; cc != nil {
		cert, err := tls.X509KeyPair(cc.CertPEM, cc.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// transportKey identifies everything that shapes a transport: TLS material,
// dial timeout and SSRF policy. Hashed, so key material is not kept twice.
func transportKey(cfg TargetConfig, connect time.Duration) [sha256.Size]byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(cfg.CABundle)
	field([]byte(cfg.ServerName))
	if cc := cfg.Auth.ClientCert; cc != nil {
		field(cc.CertPEM)
		field(cc.KeyPEM)
	} else {
		field(nil)
		field(nil)
	}
	field([]byte(connect.String()))
	field([]byte(cfg.SSRF.String()))
	field([]byte(cfg.Proxy.String()))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}
