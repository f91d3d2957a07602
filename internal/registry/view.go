package registry

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/types"
)

// snapshot is what readers see: one immutable view per namespace. A change replaces the
// views of the namespaces it touched and the top-level map, never a view in place.
type snapshot struct {
	namespaces map[string]*view
}

// view is one namespace's endpoints and subscriptions. Everything but the match memo is
// immutable once published.
type view struct {
	endpoints map[string]*Endpoint
	subs      map[string]*Subscription
	byUID     map[types.UID]*Subscription
	// sorted lists every subscription by name; active those Matching considers.
	sorted []*Subscription
	active []*Subscription

	// memo caches Matching's answer per event type. It is copy-on-write behind an atomic
	// pointer so that a hit is a plain map read; event types are few, so the copies stop
	// soon. It is bounded because publishers choose event types.
	memo   atomic.Pointer[map[string][]*Subscription]
	memoMu sync.Mutex
}

// maxMemo bounds the match memo of one namespace; event types beyond it are matched
// every time.
const maxMemo = 1024

func newView(eps map[string]*Endpoint, subs map[string]*Subscription) *view {
	v := &view{
		endpoints: make(map[string]*Endpoint, len(eps)),
		subs:      make(map[string]*Subscription, len(subs)),
		byUID:     make(map[types.UID]*Subscription, len(subs)),
		sorted:    make([]*Subscription, 0, len(subs)),
	}
	for n, e := range eps {
		v.endpoints[n] = e
	}
	for n, s := range subs {
		v.subs[n] = s
		v.byUID[s.UID] = s
		v.sorted = append(v.sorted, s)
	}
	sort.Slice(v.sorted, func(i, j int) bool { return v.sorted[i].Name < v.sorted[j].Name })
	for _, s := range v.sorted {
		// A subscription whose endpoint does not exist is not Ready; its events would
		// wait for an endpoint that may never come, so none are queued for it.
		if s.Usable && !s.Suspended && v.endpoints[s.Endpoint] != nil {
			v.active = append(v.active, s)
		}
	}
	empty := map[string][]*Subscription{}
	v.memo.Store(&empty)
	return v
}

func (v *view) matching(eventType string) []*Subscription {
	if subs, ok := (*v.memo.Load())[eventType]; ok {
		return subs
	}
	var out []*Subscription
	for _, s := range v.active {
		if s.Matcher.Match(eventType) {
			out = append(out, s)
		}
	}
	v.remember(eventType, out)
	return out
}

func (v *view) remember(eventType string, subs []*Subscription) {
	v.memoMu.Lock()
	defer v.memoMu.Unlock()
	old := *v.memo.Load()
	if len(old) >= maxMemo {
		return
	}
	if _, ok := old[eventType]; ok {
		return
	}
	next := make(map[string][]*Subscription, len(old)+1)
	for k, s := range old {
		next[k] = s
	}
	// The event type may point into a request buffer; the memo must not keep it alive.
	next[strings.Clone(eventType)] = subs
	v.memo.Store(&next)
}
