package queue

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Stream names. They are part of the on-disk and on-cluster layout: renaming
// one orphans the data of every existing installation.
const (
	streamEvents     = "HL_EVENTS"
	streamDeliveries = "HL_DELIVERIES"
	streamDead       = "HL_DEAD"
	streamAttempts   = "HL_ATTEMPTS"
	streamHolds      = "HL_LANE_HOLDS"

	consumerFanout     = "fanout"
	consumerDeliveries = "deliveries"
	orderedPrefix      = "ord__"
	parkPrefix         = "park__"
)

// Subject roots, one per kind of message. Schedules live in the deliveries
// stream because a schedule may only target a subject of its own stream;
// parked deliveries do because moving them back is then a move within one
// stream, and no consumer filter of the stream overlaps another's.
const (
	subjEvents    = "hl.evt"
	subjDeliver   = "hl.dlv"
	subjOrdered   = "hl.ord"
	subjSchedules = "hl.sch"
	subjParked    = "hl.park"
	subjDead      = "hl.dead"
	subjAttempts  = "hl.att"
	subjHolds     = "hl.hold"
)

// token turns a Kubernetes name into one subject token. Object names may hold
// dots, which would split a token, so every byte outside [A-Za-z0-9-] becomes
// "_" and two hex digits. The mapping is injective and, for the names
// Kubernetes allows, keeps subjects readable ("my.hook" -> "my_2ehook").
func token(name string) string {
	clean := true
	for i := 0; i < len(name); i++ {
		if !plainByte(name[i]) {
			clean = false
			break
		}
	}
	if clean && name != "" {
		return name
	}
	var b strings.Builder
	b.Grow(len(name) + 8)
	if name == "" {
		// An empty token is not a valid subject; "_" alone never comes out of
		// an escape, so it cannot collide.
		return "_"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if plainByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteString(hex.EncodeToString([]byte{c}))
	}
	return b.String()
}

func plainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// untoken reverses token.
func untoken(t string) (string, error) {
	if t == "_" {
		return "", nil
	}
	if !strings.Contains(t, "_") {
		return t, nil
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '_' {
			b.WriteByte(t[i])
			continue
		}
		if i+2 >= len(t) {
			return "", fmt.Errorf("truncated escape in subject token %q", t)
		}
		v, err := strconv.ParseUint(t[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in subject token %q: %w", t, err)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

func eventSubject(ns string) string { return subjEvents + "." + token(ns) }

// deliverySubject is partitioned by endpoint (partition.go).
func deliverySubject(ns, endpoint string) string {
	return subjDeliver + "." + strconv.Itoa(partitionOf(ns, endpoint)) + "." + token(ns) + "." + token(endpoint)
}

// parkSubject is one per endpoint and subscription, shared by all their
// parked deliveries: the server keeps per subject, not per message, so a
// parked backlog costs it disk and no memory per delivery. The subscription
// in the subject lets a backlog follow a subscription pointed at another
// endpoint, and go with a deleted one, without reading it.
func parkSubject(ns, endpoint, sub string) string {
	return subjParked + "." + token(ns) + "." + token(endpoint) + "." + token(sub)
}

// endpointParkSubjects matches every parking subject of an endpoint.
func endpointParkSubjects(ns, endpoint string) string {
	return subjParked + "." + token(ns) + "." + token(endpoint) + ".>"
}

func orderedSubject(ns, sub string) string {
	return subjOrdered + "." + token(ns) + "." + token(sub)
}

// SubscriptionID names one Subscription object. Dead letters and the
// attempt log are kept per object, under its UID, so that a subscription
// deleted and created again under the same name starts clean.
type SubscriptionID struct{ Namespace, Name, UID string }

func (id SubscriptionID) String() string { return id.Namespace + "/" + id.Name }

func (id SubscriptionID) tokens() string {
	return token(id.Namespace) + "." + token(id.Name) + "." + token(id.UID)
}

func deadSubject(id SubscriptionID) string { return subjDead + "." + id.tokens() }

func attemptSubject(id SubscriptionID) string { return subjAttempts + "." + id.tokens() }

// deadSubjectOf is the dead-letter subject of a delivery's subscription.
func deadSubjectOf(d *Delivery) string {
	return deadSubject(SubscriptionID{d.Event.Namespace, d.Subscription, d.SubscriptionUID})
}

// splitSubscription parses "<root>.<ns>.<name>.<uid>" back into its
// SubscriptionID.
func splitSubscription(subject, root string) (SubscriptionID, error) {
	t, err := splitTokens(subject, root, 3)
	if err != nil {
		return SubscriptionID{}, err
	}
	return SubscriptionID{t[0], t[1], t[2]}, nil
}

// splitTokens parses "<root>.<a>.<b>..." with n tokens after root back into
// the names they stand for.
func splitTokens(subject, root string, n int) ([]string, error) {
	rest, ok := strings.CutPrefix(subject, root+".")
	if !ok {
		return nil, fmt.Errorf("subject %q is not under %s", subject, root)
	}
	parts := strings.Split(rest, ".")
	if len(parts) != n {
		return nil, fmt.Errorf("subject %q does not have %d tokens after %s", subject, n, root)
	}
	for i, p := range parts {
		v, err := untoken(p)
		if err != nil {
			return nil, err
		}
		parts[i] = v
	}
	return parts, nil
}

// scheduleSubject is unique per message id because the server keeps one
// schedule per subject: two retries sharing a subject would replace each
// other. Deriving it from the id (instead of a random suffix) makes a
// repeated publish after a crash replace its own schedule rather than add a
// second one.
func scheduleSubject(ns, endpoint, msgID string) string {
	sum := sha256.Sum256([]byte(msgID))
	return subjSchedules + "." + token(ns) + "." + token(endpoint) + "." + hex.EncodeToString(sum[:16])
}

// holdSubject keeps the hold count of the delivery in flight on the
// ordered lane read by consumer (a consumer name is a valid token).
func holdSubject(consumer string) string { return subjHolds + "." + consumer }

// orderedConsumerName names the consumer of a subscription's ordered lane.
func orderedConsumerName(ns, sub string) string { return pairConsumerName(orderedPrefix, ns, sub) }

// parkConsumerName names the consumer that moves an endpoint's parked
// deliveries back. All replicas use the same one, so each parked delivery is
// handed to one of them.
func parkConsumerName(ns, endpoint string) string {
	return pairConsumerName(parkPrefix, ns, endpoint)
}

// pairConsumerName uses "__" between the tokens: an escaped token never
// holds two underscores in a row, so names cannot collide. Names past the
// server's length limit (255) fall back to a hash; the consumer's filter
// subject, not its name, is what identifies what it reads.
func pairConsumerName(prefix, a, b string) string {
	name := prefix + token(a) + "__" + token(b)
	if len(name) <= 200 {
		return name
	}
	sum := sha256.Sum256([]byte(a + "/" + b))
	return prefix + hex.EncodeToString(sum[:16])
}

// splitPair parses "<root>.<a>.<b>" back into its two names.
func splitPair(subject, root string) (string, string, error) {
	rest, ok := strings.CutPrefix(subject, root+".")
	if !ok {
		return "", "", fmt.Errorf("subject %q is not under %s", subject, root)
	}
	at, bt, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(bt, ".") {
		return "", "", fmt.Errorf("subject %q does not have two tokens after %s", subject, root)
	}
	a, err := untoken(at)
	if err != nil {
		return "", "", err
	}
	b, err := untoken(bt)
	if err != nil {
		return "", "", err
	}
	return a, b, nil
}

func eventMsgID(ns, id string) string { return ns + "/" + id }

// deliveryMsgID is the de-duplication id of one delivery message: stable for
// the same event, subscription and attempt, so a fan-out or retry repeated
// after a crash is dropped by the server. Holds and replays get their own
// part because they legitimately publish the same attempt again.
//
// It is a hash (128 bits of SHA-256, 22 characters) rather than the names
// themselves, because the server keeps every id of the deliveries stream's
// window in memory, one map entry per delivery published: the names took 70
// to 120 bytes of it, the hash 24. Ids of the form before it
// ("namespace/event/uid/attempt") were not recognised by it: a fan-out that
// an upgraded dispatcher repeats for an older one stores its deliveries again
// once, which at-least-once allows (docs/upgrading.md).
func deliveryMsgID(d *Delivery) string {
	var in [256]byte
	b := append(in[:0], d.Event.Namespace...)
	b = append(append(b, 0), d.Event.ID...)
	b = append(append(b, 0), d.SubscriptionUID...)
	b = append(b, 0)
	b = strconv.AppendUint(b, d.Replay, 10)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(d.Attempt), 10)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(d.Holds), 10)
	sum := sha256.Sum256(b)
	var out [22]byte
	base64.RawURLEncoding.Encode(out[:], sum[:16])
	return string(out[:])
}

// laneSubject is where a delivery waits for its next attempt.
func laneSubject(d *Delivery) string {
	if d.Ordered {
		return laneSubjectOf(d.Event.Namespace, d.Subscription, d.Lane)
	}
	return deliverySubject(d.Event.Namespace, d.Endpoint)
}
