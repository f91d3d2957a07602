package engine

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Stats are kept per process as totals since the process started, tagged
// with a process id, rather than as deltas since the last report.
//
// Whoever aggregates them (the status writer, across replicas) keeps the
// latest Snapshot of each process and merges those. A total is idempotent:
// a report seen twice, late or out of order changes nothing, and a lost
// report is healed by the next one, where a lost or repeated delta would
// skew the counters for good. When a process goes away, its last totals are
// folded into the persisted base once. What a crash loses, the increments
// since the last report, is the same either way.

// Failure is a failed attempt as status shows it: no response body, no
// header, nothing a receiver could use to smuggle a secret into status.
type Failure struct {
	Time       time.Time `json:"time"`
	StatusCode int       `json:"statusCode,omitempty"`
	Reason     string    `json:"reason"`
}

// Counts are one subscription's or endpoint's delivery figures in one
// process since it started.
type Counts struct {
	// Delivered counts deliveries that succeeded.
	Delivered uint64 `json:"delivered"`
	// Failed counts failed attempts, each retry included.
	Failed uint64 `json:"failed"`
	// Dead counts deliveries given up on.
	Dead uint64 `json:"dead"`
	// ConsecutiveFailures counts failed attempts since the last success, and
	// FailingSince is when the first of them happened (zero after a success).
	ConsecutiveFailures int64     `json:"consecutiveFailures"`
	FailingSince        time.Time `json:"failingSince,omitzero"`
	LastDeliveryTime    time.Time `json:"lastDeliveryTime,omitzero"`
	LastFailure         *Failure  `json:"lastFailure,omitempty"`
	// LastFilterError is the latest event a subscription's filter failed on
	// (those events are dead letters with reason FilterError).
	LastFilterError *FilterFailure `json:"lastFilterError,omitempty"`
	// Recovery is the latest recovery of a subscription run by this
	// process (recover.go).
	Recovery *RecoveryProgress `json:"recovery,omitempty"`
}

// FilterFailure is a filter that failed to evaluate on an event.
type FilterFailure struct {
	Time time.Time `json:"time"`
	// Generation is the Subscription's generation whose filter failed: an
	// edit of the filter makes the failure history.
	Generation int64  `json:"generation"`
	EventID    string `json:"eventId"`
	Reason     string `json:"reason"`
}

func (c *Counts) delivered(now time.Time) {
	c.Delivered++
	c.ConsecutiveFailures = 0
	c.FailingSince = time.Time{}
	c.LastDeliveryTime = now
}

func (c *Counts) failed(f Failure) {
	c.Failed++
	if c.ConsecutiveFailures == 0 {
		c.FailingSince = f.Time
	}
	c.ConsecutiveFailures++
	c.LastFailure = &f
}

