// Package rotation decides when an endpoint's generated signing key is
// rotated and when the key it replaced stops being used, as pure functions of
// the stored keys, the policy, any manual request and the time, in the manner
// of cert-manager's renewal-time calculation.
//
// The controller reads the key Secret, calls Plan, calls Apply when the
// decision is not ActionNone, writes the Secret, records NextRotation and
// PreviousExpiry in status, and requeues for Decision.Next. Nothing here
// reads a clock, so every schedule is table-tested with fixed times.
//
// A rotation keeps the old key as the previous key for Policy.Overlap, so
// deliveries carry both signatures and receivers can switch without losing
// one. A rotation requested as immediate (a leaked key) keeps nothing: the
// leaked key must stop being accepted at once. However long the controller
// was down, an overdue key is rotated once, and the new key's schedule starts
// from that moment.
package rotation
