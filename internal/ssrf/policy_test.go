package ssrf

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func mustPolicy(t *testing.T, allow, deny []string) Policy {
	t.Helper()
	p, err := ParsePolicy(allow, deny)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	clusterDeny := []string{"10.96.0.0/12", "fd00:10:96::/108"}
	tests := []struct {
		name   string
		allow  []string
		deny   []string
		addr   string
		reason string // empty: allowed
	}{
		{name: "public v4", addr: "93.184.216.34"},
		{name: "public v6", addr: "2606:2800:220:1:248:1893:25c8:1946"},
		{name: "loopback", addr: "127.0.0.1", reason: "loopback address"},
		{name: "loopback elsewhere in /8", addr: "127.5.6.7", reason: "loopback address"},
		{name: "loopback v6", addr: "::1", reason: "loopback address"},
		{name: "unspecified v4", addr: "0.0.0.0", reason: "unspecified address"},
		{name: "unspecified v6", addr: "::", reason: "unspecified address"},
		{name: "metadata", addr: "169.254.169.254", reason: "link-local address"},
		{name: "link-local v6", addr: "fe80::1", reason: "link-local address"},
		{name: "link-local v6 with zone", addr: "fe80::1%eth0", reason: "link-local address"},
		{name: "rfc1918 10", addr: "10.0.0.5", reason: "private address"},
		{name: "rfc1918 172.16", addr: "172.16.0.1", reason: "private address"},
		{name: "rfc1918 172.31", addr: "172.31.255.255", reason: "private address"},
		{name: "just outside 172.16/12", addr: "172.32.0.1"},
		{name: "rfc1918 192.168", addr: "192.168.1.1", reason: "private address"},
		{name: "ula", addr: "fd12:3456::1", reason: "private address"},
		{name: "ula fc", addr: "fc00::1", reason: "private address"},
		{name: "cgnat", addr: "100.64.0.1", reason: "carrier-grade NAT"},
		{name: "cgnat top", addr: "100.127.255.254", reason: "carrier-grade NAT"},
		{name: "just outside cgnat", addr: "100.128.0.1"},
		{name: "multicast v4", addr: "224.0.0.251", reason: "multicast address"},
		{name: "multicast v6", addr: "ff02::1", reason: "multicast address"},
		{name: "broadcast", addr: "255.255.255.255", reason: "limited broadcast address"},
		{name: "mapped loopback", addr: "::ffff:127.0.0.1", reason: "loopback address (embedded"},
		{name: "mapped private", addr: "::ffff:10.1.2.3", reason: "private address (RFC 1918) (embedded"},
		{name: "mapped metadata", addr: "::ffff:169.254.169.254", reason: "link-local"},
		{name: "mapped public", addr: "::ffff:8.8.8.8"},
		{name: "nat64 private", addr: "64:ff9b::10.0.0.1", reason: "private address (RFC 1918) (embedded"},
		{name: "nat64 public", addr: "64:ff9b::8.8.8.8"},
		{name: "v4-compatible loopback", addr: "::127.0.0.1", reason: "loopback address (embedded"},

		{name: "allow-list opens loopback", allow: []string{"127.0.0.0/8", "::1"}, addr: "127.0.0.1"},
		{name: "allow-list opens v6 loopback", allow: []string{"127.0.0.0/8", "::1"}, addr: "::1"},
		{name: "v4 allow covers mapped form", allow: []string{"127.0.0.0/8"}, addr: "::ffff:127.0.0.1"},
		{name: "mapped allow covers v4 form", allow: []string{"::ffff:10.0.0.0/104"}, addr: "10.1.1.1"},
		{name: "allow is narrow", allow: []string{"10.1.0.0/16"}, addr: "10.2.0.1", reason: "private address"},
		{name: "allow inside private", allow: []string{"10.1.0.0/16"}, addr: "10.1.200.3"},

		{name: "extra deny public", deny: []string{"203.0.113.0/24"}, addr: "203.0.113.9", reason: "denied range 203.0.113.0/24"},
		{name: "extra deny v6", deny: clusterDeny, addr: "fd00:10:96::a", reason: "denied range fd00:10:96::/108"},
		{name: "extra deny mapped", deny: []string{"203.0.113.0/24"}, addr: "::ffff:203.0.113.9", reason: "denied range"},
		{name: "wider allow loses to narrower deny", allow: []string{"10.0.0.0/8"}, deny: clusterDeny, addr: "10.96.0.1", reason: "denied range 10.96.0.0/12"},
		{name: "wider allow still allows outside deny", allow: []string{"10.0.0.0/8"}, deny: clusterDeny, addr: "10.200.0.1"},
		{name: "narrower allow beats wider deny", allow: []string{"10.96.0.10/32"}, deny: clusterDeny, addr: "10.96.0.10"},
		{name: "equal allow and deny denies", allow: []string{"10.96.0.0/12"}, deny: clusterDeny, addr: "10.96.0.10", reason: "denied range"},
		{name: "allow everything", allow: []string{"0.0.0.0/0", "::/0"}, addr: "169.254.169.254"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(t, tt.allow, tt.deny)
			err := p.Check(netip.MustParseAddr(tt.addr))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tt.addr, err)
				}
				return
			}
			var de *DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("Check(%s) = %v, want *DeniedError", tt.addr, err)
			}
			if !strings.Contains(de.Reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", de.Reason, tt.reason)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		addr string
		deny []string
		want string
	}{
		{addr: "10.0.0.5:443", want: "ssrf: refusing to connect to 10.0.0.5: private address (RFC 1918) (allow it with --allow-cidr 10.0.0.0/8)"},
		{addr: "[::1]:80", want: "ssrf: refusing to connect to ::1: loopback address (allow it with --allow-cidr ::1/128)"},
		{addr: "[::ffff:127.0.0.1]:80", want: "ssrf: refusing to connect to ::ffff:127.0.0.1: loopback address (embedded in IPv6 address as IPv4-mapped) (allow it with --allow-cidr 127.0.0.0/8)"},
		{addr: "169.254.169.254:80", want: "ssrf: refusing to connect to 169.254.169.254: link-local address (cloud metadata lives here) (allow it with --allow-cidr 169.254.0.0/16)"},
		{addr: "10.96.0.1:443", deny: []string{"10.96.0.0/12"}, want: "ssrf: refusing to connect to 10.96.0.1: address in denied range 10.96.0.0/12"},
	}
	for _, tt := range tests {
		p := mustPolicy(t, nil, tt.deny)
		err := p.Control("tcp", tt.addr, nil)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Control(%s) = %v\nwant %s", tt.addr, err, tt.want)
		}
	}
}

