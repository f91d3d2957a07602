package status

import (
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
)

// index is what merging needs to know about the objects that exist.
type index struct {
	endpoints map[nsName]indexedEndpoint
	subs      map[nsName]string // UID
}

type nsName struct{ ns, name string }

type indexedEndpoint struct {
	uid string
	// enable is the hookline.io/enable value in force (enableRequest).
	enable string
}

func newIndex(eps []hooklinev1.WebhookEndpoint, subs []hooklinev1.Subscription) index {
	ix := index{endpoints: make(map[nsName]indexedEndpoint, len(eps)), subs: make(map[nsName]string, len(subs))}
	for i := range eps {
		v, _ := enableRequest(&eps[i])
		ix.endpoints[nsName{eps[i].Namespace, eps[i].Name}] = indexedEndpoint{uid: string(eps[i].UID), enable: v}
	}
	for i := range subs {
		ix.subs[nsName{subs[i].Namespace, subs[i].Name}] = string(subs[i].UID)
	}
	return ix
}

// alive reports whether figures keyed (ns, name, uid) belong to an object
// that exists. Figures without a UID belong to whatever has the name.
func (ix index) alive(kind objKind, ns, name, uid string) bool {
	var have string
	var ok bool
	if kind == kindEndpoint {
		var e indexedEndpoint
		e, ok = ix.endpoints[nsName{ns, name}]
		have = e.uid
	} else {
		have, ok = ix.subs[nsName{ns, name}]
	}
	return ok && (uid == "" || uid == have)
}

// mergeReports merges the base with the live reports. A report older than
// present keeps its counts but not its circuit; a process's disable counts
// only if the process had applied the hookline.io/enable value in force, so a
// report taken before a re-enable cannot undo it. Figures without a UID take
// the UID of the object of that name.
func mergeReports(b engine.Snapshot, live []entry, ix index, now time.Time, present time.Duration) engine.Snapshot {
	snaps := make([]engine.Snapshot, 0, len(live)+1)
	snaps = append(snaps, b)
	for _, e := range live {
		s := e.rep.Snapshot
		if now.Sub(s.Taken) > present {
			s = withoutPresent(s)
		} else {
			s.Endpoints = append([]engine.EndpointStats(nil), s.Endpoints...)
		}
		s.Subscriptions = append([]engine.SubscriptionStats(nil), s.Subscriptions...)
		for i := range s.Subscriptions {
			st := &s.Subscriptions[i]
			if st.UID == "" {
				st.UID = ix.subs[nsName{st.Namespace, st.Name}]
			}
		}
		for i := range s.Endpoints {
			st := &s.Endpoints[i]
			ie := ix.endpoints[nsName{st.Namespace, st.Name}]
			if st.UID == "" {
				st.UID = ie.uid
			}
			if st.Disabled && e.rep.Applied[st.Namespace+"/"+st.Name] != ie.enable {
				st.Disabled, st.DisabledSince, st.DisabledReason = false, time.Time{}, ""
			}
		}
		snaps = append(snaps, s)
	}
	return engine.Merge(snaps...)
}
