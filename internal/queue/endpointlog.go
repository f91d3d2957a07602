package queue

import "strings"

// endpointLogUID marks the attempt log of an endpoint's test sends: it is kept under a
// SubscriptionID whose UID is this prefix and the endpoint's UID, which no
// subscription's UID can equal.
const endpointLogUID = "endpoint-"

// EndpointLog is the attempt log of endpoint ns/name (its UID uid): where test sends
// are recorded, with Attempt 0.
func EndpointLog(ns, name, uid string) SubscriptionID {
	return SubscriptionID{Namespace: ns, Name: name, UID: endpointLogUID + uid}
}

// EndpointLogOf reports whether id is an endpoint's log (EndpointLog), and that
// endpoint's UID.
func EndpointLogOf(id SubscriptionID) (endpointUID string, ok bool) {
	return strings.CutPrefix(id.UID, endpointLogUID)
}
