package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Ownership of endpoints. Unordered deliveries are partitioned by endpoint:
// each endpoint's deliveries are stored on hl.dlv.<p>.<ns>.<endpoint>, where
// p is a stable hash of the namespace and endpoint name modulo Partitions,
// and each partition is read by one durable consumer (dlv__<p>) whose
// priority group pins one client at a time. Every replica pulls from every
// partition; the server hands messages only to the pinned puller, so exactly
// one replica owns a partition, and with it the endpoints hashed to it. Its
// in-memory limits (rate, in flight), circuit breaker and disable clock are
// then the only ones counting that endpoint.
//
// When the owner stops pulling (it died, or lost its connection) the server
// unpins it after PinnedTTL and pins the next replica that pulls; deliveries
// the old owner held come back to the new one when their lease (AckWait)
// ends. A replica shutting down lets its sends finish and then unpins itself
// (Deliveries.Release), so ownership moves at once and without overlap.
//
// This is JetStream's own mechanism (consumer priority groups, pinned
// client policy); hookline holds no election of its own.

// Partitions is how many partitions the unordered deliveries are split
// into: the unit of ownership. It is part of the stored layout (subjects and
// consumer names), so changing it strands the deliveries of the old layout.
const Partitions = 16

const (
	partitionPrefix = "dlv__"
	// partitionGroup is the priority group every replica pulls with.
	partitionGroup = "owner"
	// PinnedTTL is how long a partition stays pinned to a replica that has
	// stopped pulling. Live replicas re-pull every pullExpiry, far inside it.
	PinnedTTL = 10 * time.Second
	// pinHeader carries the pin id on messages of a pinned consumer.
	pinHeader = "Nats-Pin-Id"
)

// legacyDeliveryFilter matches the delivery subjects written before
// partitioning (hl.dlv.<ns>.<endpoint>), and no partitioned subject (which
// has one token more).
const legacyDeliveryFilter = subjDeliver + ".*.*"

// partitionOf is the partition of an endpoint: FNV-1a of "<ns>/<endpoint>".
// It must never change (see Partitions).
func partitionOf(ns, endpoint string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(ns))
	_, _ = h.Write([]byte{'/'})
	_, _ = h.Write([]byte(endpoint))
	return int(h.Sum32() % Partitions)
}

func partitionConsumerName(p int) string { return partitionPrefix + strconv.Itoa(p) }

func partitionFilter(p int) string { return subjDeliver + "." + strconv.Itoa(p) + ".*.*" }

// splitDeliverySubject parses a delivery subject, partitioned
// (hl.dlv.<p>.<ns>.<ep>) or legacy (hl.dlv.<ns>.<ep>), into its namespace and
// endpoint.
func splitDeliverySubject(subject string) (ns, endpoint string, err error) {
	if single, _, ok := splitGroupSubject(subject); ok {
		subject = single
	}
	rest, ok := strings.CutPrefix(subject, subjDeliver+".")
	if !ok {
		return "", "", fmt.Errorf("subject %q is not under %s", subject, subjDeliver)
	}
	if strings.Count(rest, ".") == 2 {
		p, tail, _ := strings.Cut(rest, ".")
		if _, err := strconv.Atoi(p); err != nil {
			return "", "", fmt.Errorf("subject %q: partition %q is not a number", subject, p)
		}
		return splitPair(subjDeliver+"."+tail, subjDeliver)
	}
	return splitPair(subject, subjDeliver)
}

// partitionOfSubject is the partition of a partitioned delivery subject, or
// of a group's, or -1 for a legacy one.
func partitionOfSubject(subject string) int {
	if single, _, ok := splitGroupSubject(subject); ok {
		subject = single
	}
	rest, ok := strings.CutPrefix(subject, subjDeliver+".")
	if !ok || strings.Count(rest, ".") != 2 {
		return -1
	}
	p, _, _ := strings.Cut(rest, ".")
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n >= Partitions {
		return -1
	}
	return n
}

