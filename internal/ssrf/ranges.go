package ssrf

import "net/netip"

// Forms in which an IPv6 address carries an IPv4 address that a connection
// to it reaches, as named in refusals.
const (
	formMapped     = "IPv4-mapped"
	formCompatible = "IPv4-compatible"
	formNAT64      = "NAT64 64:ff9b::/96"
	formLocalNAT64 = "local-use NAT64 64:ff9b:1::/48"
	form6to4       = "6to4 2002::/16"
	formTeredo     = "Teredo 2001::/32"
)

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	localNAT64 = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	teredo     = netip.MustParsePrefix("2001::/32")
	v4compat   = netip.MustParsePrefix("::/96")
	unspecV6   = netip.IPv6Unspecified()
	loopbackV6 = netip.IPv6Loopback()
)

// embeddedIPv4 extracts the IPv4 address that an IPv6 address carries when
// connecting to it can reach that IPv4 host, and names the form:
// IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 with the
// well-known prefix (64:ff9b::a.b.c.d, RFC 6052) or the local-use one
// (64:ff9b:1::/48, RFC 8215, the /48 layout of RFC 6052 that skips bits
// 64-71), 6to4 (2002:aabb:ccdd::, RFC 3056) and Teredo (the client's address,
// inverted, in the last 32 bits, RFC 4380).
func embeddedIPv4(ip netip.Addr) (netip.Addr, string, bool) {
	if ip.Is4() {
		return ip, "", false
	}
	if ip.Is4In6() {
		return ip.Unmap(), formMapped, true
	}
	b := ip.As16()
	switch {
	case ip == unspecV6 || ip == loopbackV6:
		return ip, "", false
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), formNAT64, true
	case v4compat.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), formCompatible, true
	case localNAT64.Contains(ip):
		return netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}), formLocalNAT64, true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), form6to4, true
	case teredo.Contains(ip):
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), formTeredo, true
	}
	return ip, "", false
}

type builtinRange struct {
	prefix netip.Prefix
	reason string
}

// builtin lists what no webhook receiver should be: every entry of the IANA
// IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and its
// updates), multicast, and the cloud host services that sit on public
// addresses. Even the registries' "globally reachable" entries (anycast
// relays, AS112, AMT) are refused: none of them is a webhook receiver, and an
// operator who needs one allows it with --allow-cidr. More specific entries
// come first, so a refusal gives the most precise reason.
//
// The IPv4-mapped (::ffff:0:0/96) and well-known NAT64 (64:ff9b::/96) ranges
// are not refused as such: their embedded IPv4 address is judged instead.
var builtin = []builtinRange{
	// IPv4 special-purpose registry.
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified address (\"this network\", RFC 791)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private address (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT address (shared address space, RFC 6598)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local address (cloud metadata lives here)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private address (RFC 1918)"},
	{netip.MustParsePrefix("192.0.0.0/29"), "IETF protocol assignment (DS-Lite, RFC 7335)"},
	{netip.MustParsePrefix("192.0.0.170/31"), "IETF protocol assignment (NAT64/DNS64 discovery, RFC 7050)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment (RFC 6890; Oracle Cloud metadata lives here)"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation address (TEST-NET-1, RFC 5737)"},
	{netip.MustParsePrefix("192.31.196.0/24"), "AS112 anycast address (RFC 7535)"},
	{netip.MustParsePrefix("192.52.193.0/24"), "AMT relay anycast address (RFC 7450)"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast address (deprecated, RFC 7526)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private address (RFC 1918)"},
	{netip.MustParsePrefix("192.175.48.0/24"), "AS112 direct delegation address (RFC 7534)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking address (RFC 2544)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation address (TEST-NET-2, RFC 5737)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation address (TEST-NET-3, RFC 5737)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "limited broadcast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved address (RFC 1112)"},
	// Not in the registry, never a receiver.
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast address"},
	{netip.MustParsePrefix("168.63.129.16/32"), "Azure host services address (DHCP, DNS, health probes, the VM agent)"},

	// IPv6 special-purpose registry.
	{netip.MustParsePrefix("::/128"), "unspecified address"},
	{netip.MustParsePrefix("::1/128"), "loopback address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 address (RFC 8215)"},
	{netip.MustParsePrefix("100::/64"), "discard-only address (RFC 6666)"},
	{netip.MustParsePrefix("100:0:0:1::/64"), "dummy IPv6 prefix (RFC 9780)"},
	{netip.MustParsePrefix("2001::/32"), "Teredo address (RFC 4380)"},
	{netip.MustParsePrefix("2001:1::1/128"), "PCP anycast address (RFC 7723)"},
	{netip.MustParsePrefix("2001:1::2/128"), "TURN anycast address (RFC 8155)"},
	{netip.MustParsePrefix("2001:1::3/128"), "DNS-SD service registration anycast address (RFC 9665)"},
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking address (RFC 5180)"},
	{netip.MustParsePrefix("2001:3::/32"), "AMT address (RFC 7450)"},
	{netip.MustParsePrefix("2001:4:112::/48"), "AS112-v6 address (RFC 7535)"},
	{netip.MustParsePrefix("2001:10::/28"), "ORCHID address (deprecated, RFC 4843)"},
	{netip.MustParsePrefix("2001:20::/28"), "ORCHIDv2 address (RFC 7343)"},
	{netip.MustParsePrefix("2001:30::/28"), "drone remote ID address (RFC 9374)"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignment (RFC 2928)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation address (RFC 3849)"},
	{netip.MustParsePrefix("2002::/16"), "6to4 address (RFC 3056)"},
	{netip.MustParsePrefix("2620:4f:8000::/48"), "AS112 direct delegation address (RFC 7534)"},
	{netip.MustParsePrefix("3fff::/20"), "documentation address (RFC 9637)"},
	{netip.MustParsePrefix("5f00::/16"), "segment routing (SRv6) SID (RFC 9602)"},
	{netip.MustParsePrefix("fc00::/7"), "private address (unique local, RFC 4193)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local address"},
	// Not in the registry, never a receiver.
	{netip.MustParsePrefix("fec0::/10"), "site-local address (deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast address"},
}
