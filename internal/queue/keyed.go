package queue

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Keyed lanes: ordering per key. A subscription ordered per key gets a
// fixed number of ordered lanes instead of one, and each delivery goes to
// the lane its key hashes to (KeyLane). A keyed lane is an ordered lane like
// any other (ordered.go): its own subject, hl.ord.<ns>.<sub>.<lane>, read by
// its own consumer with MaxAckPending=1, so one delivery per lane is in
// flight across all replicas, a retry holds the lane, and its holds and
// attempts are stored per lane on HL_LANE_HOLDS.
//
// What that gives: deliveries with the same key keep publish order; keys on
// different lanes go in parallel (up to the endpoint's maxInFlight, which the
// engine applies to ordered sends as to unordered ones). A key whose delivery
// fails holds only its own successors: they are parked until it is resolved,
// while its lane goes on with other keys (keypark.go). A delivery without a
// key hash (queued before keys were kept) holds its lane instead, as a retry
// on any ordered lane does. Memory is bounded by the lane count, not the key
// count: the keys waiting behind a lane's head are messages on disk.
//
// Fixed lanes rather than one subject per key keep the consumer count (one
// per lane) and the per-process state bounded however many keys there are.
// The lane count is the subscription's orderingLanes; keys are re-hashed
// when it changes, so the deliveries already queued on the old lanes may
// arrive after later ones of their key that went to another lane. Old lanes
// keep being consumed until the subscription is deleted (RemoveOrdered).

// MaxKeyLanes is the largest lane count of a subscription ordered per key
// (the CRD's bound on spec.delivery.orderingLanes).
const MaxKeyLanes = 256

// KeyLane is the lane, from 1 to lanes, that deliveries with key go to. It
// is FNV-1a of the key, and must never change: a delivery's lane is stored
// with it, but a changed hash would send a key's next deliveries to another
// lane than the ones already queued.
func KeyLane(key string, lanes int) int {
	if lanes <= 1 {
		return 1
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32()%uint32(lanes)) + 1 //nolint:gosec // G115: lanes is between 2 and MaxKeyLanes
}

// EnsureKeyed creates the keyed lanes 1 to lanes of a subscription ordered
// per key, and starts consuming them if deliveries are open. Like
// EnsureOrdered, deliveries stored before their lane exists wait for it.
func (q *Queue) EnsureKeyed(ctx context.Context, ns, sub, endpoint string, lanes int) error {
	if lanes < 1 || lanes > MaxKeyLanes {
		return fmt.Errorf("ordering lanes of %s/%s: %d is not between 1 and %d", ns, sub, lanes, MaxKeyLanes)
	}
	for lane := 1; lane <= lanes; lane++ {
		if err := q.ensureLane(ctx, ns, sub, endpoint, lane); err != nil {
			return err
		}
	}
	return nil
}

// ensureLane creates one ordered lane: lane 0 is a subscription's single
// lane, 1 and up its keyed lanes. endpoint, the subscription's, says which
// replica pulls it (laneowner.go).
func (q *Queue) ensureLane(ctx context.Context, ns, sub, endpoint string, lane int) error {
	name := laneConsumerName(ns, sub, lane)
	what := "ordered deliveries of subscription " + ns + "/" + sub
	if lane > 0 {
		what = fmt.Sprintf("ordered deliveries of lane %d of subscription %s/%s (ordering per key)", lane, ns, sub)
	}
	_, err := q.deliveries.CreateOrUpdateConsumer(ctx, q.laneConfig(name, what, laneSubjectOf(ns, sub, lane), endpoint))
	if err != nil {
		return fmt.Errorf("creating ordered lane %d of %s/%s: %w", lane, ns, sub, err)
	}
	q.lanes.add(name, partitionOf(ns, endpoint))
	return nil
}

// laneConsumers lists the consumers of a subscription's ordered lanes, the
// single one and the keyed ones, whatever lane count created them.
func (q *Queue) laneConsumers(ctx context.Context, ns, sub string) ([]string, error) {
	var names []string
	infos := q.deliveries.ListConsumers(ctx)
	for c := range infos.Info() {
		if !strings.HasPrefix(c.Name, orderedPrefix) {
			continue
		}
		cns, csub, _, err := splitOrdered(c.Config.FilterSubject)
		if err == nil && cns == ns && csub == sub {
			names = append(names, c.Name)
		}
	}
	if err := infos.Err(); err != nil {
		return nil, fmt.Errorf("listing the ordered lanes of %s/%s: %w", ns, sub, err)
	}
	return names, nil
}

// laneSubjectOf is the subject of one ordered lane: lane 0 is the
// subscription's single lane, hl.ord.<ns>.<sub>; keyed lanes have the lane
// number as one more token.
func laneSubjectOf(ns, sub string, lane int) string {
	if lane == 0 {
		return orderedSubject(ns, sub)
	}
	return orderedSubject(ns, sub) + "." + strconv.Itoa(lane)
}

// laneConsumerName names the consumer of one ordered lane. Lane 0 keeps the
// name ordered lanes had before keyed ones existed; a keyed lane adds
// "__k<lane>", which no escaped token holds.
func laneConsumerName(ns, sub string, lane int) string {
	name := orderedConsumerName(ns, sub)
	if lane == 0 {
		return name
	}
	return name + "__k" + strconv.Itoa(lane)
}

// isKeyedLane tells from a lane consumer's name (laneConsumerName) whether
// it is a keyed lane.
func isKeyedLane(name string) bool { return strings.Contains(name, "__k") }

// splitOrdered parses an ordered lane's subject back into its namespace,
// subscription and lane (0 for the single lane). The parking subject of a
// blocked key (keyParkSubject) parses as its lane's.
func splitOrdered(subject string) (ns, sub string, lane int, err error) {
	rest, ok := strings.CutPrefix(subject, subjOrdered+".")
	if !ok {
		return "", "", 0, fmt.Errorf("subject %q is not under %s", subject, subjOrdered)
	}
	if strings.Count(rest, ".") == 3 {
		i := strings.LastIndexByte(rest, '.')
		if _, perr := strconv.ParseUint(rest[i+1:], 16, 64); perr != nil || len(rest)-i-1 != 16 {
			return "", "", 0, fmt.Errorf("subject %q: %q is not a key's hash", subject, rest[i+1:])
		}
		rest, subject = rest[:i], subject[:len(subject)-len(rest)+i]
	}
	if i := strings.LastIndexByte(rest, '.'); i >= 0 && strings.Count(rest, ".") == 2 {
		n, perr := strconv.Atoi(rest[i+1:])
		if perr != nil || n < 1 {
			return "", "", 0, fmt.Errorf("subject %q: %q is not a lane number", subject, rest[i+1:])
		}
		lane, subject = n, subject[:len(subject)-len(rest)+i]
	}
	ns, sub, err = splitPair(subject, subjOrdered)
	return ns, sub, lane, err
}
