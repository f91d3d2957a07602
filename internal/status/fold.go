package status

import (
	"slices"
	"time"

	"github.com/hookline/hookline/internal/engine"
)

// entry is one process's report as the writer read it.
type entry struct {
	key string
	rev uint64
	rep report
}

// foldResult is what fold decided.
type foldResult struct {
	base base
	// changed: the base must be written (compare-and-set) before anything
	// is deleted.
	changed bool
	// remove are keys the base holds whose entries still exist.
	remove []string
	// live are the entries to merge on top of the base.
	live []entry
}

// fold moves the reports of processes that are gone into the base: those
// marked final and those not refreshed for goneAfter. A key the base already
// holds is never folded again, only removed: that is the case after a crash
// between writing the base and deleting the key. The base forgets a folded
// key once its entry is gone, and the figures of objects that no longer exist
// (alive reports whether one does).
func fold(b base, entries []entry, now time.Time, goneAfter time.Duration, alive func(kind objKind, ns, name, uid string) bool) foldResult {
	res := foldResult{base: b}
	held := map[string]bool{}
	for _, f := range b.Folded {
		held[f.Key] = true
	}
	present := map[string]bool{}
	var gone []engine.Snapshot
	for _, e := range entries {
		present[e.key] = true
		switch {
		case held[e.key]:
			res.remove = append(res.remove, e.key)
		case e.rep.Final || now.Sub(e.rep.Snapshot.Taken) > goneAfter:
			gone = append(gone, countsOnly(e.rep.Snapshot))
			res.base.Folded = append(res.base.Folded, foldedKey{Key: e.key, At: now})
			res.remove = append(res.remove, e.key)
		default:
			res.live = append(res.live, e)
		}
	}
	if len(gone) == 0 {
		return res
	}
	res.changed = true
	merged := engine.Merge(append([]engine.Snapshot{b.Snapshot}, gone...)...)
	merged.Process = ""
	merged.Subscriptions = slices.DeleteFunc(merged.Subscriptions, func(s engine.SubscriptionStats) bool {
		return !alive(kindSubscription, s.Namespace, s.Name, s.UID)
	})
	merged.Endpoints = slices.DeleteFunc(merged.Endpoints, func(s engine.EndpointStats) bool {
		return !alive(kindEndpoint, s.Namespace, s.Name, s.UID)
	})
	res.base.Snapshot = merged
	// Keys folded earlier whose entries are gone need no protection any more:
	// a process whose key was deleted never writes it again (see publisher).
	folded := res.base.Folded[:0:0]
	for _, f := range res.base.Folded {
		if present[f.Key] {
			folded = append(folded, f)
		}
	}
	res.base.Folded = folded
	return res
}

// countsOnly keeps what a process counted and drops what only describes its
// present: circuit, disable, deliveries in memory. A disable lives on in
// status; a circuit belongs to a running process.
func countsOnly(s engine.Snapshot) engine.Snapshot {
	out := s
	out.Endpoints = make([]engine.EndpointStats, len(s.Endpoints))
	for i, e := range s.Endpoints {
		out.Endpoints[i] = engine.EndpointStats{Namespace: e.Namespace, Name: e.Name, UID: e.UID, Counts: e.Counts}
	}
	return out
}

// withoutPresent drops the circuit and in-memory figures of a report too old
// to describe the present, keeping its counts and disables.
func withoutPresent(s engine.Snapshot) engine.Snapshot {
	out := s
	out.Endpoints = make([]engine.EndpointStats, len(s.Endpoints))
	for i, e := range s.Endpoints {
		e.Circuit, e.NextProbe, e.InFlight, e.Queued = engine.CircuitClosed, time.Time{}, 0, 0
		out.Endpoints[i] = e
	}
	return out
}

// subtract removes from s the counters already reported in done, for a
// process that reports again after its key was folded. Only the counters
// add up; the times and the failure streak are kept as they are.
func subtract(s engine.Snapshot, done *engine.Snapshot) engine.Snapshot {
	if done == nil {
		return s
	}
	type k struct{ ns, name, uid string }
	subs := map[k]engine.Counts{}
	for _, d := range done.Subscriptions {
		subs[k{d.Namespace, d.Name, d.UID}] = d.Counts
	}
	eps := map[k]engine.Counts{}
	for _, d := range done.Endpoints {
		eps[k{d.Namespace, d.Name, d.UID}] = d.Counts
	}
	out := s
	out.Subscriptions = slices.Clone(s.Subscriptions)
	for i := range out.Subscriptions {
		c := &out.Subscriptions[i]
		c.Counts = minus(c.Counts, subs[k{c.Namespace, c.Name, c.UID}])
	}
	out.Endpoints = slices.Clone(s.Endpoints)
	for i := range out.Endpoints {
		c := &out.Endpoints[i]
		c.Counts = minus(c.Counts, eps[k{c.Namespace, c.Name, c.UID}])
	}
	return out
}

func minus(c, d engine.Counts) engine.Counts {
	sub := func(a, b uint64) uint64 {
		if b > a {
			return 0
		}
		return a - b
	}
	c.Delivered, c.Failed, c.Dead = sub(c.Delivered, d.Delivered), sub(c.Failed, d.Failed), sub(c.Dead, d.Dead)
	return c
}