// merge adds the figures of another process. Consecutive failures across
// processes are those of every streak that began after the latest success
// anywhere: a streak older than that was interrupted by the success.
func (c Counts) merge(o Counts) Counts {
	out := Counts{
		Delivered:        c.Delivered + o.Delivered,
		Failed:           c.Failed + o.Failed,
		Dead:             c.Dead + o.Dead,
		LastDeliveryTime: later(c.LastDeliveryTime, o.LastDeliveryTime),
		LastFailure:      c.LastFailure,
	}
	if o.LastFailure != nil && (out.LastFailure == nil || o.LastFailure.Time.After(out.LastFailure.Time)) {
		out.LastFailure = o.LastFailure
	}
	out.LastFilterError = c.LastFilterError
	if f := o.LastFilterError; f != nil && (out.LastFilterError == nil || f.Time.After(out.LastFilterError.Time)) {
		out.LastFilterError = f
	}
	out.Recovery = c.Recovery
	if r := o.Recovery; r != nil && (out.Recovery == nil || r.UpdatedAt.After(out.Recovery.UpdatedAt)) {
		out.Recovery = r
	}
	for _, x := range [2]Counts{c, o} {
		if x.ConsecutiveFailures > 0 && x.FailingSince.After(out.LastDeliveryTime) {
			out.ConsecutiveFailures += x.ConsecutiveFailures
			if out.FailingSince.IsZero() || x.FailingSince.Before(out.FailingSince) {
				out.FailingSince = x.FailingSince
			}
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// SubscriptionStats are one subscription's figures.
type SubscriptionStats struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// UID tells a subscription from an older one of the same name; figures
	// of different UIDs are never merged.
	UID string `json:"uid"`
	Counts
}

// EndpointStats are one endpoint's figures and state.
type EndpointStats struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Counts

	Circuit CircuitState `json:"circuit"`
	// NextProbe is when an open circuit lets a probe through.
	NextProbe      time.Time `json:"nextProbe,omitzero"`
	Disabled       bool      `json:"disabled,omitempty"`
	DisabledSince  time.Time `json:"disabledSince,omitzero"`
	DisabledReason string    `json:"disabledReason,omitempty"`
	// InFlight and Queued are deliveries being sent and waiting in memory
	// now; the backlog on disk is the queue's to count.
	InFlight int `json:"inFlight"`
	Queued   int `json:"queued"`
}

// Snapshot is one process's figures at one time.
type Snapshot struct {
	// Process identifies the process; its totals only grow while it runs.
	Process       string              `json:"process"`
	Started       time.Time           `json:"started"`
	Taken         time.Time           `json:"taken"`
	Subscriptions []SubscriptionStats `json:"subscriptions"`
	Endpoints     []EndpointStats     `json:"endpoints"`
}

type statKey struct{ ns, name, uid string }

// Merge combines the latest snapshot of each process into one, with an
// empty Process. Pass each process once: its figures are totals, so two
// snapshots of the same process would count it twice. An open circuit
// anywhere shows as open, and a disable anywhere as disabled.
func Merge(snaps ...Snapshot) Snapshot {
	var out Snapshot
	subs := map[statKey]*SubscriptionStats{}
	eps := map[statKey]*EndpointStats{}
	for _, s := range snaps {
		if out.Started.IsZero() || s.Started.Before(out.Started) {
			out.Started = s.Started
		}
		out.Taken = later(out.Taken, s.Taken)
		for _, st := range s.Subscriptions {
			k := statKey{st.Namespace, st.Name, st.UID}
			if m := subs[k]; m != nil {
				m.Counts = m.merge(st.Counts)
				continue
			}
			st := st
			subs[k] = &st
		}
		for _, st := range s.Endpoints {
			k := statKey{st.Namespace, st.Name, st.UID}
			m := eps[k]
			if m == nil {
				st := st
				eps[k] = &st
				continue
			}
			m.Counts = m.merge(st.Counts)
			if circuitRank(st.Circuit) > circuitRank(m.Circuit) {
				m.Circuit, m.NextProbe = st.Circuit, st.NextProbe
			}
			if st.Disabled && (!m.Disabled || st.DisabledSince.Before(m.DisabledSince)) {
				m.Disabled, m.DisabledSince, m.DisabledReason = true, st.DisabledSince, st.DisabledReason
			}
			m.InFlight += st.InFlight
			m.Queued += st.Queued
		}
	}
	for _, st := range subs {
		out.Subscriptions = append(out.Subscriptions, *st)
	}
	for _, st := range eps {
		out.Endpoints = append(out.Endpoints, *st)
	}
	sortStats(&out)
	return out
}

func circuitRank(s CircuitState) int {
	switch s {
	case CircuitOpen:
		return 2
	case CircuitHalfOpen:
		return 1
	}
	return 0
}

func sortStats(s *Snapshot) {
	slices.SortFunc(s.Subscriptions, func(a, b SubscriptionStats) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.UID, b.UID))
	})
	slices.SortFunc(s.Endpoints, func(a, b EndpointStats) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.UID, b.UID))
	})
}

// Snapshot returns this process's figures. It copies counters under short
// per-object locks, so it is cheap enough to call every few seconds.
func (e *Engine) Snapshot() Snapshot {
	s := Snapshot{Process: e.process, Started: e.started, Taken: e.clock.Now()}
	e.subs.Range(func(_, v any) bool {
		ss := v.(*subState)
		ss.mu.Lock()
		s.Subscriptions = append(s.Subscriptions, SubscriptionStats{Namespace: ss.key.ns, Name: ss.key.name, UID: ss.uid, Counts: ss.c})
		ss.mu.Unlock()
		return true
	})
	e.endpoints.Range(func(_, v any) bool {
		s.Endpoints = append(s.Endpoints, v.(*endpointState).stats())
		return true
	})
	sortStats(&s)
	return s
}

// subState is one subscription's figures.
type subState struct {
	key objKey
	mu  sync.Mutex
	uid string
	c   Counts
}

func (e *Engine) subscriptionState(ns, name, uid string) *subState {
	k := objKey{ns, name}
	v, ok := e.subs.Load(k)
	if !ok {
		v, _ = e.subs.LoadOrStore(k, &subState{key: k, uid: uid})
	}
	return v.(*subState)
}

// update applies f to the figures, starting them over for a new UID.
func (s *subState) update(uid string, f func(*Counts)) {
	s.mu.Lock()
	if s.uid != uid {
		s.uid, s.c = uid, Counts{}
	}
	f(&s.c)
	s.mu.Unlock()
}
