package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/hookline/hookline/internal/ssrf"
)

// connectProxy is a loopback HTTP CONNECT proxy. Like a real egress proxy it resolves
// names itself, here from a fixed table, so a receiver can be addressed by a name the
// dispatcher cannot resolve; it records every tunnel it opens.
type connectProxy struct {
	ln    net.Listener
	hosts map[string]string // name -> IP
	auth  string            // expected Proxy-Authorization; empty accepts any

	mu      sync.Mutex
	tunnels []string
	wg      sync.WaitGroup
}

func newConnectProxy(t *testing.T, hosts map[string]string) *connectProxy {
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln, hosts: hosts}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { _ = ln.Close(); p.wg.Wait() })
	return p
}

func (p *connectProxy) URL() *url.URL { return &url.URL{Scheme: "http", Host: p.ln.Addr().String()} }

func (p *connectProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tunnels...)
}

func (p *connectProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *connectProxy) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		_, _ = io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if p.auth != "" && req.Header.Get("Proxy-Authorization") != p.auth {
		_, _ = io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.mu.Lock()
	p.tunnels = append(p.tunnels, req.Host)
	p.mu.Unlock()
	host, port, _ := net.SplitHostPort(req.Host)
	if ip, ok := p.hosts[host]; ok {
		host = ip
	}
	up, err := (&net.Dialer{}).DialContext(req.Context(), "tcp", net.JoinHostPort(host, port))
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, br); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// httpsReceiverAt starts a TLS receiver whose certificate names host, and returns it with
// its URL spelled with that host.
func httpsReceiverAt(t *testing.T, host string) (*receiver, string, []byte) {
	ca := newCA(t, "receiver CA")
	_, _, cert := ca.issue(t, "receiver", []string{host}, nil, x509.ExtKeyUsageServerAuth)
	rc := tlsReceiver(t, &tls.Config{Certificates: []tls.Certificate{cert}}, false)
	_, port, _ := net.SplitHostPort(rc.Listener.Addr().String())
	return rc, "https://" + net.JoinHostPort(host, port) + "/hook", ca.pem
}

func TestProxyTunnelsHTTPS(t *testing.T) {
	rc, u, caPEM := httpsReceiverAt(t, "receiver.test")
	px := newConnectProxy(t, map[string]string{"receiver.test": "127.0.0.1"})
	px.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte("egress:pa55"))
	proxyURL := px.URL()
	proxyURL.User = url.UserPassword("egress", "pa55")
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: u, CABundle: caPEM, Proxy: &Proxy{URL: proxyURL}})

	res := Send(context.Background(), tg, testMessage(), t0)
	if res.Verdict != Delivered {
		t.Fatalf("Send through the proxy: %+v", res)
	}
	if got := px.seen(); len(got) != 1 || !strings.HasPrefix(got[0], "receiver.test:") {
		t.Errorf("proxy tunnels: %v, want one to receiver.test", got)
	}
	// TLS is end to end: the receiver, not the proxy, terminated it, and the signed
	// headers arrived.
	if got := rc.last(t); !got.TLS || got.Header.Get("Webhook-Signature") == "" || got.Header.Get("Proxy-Authorization") != "" {
		t.Errorf("receiver got TLS=%v signature=%q proxy-authorization=%q", got.TLS, got.Header.Get("Webhook-Signature"), got.Header.Get("Proxy-Authorization"))
	}

	// The wrong proxy credentials: the proxy answers 407 and nothing is delivered.
	proxyURL.User = url.UserPassword("egress", "wrong")
	bad := newTestTarget(t, p, TargetConfig{URL: u, CABundle: caPEM, Proxy: &Proxy{URL: proxyURL}})
	if res := Send(context.Background(), bad, testMessage(), t0); res.Verdict != Retry || res.Err == nil || !strings.Contains(res.Err.Error(), "Proxy Authentication Required") {
		t.Errorf("wrong proxy password: %+v", res)
	}
	if n := rc.requests.Load(); n != 1 {
		t.Errorf("receiver got %d requests, want 1", n)
	}
}

func TestProxyAddressPassesTheSSRFPolicy(t *testing.T) {
	_, u, caPEM := httpsReceiverAt(t, "receiver.test")
	px := newConnectProxy(t, map[string]string{"receiver.test": "127.0.0.1"})
	// A policy that allows nothing on this machine: the proxy's loopback address is refused
	// like any destination's ...
	policy, err := ssrf.ParsePolicy([]string{"203.0.113.0/24"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: u, CABundle: caPEM, SSRF: policy, Proxy: &Proxy{URL: px.URL()}})
	res := Send(context.Background(), tg, testMessage(), t0)
	var denied *ssrf.DeniedError
	if res.Verdict != Retry || !errors.As(res.Err, &denied) || denied.Addr.String() != "127.0.0.1" {
		t.Fatalf("Send: %+v, want the proxy's address refused", res)
	}
	if len(px.seen()) != 0 {
		t.Error("the refused proxy was used")
	}

	// ... unless the installation trusts its proxy (--egress-proxy-allow-private).
	trusted := newTestTarget(t, p, TargetConfig{URL: u, CABundle: caPEM, SSRF: policy, Proxy: &Proxy{URL: px.URL(), Trusted: true}})
	if res := Send(context.Background(), trusted, testMessage(), t0); res.Verdict != Delivered {
		t.Fatalf("Send through the trusted proxy: %+v", res)
	}
}

func TestProxyRefusesIPLiteralDestinations(t *testing.T) {
	px := newConnectProxy(t, nil)
	p, _ := newTestPool(t)
	// The policy allows the proxy (loopback) but not 10.0.0.0/8: a URL naming such an
	// address is refused before the proxy is asked.
	tg := newTestTarget(t, p, TargetConfig{URL: "https://10.1.2.3:8443/hook", Proxy: &Proxy{URL: px.URL()}})
	res := Send(context.Background(), tg, testMessage(), t0)
	var denied *ssrf.DeniedError
	if res.Verdict != Retry || !errors.As(res.Err, &denied) || denied.Addr.String() != "10.1.2.3" {
		t.Fatalf("Send: %+v, want 10.1.2.3 refused", res)
	}
	if len(px.seen()) != 0 {
		t.Errorf("the proxy was asked for %v", px.seen())
	}
}

func TestProxyNoProxyExclusions(t *testing.T) {
	px := &Proxy{URL: &url.URL{Scheme: "http", Host: "proxy.example:3128"}, NoProxy: "internal.example, .svc, 192.168.0.0/16, partner.example:8443"}
	pick := px.proxyFunc(ssrf.Policy{Allow: loopback(t).Allow})
	for raw, proxied := range map[string]bool{
		"https://hooks.example.com/x":          true,
		"https://internal.example/x":           false,
		"https://a.internal.example/x":         false,
		"https://orders.billing.svc/x":         false,
		"https://svc/x":                        true, // a leading dot matches subdomains only
		"https://partner.example:8443/x":       false,
		"https://partner.example/x":            true, // another port
		"https://localhost:8443/x":             false,
		"https://127.0.0.1:8443/x":             false,
		"http://plain.example/x":               true,
		"https://[2001:db8::1]:443/x":          true,
		"https://hooks.example.com.evil.net/x": true,
	} {
		u, _ := url.Parse(raw)
		got, err := pick(&http.Request{URL: u})
		if raw == "https://[2001:db8::1]:443/x" {
			// Documentation addresses are refused by the built-in ranges.
			if err == nil {
				t.Errorf("%s: no SSRF refusal", raw)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		if (got != nil) != proxied {
			t.Errorf("%s: proxy %v, want proxied=%v", raw, got, proxied)
		}
	}
}