// partitionConsumer creates or updates the consumer of partition p. Its
// filter takes in groups (group.go) once every live replica reads them
// (wide), and is never narrowed again by this release: groups may wait.
func (q *Queue) partitionConsumer(ctx context.Context, p int, wide bool) (jetstream.Consumer, error) {
	if !wide {
		if c, err := q.deliveries.Consumer(ctx, partitionConsumerName(p)); err == nil {
			wide = len(c.CachedInfo().Config.FilterSubjects) > 1
		}
	}
	filter, filters := partitionFilter(p), []string(nil)
	if wide {
		filter, filters = "", []string{partitionFilter(p), partitionFilter(p) + ".*"}
	}
	c, err := q.deliveries.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:        partitionConsumerName(p),
		Description:    fmt.Sprintf("hookline: unordered deliveries of the endpoints in partition %d, owned by one replica at a time", p),
		FilterSubject:  filter,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        q.cfg.AckWait,
		MaxAckPending:  q.cfg.MaxAckPending,
		MaxDeliver:     -1,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{partitionGroup},
		PinnedTTL:      PinnedTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the consumer of delivery partition %d: %w", p, err)
	}
	return c, nil
}

// legacyConsumer creates or narrows the consumer of the deliveries stored
// before partitioning. Its filter was hl.dlv.>, which would overlap the
// partitions' filters (not allowed on a work-queue stream), so it is narrowed
// to the legacy subjects first. It has no priority group: whatever is left on
// those subjects (a backlog from before the upgrade, schedules set then, and
// what an older replica still running during a rolling upgrade stores) is
// delivered by any replica, as before, and the consumer idles once they are
// gone.
func (q *Queue) legacyConsumer(ctx context.Context) (jetstream.Consumer, error) {
	c, err := q.deliveries.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       consumerDeliveries,
		Description:   "hookline: deliveries stored before endpoints were partitioned (hl.dlv.<ns>.<endpoint>)",
		FilterSubject: legacyDeliveryFilter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.cfg.AckWait,
		MaxAckPending: q.cfg.MaxAckPending,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the deliveries consumer: %w", err)
	}
	return c, nil
}

// pins remembers, per partition, the pin id this replica last received
// messages under, so Release unpins only what this replica owns.
type pins struct {
	mu  sync.Mutex
	ids [Partitions]string
}

// note records the pin id of m, a message of partition p (-1: none).
func (ps *pins) note(m jetstream.Msg, p int) {
	if p < 0 {
		return
	}
	h := m.Headers()
	if h == nil {
		return
	}
	id := h.Get(pinHeader)
	if id == "" {
		return
	}
	ps.mu.Lock()
	ps.ids[p] = id
	ps.mu.Unlock()
}

// Release hands the partitions this replica owns to the other replicas at
// once instead of after PinnedTTL. Call it after the context of
// OpenDeliveries has ended and every delivery taken has been resolved (or
// put back): an owner released earlier would overlap with the next. It
// leaves the live replicas first, so the others already pull from its
// partitions when they are unpinned.
func (s *Deliveries) Release(ctx context.Context) error {
	errs := []error{s.leave(ctx)}
	for p := range Partitions {
		errs = append(errs, s.unpin(ctx, p))
	}
	return errors.Join(errs...)
}

// unpin unpins partition p if this replica holds its pin.
func (s *Deliveries) unpin(ctx context.Context, p int) error {
	s.pins.mu.Lock()
	id := s.pins.ids[p]
	s.pins.mu.Unlock()
	return s.q.unpinIf(ctx, partitionConsumerName(p), partitionGroup, id)
}

// Owners reports, per partition, the pin id of the replica that owns it
// ("" when none is pinned), for status and tests.
func (q *Queue) Owners(ctx context.Context) ([Partitions]string, error) {
	var out [Partitions]string
	for p := range Partitions {
		c, err := q.deliveries.Consumer(ctx, partitionConsumerName(p))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return out, err
		}
		for _, g := range info.PriorityGroups {
			if g.Group == partitionGroup {
				out[p] = g.PinnedClientID
			}
		}
	}
	return out, nil
}
