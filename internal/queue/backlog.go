package queue

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// EndpointKey names an endpoint.
type EndpointKey struct{ Namespace, Endpoint string }

// SubscriptionKey names a subscription.
type SubscriptionKey struct{ Namespace, Subscription string }

// Backlog counts deliveries waiting or in flight. Retries and holds waiting
// for their scheduled time are not included: the server can count them only
// one schedule subject at a time, which for a long outage means millions.
type Backlog struct {
	// Endpoints counts, per endpoint, the unordered deliveries waiting for an
	// attempt, in flight, or parked.
	Endpoints map[EndpointKey]uint64
	// Parked is the parked part of Endpoints: deliveries waiting for their
	// endpoint to come back.
	Parked  map[EndpointKey]uint64
	Ordered map[SubscriptionKey]uint64
	// ParkedBySubscription is the parked deliveries per subscription,
	// whatever endpoint they were parked for: a subscription whose endpoint
	// was deleted keeps its backlog parked, and counts it, until it points at
	// one that exists.
	ParkedBySubscription map[SubscriptionKey]uint64
}

// Backlog reads the per-subject counts of the deliveries stream.
func (q *Queue) Backlog(ctx context.Context) (Backlog, error) {
	b := Backlog{Endpoints: map[EndpointKey]uint64{}, Parked: map[EndpointKey]uint64{}, Ordered: map[SubscriptionKey]uint64{},
		ParkedBySubscription: map[SubscriptionKey]uint64{}}
	counts, err := q.subjectCounts(ctx, subjDeliver+".>")
	if err != nil {
		return b, err
	}
	for subj, n := range counts {
		ns, ep, err := splitDeliverySubject(subj)
		if err != nil {
			q.log.Error(err, "Ignoring an unexpected delivery subject")
			continue
		}
		if _, size, ok := splitGroupSubject(subj); ok {
			// A group's messages count their members (group.go).
			n *= uint64(size) //nolint:gosec // G115: a group's size, at least 2 (splitGroupSubject)
		}
		b.Endpoints[EndpointKey{ns, ep}] += n
	}
	parked, err := q.ParkedSubscriptions(ctx)
	if err != nil {
		return b, err
	}
	for k, n := range parked {
		ep := EndpointKey{k.Namespace, k.Endpoint}
		b.Parked[ep] += n
		b.Endpoints[ep] += n
		b.ParkedBySubscription[SubscriptionKey{k.Namespace, k.Subscription}] += n
	}
	if counts, err = q.subjectCounts(ctx, subjOrdered+".>"); err != nil {
		return b, err
	}
	for subj, n := range counts {
		ns, sub, _, err := splitOrdered(subj)
		if err != nil {
			q.log.Error(err, "Ignoring an unexpected ordered-lane subject")
			continue
		}
		b.Ordered[SubscriptionKey{ns, sub}] += n
	}
	return b, nil
}

// subjectCounts counts the messages of the deliveries stream per subject
// matching filter. The server answers from its subject index, without
// reading messages.
func (q *Queue) subjectCounts(ctx context.Context, filter string) (map[string]uint64, error) {
	info, err := q.deliveries.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("reading delivery backlog: %w", err)
	}
	return info.State.Subjects, nil
}
