package registry

import (
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/cache"
)

// Subscriptions seen deleted. A delivery queued for a subscription the
// registry does not know is either for one that is gone or for one created a
// moment ago that this process's watch has not shown yet (another replica
// fanned the event out because its watch had). The engine drops the first at
// once and waits a while for the second; Gone tells them apart for the
// subscriptions this process saw deleted, or replaced by a new object under
// the same name, while it ran.

// goneKeep is how long a deleted subscription's UID is remembered, and
// goneMax how many are at most: a backlog queued for it is normally handed
// out well within the hour, and a UID forgotten only costs its deliveries the
// engine's wait before they are dropped.
const (
	goneKeep = time.Hour
	goneMax  = 100_000
)

func newGoneSet(clk cache.Clock) *cache.LRUExpireCache {
	return cache.NewLRUExpireCacheWithClock(goneMax, clk)
}

func (r *Registry) markGone(uid types.UID) {
	if uid != "" {
		r.gone.Add(uid, struct{}{}, goneKeep)
	}
}

// Gone reports whether this registry saw the subscription with this UID
// deleted (or replaced by another object of the same name) in the last hour.
// false says nothing: the subscription may exist and not be seen yet, or may
// have been deleted before this process started.
func (r *Registry) Gone(uid types.UID) bool {
	_, ok := r.gone.Get(uid)
	return ok
}
