package ssrf

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// ianaIPv4 is every entry of the IANA IPv4 Special-Purpose Address Registry,
// plus multicast and Azure's host services address, each with an address
// inside it and the words its refusal must contain. It is written out here
// rather than taken from builtin, so that a range dropped from builtin fails.
var ianaIPv4 = []struct{ cidr, addr, reason string }{
	{"0.0.0.0/8", "0.1.2.3", "unspecified"},
	{"10.0.0.0/8", "10.0.0.1", "private"},
	{"100.64.0.0/10", "100.100.100.200", "carrier-grade NAT"},
	{"127.0.0.0/8", "127.0.0.1", "loopback"},
	{"169.254.0.0/16", "169.254.169.254", "link-local"},
	{"172.16.0.0/12", "172.20.0.1", "private"},
	{"192.0.0.0/24", "192.0.0.192", "IETF protocol assignment"},
	{"192.0.0.0/29", "192.0.0.2", "DS-Lite"},
	{"192.0.0.8/32", "192.0.0.8", "IETF protocol assignment"},
	{"192.0.0.9/32", "192.0.0.9", "IETF protocol assignment"},
	{"192.0.0.10/32", "192.0.0.10", "IETF protocol assignment"},
	{"192.0.0.170/32", "192.0.0.170", "NAT64/DNS64 discovery"},
	{"192.0.0.171/32", "192.0.0.171", "NAT64/DNS64 discovery"},
	{"192.0.2.0/24", "192.0.2.10", "TEST-NET-1"},
	{"192.31.196.0/24", "192.31.196.1", "AS112"},
	{"192.52.193.0/24", "192.52.193.1", "AMT"},
	{"192.88.99.0/24", "192.88.99.1", "6to4 relay"},
	{"192.168.0.0/16", "192.168.1.1", "private"},
	{"192.175.48.0/24", "192.175.48.1", "AS112"},
	{"198.18.0.0/15", "198.19.255.1", "benchmarking"},
	{"198.51.100.0/24", "198.51.100.7", "TEST-NET-2"},
	{"203.0.113.0/24", "203.0.113.9", "TEST-NET-3"},
	{"240.0.0.0/4", "250.1.2.3", "reserved"},
	{"255.255.255.255/32", "255.255.255.255", "limited broadcast"},
	{"224.0.0.0/4", "239.255.255.250", "multicast"},
	{"168.63.129.16/32", "168.63.129.16", "Azure host services"},
}

