package ssrf

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
)

// AllowFlag names the dispatcher flag that widens the allow-list, so a refusal
// tells the operator exactly what to change.
const AllowFlag = "--allow-cidr"

// Policy decides which resolved addresses a delivery may connect to. The zero
// value refuses every built-in range and allows everything else.
//
// Allow overrides the built-in ranges. Between Allow and ExtraDeny the longer
// (more specific) prefix wins, and a tie denies, so "allow 10.0.0.0/8 but never
// the service CIDR 10.96.0.0/12" reads the way it is meant.
type Policy struct {
	Allow     []netip.Prefix
	ExtraDeny []netip.Prefix
}

// ParsePolicy builds a Policy from CIDR strings as they come from flags or a
// config file. A bare address is taken as a single-host prefix.
func ParsePolicy(allow, extraDeny []string) (Policy, error) {
	var p Policy
	var err error
	if p.Allow, err = parsePrefixes(allow); err != nil {
		return Policy{}, fmt.Errorf("parsing allowed CIDRs: %w", err)
	}
	if p.ExtraDeny, err = parsePrefixes(extraDeny); err != nil {
		return Policy{}, fmt.Errorf("parsing denied CIDRs: %w", err)
	}
	return p, nil
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		var pfx netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if pfx, err = netip.ParsePrefix(s); err != nil {
				return nil, err
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, canonical(pfx))
	}
	return out, nil
}

// canonical stores IPv4-mapped prefixes as plain IPv4 so that one allow entry
// covers both spellings of the same address.
func canonical(p netip.Prefix) netip.Prefix {
	a := p.Addr().WithZone("")
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return netip.PrefixFrom(a, p.Bits()).Masked()
}

// String renders the policy for logs and for comparing policies by value.
func (p Policy) String() string {
	var b strings.Builder
	b.WriteString("allow=")
	for i, x := range p.Allow {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x.String())
	}
	b.WriteString(" deny=")
	for i, x := range p.ExtraDeny {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x.String())
	}
	return b.String()
}

// DeniedError is returned, wrapped in the dialer's *net.OpError, when an
// address is refused. Callers find it with errors.As.
type DeniedError struct {
	Addr   netip.Addr
	Reason string
	// Range is the matching range: the one to allow for a built-in refusal,
	// the configured one for an ExtraDeny refusal.
	Range   netip.Prefix
	Builtin bool
}

func (e *DeniedError) Error() string {
	if e.Builtin {
		return fmt.Sprintf("ssrf: refusing to connect to %s: %s (allow it with %s %s)", e.Addr, e.Reason, AllowFlag, e.Range)
	}
	return fmt.Sprintf("ssrf: refusing to connect to %s: %s", e.Addr, e.Reason)
}

// ErrUnparsableAddress is returned when Control receives an address that is
// not a literal IP and port; refusing is the only safe answer.
var ErrUnparsableAddress = errors.New("ssrf: refusing to connect: address is not an IP and port")

// Control is a net.Dialer.Control function. The dialer calls it for every
// address it tries, after name resolution and before connect(2).
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrUnparsableAddress, address)
	}
	return p.Check(ap.Addr())
}

// Check reports whether a connection to ip is allowed, returning a
// *DeniedError when it is not. An IPv6 address that carries an IPv4 address
// the connection can reach (mapped, compatible, NAT64, 6to4, Teredo) is judged
// twice: as itself, and as that IPv4 address. Both must pass, so opening
// 2002::/16 with an allow entry does not open 6to4's path to 10.0.0.0/8.
func (p Policy) Check(ip netip.Addr) error {
	// Prefix.Contains never matches an address with a zone, so a zoned
	// link-local address would slip through every range without this.
	shown := ip
	ip = ip.WithZone("")
	if err := p.judge(ip, shown, ""); err != nil {
		return err
	}
	if v4, form, ok := embeddedIPv4(ip); ok {
		return p.judge(v4, shown, form)
	}
	return nil
}

// judge applies the policy to one address. form names how the address was
// embedded in shown, or is empty.
func (p Policy) judge(a, shown netip.Addr, form string) error {
	allowBits := longestMatch(p.Allow, a)
	denyBits := longestMatch(p.ExtraDeny, a)
	if denyBits >= 0 && denyBits >= allowBits {
		r := matching(p.ExtraDeny, a, denyBits)
		return &DeniedError{Addr: shown, Reason: "address in denied range " + r.String(), Range: r}
	}
	if allowBits >= 0 {
		return nil
	}
	for _, b := range builtin {
		if b.prefix.Contains(a) {
			reason := b.reason
			if form != "" {
				reason += " (embedded in IPv6 address as " + form + ")"
			}
			return &DeniedError{Addr: shown, Reason: reason, Range: b.prefix, Builtin: true}
		}
	}
	return nil
}

// longestMatch returns the length of the longest prefix in ps containing a,
// or -1.
func longestMatch(ps []netip.Prefix, a netip.Addr) int {
	best := -1
	for _, p := range ps {
		if p.Contains(a) && p.Bits() > best {
			best = p.Bits()
		}
	}
	return best
}

func matching(ps []netip.Prefix, a netip.Addr, bits int) netip.Prefix {
	for _, p := range ps {
		if p.Bits() == bits && p.Contains(a) {
			return p
		}
	}
	return netip.Prefix{}
}
