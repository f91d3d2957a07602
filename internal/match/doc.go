// Package match decides which subscriptions an event goes to: by event type,
// with the patterns of a Subscription's eventTypes, and by content, with its
// optional CEL filter.
//
// # Event types and patterns
//
// An event type is dot-separated segments of letters, digits, '_' and '-',
// such as "invoice.paid". A pattern has the same shape, except that a segment
// may be '*':
//
//   - '*' anywhere but last matches exactly one segment: "*.paid" matches
//     "invoice.paid" but neither "paid" nor "eu.invoice.paid".
//   - '*' as the last segment matches one or more segments: "invoice.*"
//     matches "invoice.paid" and "invoice.paid.late", but not "invoice"
//     itself; a lone "*" matches every event type.
//   - Every other segment matches only itself, case-sensitively.
//
// A trailing '*' covers deeper types so that adding "invoice.paid.late" later
// does not silently drop it from a subscription to "invoice.*", and it does
// not match the bare prefix because "invoice" is a different event, not a
// member of the family.
//
// A Matcher is compiled once per Subscription generation and then asked about
// every event in the namespace, so Match allocates nothing.
//
// # Filters
//
// A filter is a CEL expression over one event that must evaluate to a bool.
// It sees these variables:
//
//	type  string     the event type, e.g. "invoice.paid"
//	id    string     the event ID
//	time  timestamp  when the event happened
//	data  dyn        the event's data, decoded from JSON
//
// There is no namespace variable: a Subscription only ever sees events of its
// own namespace, and "namespace" is a reserved word in CEL.
//
// Only CEL's standard library is available, because every one of its
// functions has a cost estimate; numbers in data are doubles, as JSON
// decodes them, and compare with int literals (data.amount > 100 works).
// Reading a field the event does not have is an evaluation error; use
// has(data.field) to test for it.
//
// Cost has one budget, FilterCostLimit. At compile time a filter whose
// estimated worst-case cost over any event up to MaxEventSize exceeds it is
// rejected: in practice, one that nests a loop over data inside another, or
// passes over data more than a few times. That estimate bounds every
// evaluation over an event of up to MaxEventSize, so evaluation needs no cost
// tracker of its own; an event larger than that fails evaluation with
// ErrEventTooLarge, and EvalContext also stops when its context is done.
// A Filter is immutable and safe for concurrent use.
package match