func TestControlRejectsNonLiteral(t *testing.T) {
	for _, addr := range []string{"localhost:80", "example.com:443", "10.0.0.1", ""} {
		err := Policy{}.Control("tcp", addr, nil)
		if !errors.Is(err, ErrUnparsableAddress) {
			t.Errorf("Control(%q) = %v, want ErrUnparsableAddress", addr, err)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy([]string{" 127.0.0.0/8 ", "::1", "", "10.1.2.3"}, []string{"10.96.0.1/12"})
	if err != nil {
		t.Fatal(err)
	}
	want := "allow=127.0.0.0/8,::1/128,10.1.2.3/32 deny=10.96.0.0/12"
	if got := p.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, bad := range [][2][]string{
		{{"10.0.0.0/33"}, nil},
		{{"not-an-ip"}, nil},
		{nil, {"10.0.0.0/x"}},
	} {
		if _, err := ParsePolicy(bad[0], bad[1]); err == nil {
			t.Errorf("ParsePolicy(%q, %q) succeeded, want an error", bad[0], bad[1])
		}
	}
}

// TestDialer checks the guard where it runs in production: inside a real
// net.Dialer, after the name has been resolved.
func TestDialer(t *testing.T) {
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	refuse := &net.Dialer{Control: Policy{}.Control}
	for _, addr := range []string{ln.Addr().String(), net.JoinHostPort("localhost", port)} {
		_, err := refuse.DialContext(context.Background(), "tcp", addr)
		var de *DeniedError
		if !errors.As(err, &de) {
			t.Errorf("dial %s without allow-list: %v, want *DeniedError", addr, err)
		}
	}

	allow := &net.Dialer{Control: mustPolicy(t, []string{"127.0.0.0/8"}, nil).Control}
	c, err := allow.DialContext(context.Background(), "tcp4", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial with 127.0.0.0/8 allowed: %v", err)
	}
	c.Close()
}
