// Package ssrf keeps webhook deliveries from reaching addresses inside the
// cluster or on the node: loopback, link-local (cloud metadata services),
// private and carrier-grade NAT ranges, multicast, and whatever extra ranges
// the operator names (service and pod CIDRs).
//
// The check runs at dial time on the address actually being connected to, from
// net.Dialer.Control, not on the URL's host name. A name that resolves to a
// public address when an endpoint is validated and to 10.0.0.1 a second later
// (DNS rebinding) is still refused, and so is every address of a name that
// resolves to several.
package ssrf
