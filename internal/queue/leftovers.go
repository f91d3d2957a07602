package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// What the queue keeps per subscription object: its dead letters, attempt
// log and, for an ordered subscription, its lane (a consumer and the
// deliveries on the lane's subject). Deliveries of unordered subscriptions
// share their endpoint's subjects; the engine drops those of a deleted
// subscription when they come up. The engine removes the rest once the
// subscription is gone (Kept, Forget, RemoveOrdered), also after a
// deletion that happened while no dispatcher ran.

// Kept lists the subscription objects the queue keeps dead letters or an
// attempt log for, and the subscriptions that have an ordered lane (their
// UID empty: a lane is per name).
func (q *Queue) Kept(ctx context.Context) (logs []SubscriptionID, lanes []SubscriptionKey, err error) {
	seen := map[SubscriptionID]bool{}
	for _, s := range []struct {
		stream jetstream.Stream
		root   string
	}{{q.dead, subjDead}, {q.attempts, subjAttempts}} {
		info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(s.root+".>"))
		if err != nil {
			return nil, nil, fmt.Errorf("listing the subjects of %s: %w", s.root, err)
		}
		for subj := range info.State.Subjects {
			id, err := splitSubscription(subj, s.root)
			if err != nil {
				q.log.V(1).Info("Ignoring a subject of an older layout", "subject", subj)
				continue
			}
			if !seen[id] {
				seen[id] = true
				logs = append(logs, id)
			}
		}
	}
	// A lane is its consumer and its subject: either can be left without the
	// other (a fan-out that raced a removal).
	laneSeen := map[SubscriptionKey]bool{}
	addLane := func(k SubscriptionKey) {
		if !laneSeen[k] {
			laneSeen[k] = true
			lanes = append(lanes, k)
		}
	}
	counts, err := q.subjectCounts(ctx, subjOrdered+".>")
	if err != nil {
		return nil, nil, err
	}
	for subj := range counts {
		if ns, sub, _, err := splitOrdered(subj); err == nil {
			addLane(SubscriptionKey{ns, sub})
		}
	}
	names := q.deliveries.ListConsumers(ctx)
	for c := range names.Info() {
		if !strings.HasPrefix(c.Name, orderedPrefix) {
			continue
		}
		ns, sub, _, err := splitOrdered(c.Config.FilterSubject)
		if err != nil {
			q.log.Error(err, "Ignoring an ordered lane with an unexpected subject", "consumer", c.Name)
			continue
		}
		addLane(SubscriptionKey{ns, sub})
	}
	if err := names.Err(); err != nil {
		return nil, nil, fmt.Errorf("listing ordered lanes: %w", err)
	}
	return logs, lanes, nil
}

// Forget removes what the queue keeps about a subscription object that no
// longer exists: its dead letters and attempt log.
func (q *Queue) Forget(ctx context.Context, sub SubscriptionID) error {
	deadSubj, attSubj := deadSubject(sub), attemptSubject(sub)
	var errs []error
	if err := q.dead.Purge(ctx, jetstream.WithPurgeSubject(deadSubj)); err != nil {
		errs = append(errs, fmt.Errorf("purging dead deliveries of %s: %w", sub, err))
	}
	q.alog.forget(attSubj)
	if err := q.attempts.Purge(ctx, jetstream.WithPurgeSubject(attSubj)); err != nil {
		errs = append(errs, fmt.Errorf("purging attempt log of %s: %w", sub, err))
	}
	return errors.Join(errs...)
}