// ianaIPv6 is every entry of the IANA IPv6 Special-Purpose Address Registry
// that is refused as such, plus site-local and multicast.
var ianaIPv6 = []struct{ cidr, addr, reason string }{
	{"::/128", "::", "unspecified"},
	{"::1/128", "::1", "loopback"},
	{"64:ff9b:1::/48", "64:ff9b:1:ffff::1", "local-use NAT64"},
	{"100::/64", "100::1", "discard-only"},
	{"100:0:0:1::/64", "100:0:0:1::1", "dummy IPv6 prefix"},
	{"2001::/23", "2001:1ff::1", "IETF protocol assignment"},
	{"2001::/32", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
	{"2001:1::1/128", "2001:1::1", "PCP anycast"},
	{"2001:1::2/128", "2001:1::2", "TURN anycast"},
	{"2001:1::3/128", "2001:1::3", "DNS-SD"},
	{"2001:2::/48", "2001:2::1", "benchmarking"},
	{"2001:3::/32", "2001:3::1", "AMT"},
	{"2001:4:112::/48", "2001:4:112::1", "AS112-v6"},
	{"2001:10::/28", "2001:10::1", "ORCHID"},
	{"2001:20::/28", "2001:20::1", "ORCHIDv2"},
	{"2001:30::/28", "2001:30::1", "drone remote ID"},
	{"2001:db8::/32", "2001:db8::1", "documentation"},
	{"2002::/16", "2002:808:808::1", "6to4"},
	{"2620:4f:8000::/48", "2620:4f:8000::1", "AS112 direct delegation"},
	{"3fff::/20", "3fff:fff::1", "documentation"},
	{"5f00::/16", "5f00::1", "SRv6"},
	{"fc00::/7", "fd00:ec2::254", "unique local"},
	{"fe80::/10", "fe80::1", "link-local"},
	{"fec0::/10", "fec0::1", "site-local"},
	{"ff00::/8", "ff02::1", "multicast"},
}

// embeddings are the IPv6 forms that carry an IPv4 address a connection
// reaches. open is the allow entry that lifts the IPv6 range itself (empty
// when it is not refused as such), so that the embedded address is judged
// on its own.
var embeddings = []struct {
	form  string
	open  string
	embed func(v4 [4]byte) netip.Addr
}{
	{formMapped, "", func(v [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: v[0], 13: v[1], 14: v[2], 15: v[3]})
	}},
	{formCompatible, "", func(v [4]byte) netip.Addr { return netip.AddrFrom16([16]byte{12: v[0], 13: v[1], 14: v[2], 15: v[3]}) }},
	{formNAT64, "", func(v [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{1: 0x64, 2: 0xff, 3: 0x9b, 12: v[0], 13: v[1], 14: v[2], 15: v[3]})
	}},
	{formLocalNAT64, "64:ff9b:1::/48", func(v [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{1: 0x64, 2: 0xff, 3: 0x9b, 5: 0x01, 6: v[0], 7: v[1], 9: v[2], 10: v[3]})
	}},
	{form6to4, "2002::/16", func(v [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{0: 0x20, 1: 0x02, 2: v[0], 3: v[1], 4: v[2], 5: v[3], 15: 1})
	}},
	{formTeredo, "2001::/32", func(v [4]byte) netip.Addr {
		// Server 65.54.227.120, then flags and port, then the client inverted.
		return netip.AddrFrom16([16]byte{0: 0x20, 1: 0x01, 4: 65, 5: 54, 6: 227, 7: 120, 8: 0x80, 12: ^v[0], 13: ^v[1], 14: ^v[2], 15: ^v[3]})
	}},
}

func denied(t *testing.T, p Policy, a netip.Addr) *DeniedError {
	t.Helper()
	var de *DeniedError
	if err := p.Check(a); !errors.As(err, &de) {
		t.Errorf("Check(%s) = %v, want refused", a, err)
		return nil
	}
	return de
}

