package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Counting blocked keys. A keyed lane knows how many of its keys are
// blocked (Lane.BlockedKeys; the engine exports the sum per subscription as
// hookline_ordered_blocked_keys), all of them, not only the keyCacheMax whose
// records it keeps in memory: the count is read from the stream's subject
// index, one subject per blocked key's record, and then kept in step by each
// job that blocks or frees its key.
//
// The count read when the lane starts may miss what its previous reader
// (another replica, or this one's previous run of the lane) still does: the
// delivery that was in flight there when the lane moved is resolved after
// the new reader counted. The lane's first delivery settles it, since it is
// handed out only once that one is resolved (MaxAckPending=1) and, from
// then on, only this reader blocks or frees the lane's keys (keys.load counts
// again). Until that first delivery, which on a quiet lane may not come for
// long, the lane counts again every memberTTL, until a count taken while
// nothing was in flight (the consumer's NumAckPending) after the previous
// reader had time to stop.

// countKeys learns which subscription the lane is of and, for a keyed lane,
// counts its blocked keys as the lane starts, and again as said above, while
// the lane runs.
func (l *Lane) countKeys() {
	if !isKeyedLane(l.name) {
		return // no keys to count
	}
	ctx := l.ctx
	for wait := time.Duration(0); ; wait = memberTTL {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		c, err := l.q.deliveries.Consumer(ctx, l.name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || ctx.Err() != nil {
			return
		}
		if err != nil {
			l.q.log.V(1).Info("Could not read an ordered lane to count its blocked keys; trying again", "consumer", l.name, "error", err.Error())
			continue
		}
		info := c.CachedInfo()
		if l.sub.Load() == nil {
			ns, sub, lane, err := splitOrdered(info.Config.FilterSubject)
			if err != nil || lane == 0 {
				return // not keyed: no keys to count
			}
			l.sub.Store(&SubscriptionKey{ns, sub})
		}
		settled, err := l.keys.countFresh(ctx, wait > 0 && info.NumAckPending == 0)
		if err != nil {
			l.q.log.V(1).Info("Could not count the blocked keys of an ordered lane; trying again", "consumer", l.name, "error", err.Error())
			continue
		}
		if settled {
			return
		}
	}
}

// countFresh counts the lane's blocked keys from the stream unless its keys
// were loaded (its first delivery came: the count is kept since). settled
// says the count needs no more checking: it was loaded, or final is set.
func (k *keys) countFresh(ctx context.Context, final bool) (settled bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.loaded {
		return true, nil
	}
	if err := k.recount(ctx); err != nil {
		return false, err
	}
	return final, nil
}

// recount reads from the stream's subject index how many keys of the lane
// are blocked. Call it with k.mu held.
func (k *keys) recount(ctx context.Context) error {
	info, err := k.q.holds.Info(ctx, jetstream.WithSubjectFilter(k.subject+".*"))
	if err != nil {
		return fmt.Errorf("counting the blocked keys of %s: %w", k.subject, err)
	}
	k.setCount(len(info.State.Subjects))
	return nil
}

func (k *keys) setCount(n int) {
	k.count.Store(int64(n))
	k.counted.Store(true)
}

// blocking counts kj's key as blocked (on) or free (!on) once its record
// was stored or removed; a job that does the same twice (a resolution tried
// again after a failed step) counts once. Call it with k.mu held.
func (k *keys) blocking(kj *keyJob, on bool) {
	if kj.blocked == on {
		return
	}
	kj.blocked = on
	if on {
		k.count.Add(1)
	} else {
		k.count.Add(-1)
	}
}

// BlockedKeys reports, for a keyed lane (ordering per key), its
// subscription and how many of its keys are blocked: failing at their head,
// their later deliveries parked. ok is false for a lane that is not keyed,
// and until the lane has counted. A lane that has stopped (its Jobs
// returned) no longer keeps the count, and its last figure is stale.
func (l *Lane) BlockedKeys() (sub SubscriptionKey, n int, ok bool) {
	s := l.sub.Load()
	if s == nil || !l.keys.counted.Load() {
		return SubscriptionKey{}, 0, false
	}
	return *s, int(l.keys.count.Load()), true
}
