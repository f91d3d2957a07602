package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpproxy"

	"github.com/hookline/hookline/internal/ssrf"
)

// Proxy sends an endpoint's requests (deliveries and OAuth2 token requests) through an
// HTTP proxy: https:// URLs through a CONNECT tunnel, so TLS stays end to end, http://
// URLs as absolute-form requests to the proxy.
//
// The SSRF policy still vets every address the dispatcher connects to, the proxy's among
// them, unless Trusted. What it can no longer vet is where the proxy connects: the proxy
// resolves the receiver's name, so only a destination written as an IP literal is checked
// here; the proxy must enforce its own rules for the rest.
type Proxy struct {
	// URL is the proxy, http://host:port or https://host:port, with optional
	// user:password for Proxy-Authorization.
	URL *url.URL
	// NoProxy lists destinations reached without the proxy, in the NO_PROXY format:
	// comma-separated host names (matching subdomains too; a leading dot matches only
	// subdomains), IP addresses, CIDR ranges, each optionally with :port, or "*".
	// localhost and loopback addresses never use a proxy.
	NoProxy string
	// Trusted exempts the proxy's own address from the SSRF policy: an installation's
	// proxy in a private range, allowed by the person installing hookline.
	Trusted bool
}

// ParseProxyURL checks a proxy URL as given in a flag or a spec.
func ParseProxyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("proxy URL does not parse; use http://host:port")
	}
	return u, checkProxyURL(u)
}

func checkProxyURL(u *url.URL) error {
	if u == nil {
		return errors.New("proxy URL does not parse; use http://host:port")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("proxy URL scheme %q: use http:// or https://", u.Scheme)
	case u.Hostname() == "":
		return errors.New("proxy URL has no host; use http://host:port")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return errors.New("proxy URL must be only scheme://host:port")
	}
	return nil
}

// String identifies the proxy settings, credentials included, for telling transports
// apart; it is hashed and never shown.
func (p *Proxy) String() string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf("%s|%s|%t", p.URL.String(), p.NoProxy, p.Trusted)
}

// Display is the proxy's scheme and host, for logs and errors.
func (p *Proxy) Display() string {
	if p == nil || p.URL == nil {
		return ""
	}
	return (&url.URL{Scheme: p.URL.Scheme, Host: p.URL.Host}).String()
}

// proxyFunc is the transport's Proxy: the proxy for a request, or nil for a direct
// connection. A destination written as an IP address is vetted against the policy here,
// since through the proxy no dial of ours would see it.
func (p *Proxy) proxyFunc(policy ssrf.Policy) func(*http.Request) (*url.URL, error) {
	s := p.URL.String()
	pick := (&httpproxy.Config{HTTPProxy: s, HTTPSProxy: s, NoProxy: p.NoProxy}).ProxyFunc()
	return func(req *http.Request) (*url.URL, error) {
		u, err := pick(req.URL)
		if err != nil || u == nil {
			return u, err
		}
		if a, err := netip.ParseAddr(strings.Trim(req.URL.Hostname(), "[]")); err == nil {
			if err := policy.Check(a); err != nil {
				return nil, err
			}
		}
		return u, nil
	}
}

// proxyAddr is the host:port the transport dials for the proxy.
func (p *Proxy) proxyAddr() string {
	port := p.URL.Port()
	if port == "" {
		port = "80"
		if p.URL.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(p.URL.Hostname(), port)
}

// dialer returns the transport's DialContext: through the SSRF guard, except for a
// trusted proxy's own address.
func dialer(guarded *net.Dialer, p *Proxy) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if p == nil || !p.Trusted {
		return guarded.DialContext
	}
	open := *guarded
	open.Control = nil
	trusted := p.proxyAddr()
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == trusted {
			return open.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
}
