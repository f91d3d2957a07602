package registry

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
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

type goneSet struct {
	mu    sync.Mutex
	at    map[types.UID]time.Time
	order []goneEntry // oldest first
}

type goneEntry struct {
	uid types.UID
	at  time.Time
}

func (g *goneSet) add(uid types.UID, now time.Time) {
	if uid == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.at == nil {
		g.at = map[types.UID]time.Time{}
	}
	if _, ok := g.at[uid]; ok {
		return
	}
	g.at[uid] = now
	g.order = append(g.order, goneEntry{uid, now})
	drop := 0
	for drop < len(g.order) && (len(g.order)-drop > goneMax || now.Sub(g.order[drop].at) > goneKeep) {
		delete(g.at, g.order[drop].uid)
		drop++
	}
	if drop > 0 {
		g.order = append(g.order[:0], g.order[drop:]...)
	}
}

func (g *goneSet) has(uid types.UID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.at[uid]
	return ok
}

// Gone reports whether this registry saw the subscription with this UID
// deleted (or replaced by another object of the same name) in the last hour.
// false says nothing: the subscription may exist and not be seen yet, or may
// have been deleted before this process started.
func (r *Registry) Gone(uid types.UID) bool { return r.gone.has(uid) }