// TestSpecialPurposeIPv4 refuses every IPv4 range in its canonical form and in
// every IPv6 form that embeds it, judged as IPv4 even where the IPv6 range is
// opened by an allow entry.
func TestSpecialPurposeIPv4(t *testing.T) {
	for _, r := range ianaIPv4 {
		t.Run(r.cidr, func(t *testing.T) {
			a := netip.MustParseAddr(r.addr)
			if !netip.MustParsePrefix(r.cidr).Contains(a) {
				t.Fatalf("%s is not in %s", a, r.cidr)
			}
			if de := denied(t, Policy{}, a); de != nil && !strings.Contains(de.Reason, r.reason) {
				t.Errorf("Check(%s): reason %q, want %q", a, de.Reason, r.reason)
			}
			for _, e := range embeddings {
				if e.form == formCompatible && a.As4()[0] == 0 {
					continue // ::0.x.y.z is ::/96's own start, not an IPv4-compatible address
				}
				v6 := e.embed(a.As4())
				if got, form, ok := embeddedIPv4(v6); !ok || got != a || form != e.form {
					t.Errorf("embeddedIPv4(%s) = %s %q %v, want %s %q", v6, got, form, ok, a, e.form)
				}
				p := mustPolicy(t, nonEmpty(e.open), nil)
				de := denied(t, p, v6)
				if de == nil {
					continue
				}
				if !strings.Contains(de.Reason, r.reason) || !strings.Contains(de.Reason, "embedded in IPv6 address as "+e.form) {
					t.Errorf("Check(%s) with allow %q: reason %q, want %q embedded as %s", v6, e.open, de.Reason, r.reason, e.form)
				}
				if de.Range.Addr().Is6() {
					t.Errorf("Check(%s): range to allow %s, want the IPv4 range", v6, de.Range)
				}
			}
		})
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// TestEmbeddedPublicIPv4 shows the other half: an embedded public address
// passes where the IPv6 range is not refused as such or is opened, and the
// 6to4, Teredo and local-use NAT64 ranges are refused by default whatever
// they carry.
func TestEmbeddedPublicIPv4(t *testing.T) {
	public := [4]byte{8, 8, 8, 8}
	for _, e := range embeddings {
		v6 := e.embed(public)
		if e.open == "" {
			if err := (Policy{}).Check(v6); err != nil {
				t.Errorf("Check(%s) = %v, want allowed", v6, err)
			}
			continue
		}
		if de := denied(t, Policy{}, v6); de != nil && de.Range != netip.MustParsePrefix(e.open) {
			t.Errorf("Check(%s): range %s, want %s", v6, de.Range, e.open)
		}
		if err := mustPolicy(t, []string{e.open}, nil).Check(v6); err != nil {
			t.Errorf("Check(%s) with %s allowed = %v, want allowed", v6, e.open, err)
		}
	}
}

func TestSpecialPurposeIPv6(t *testing.T) {
	for _, r := range ianaIPv6 {
		t.Run(r.cidr, func(t *testing.T) {
			a := netip.MustParseAddr(r.addr)
			if !netip.MustParsePrefix(r.cidr).Contains(a) {
				t.Fatalf("%s is not in %s", a, r.cidr)
			}
			if de := denied(t, Policy{}, a); de != nil && !strings.Contains(de.Reason, r.reason) {
				t.Errorf("Check(%s): reason %q, want %q", a, de.Reason, r.reason)
			}
			if a.Is6() && (r.cidr == "fe80::/10" || r.cidr == "ff00::/8") {
				if denied(t, Policy{}, a.WithZone("eth0")) == nil {
					t.Errorf("%s%%eth0 allowed", a)
				}
			}
		})
	}
}

// TestEveryBuiltinRangeIsTested keeps the tables above complete: each built-in
// range has an address in them.
func TestEveryBuiltinRangeIsTested(t *testing.T) {
	for _, b := range builtin {
		found := false
		for _, r := range append(append([]struct{ cidr, addr, reason string }{}, ianaIPv4...), ianaIPv6...) {
			if netip.MustParsePrefix(r.cidr).Overlaps(b.prefix) && b.prefix.Contains(netip.MustParseAddr(r.addr)) {
				found = true
			}
		}
		if !found {
			t.Errorf("built-in range %s (%s) has no case in the IANA tables", b.prefix, b.reason)
		}
	}
}

// TestIssueExamples are the addresses the hostile review got through.
func TestIssueExamples(t *testing.T) {
	for addr, reason := range map[string]string{
		"2002:a00:1::":         "6to4",
		"2002:a9fe:a9fe::":     "6to4",
		"2001:0:a00:1::":       "Teredo",
		"64:ff9b:1:a00:1::":    "local-use NAT64",
		"168.63.129.16":        "Azure",
		"::ffff:168.63.129.16": "Azure",
		"64:ff9b::a9fe:a9fe":   "link-local",
	} {
		if de := denied(t, Policy{}, netip.MustParseAddr(addr)); de != nil && !strings.Contains(de.Reason, reason) {
			t.Errorf("Check(%s): reason %q, want %q", addr, de.Reason, reason)
		}
	}
	// With 6to4 opened, the metadata address inside it is still refused.
	p := mustPolicy(t, []string{"2002::/16"}, nil)
	if de := denied(t, p, netip.MustParseAddr("2002:a9fe:a9fe::")); de != nil && !strings.Contains(de.Reason, "link-local address (cloud metadata lives here) (embedded in IPv6 address as 6to4") {
		t.Errorf("reason %q", de.Reason)
	}
}
