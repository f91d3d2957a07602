package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Spreading the partitions over the replicas. The pin (partition.go) makes
// one replica at a time the owner of a partition, but the server pins
// whichever replica pulls first, so left alone one replica tends to own
// every partition and the others only wait. Each replica therefore pulls
// only from the partitions assigned to it, by a pure function of the live
// replicas (assign), the same on every replica.
//
// Liveness is the HL_MEMBERS stream: every replica publishes on
// hl.member.<id> every memberBeat (announce, on a goroutine of its own), the
// stream keeps one message per subject for memberTTL, so its subjects are
// the replicas heard from within memberTTL. The server's clock expires
// them, so every replica reads the same set. A replica that shuts down
// purges its subject at once.
//
// The assignment only says who pulls; the pin still decides who owns. When
// views differ for a moment (a replica joined, one stopped beating) two
// replicas may pull from one partition and the server gives it to one of
// them, as before; a partition nobody pulls from waits until views agree,
// at most about memberTTL after the last beat of a dead replica, inside
// PinnedTTL.

const (
	streamMembers = "HL_MEMBERS"
	subjMembers   = "hl.member"
	// memberBeat is how often a replica says it is alive, and reads who else is.
	memberBeat = time.Second
	// memberTTL is how long a replica counts as alive after its last beat.
	// Below PinnedTTL, so a dead replica's partitions are assigned to the
	// others before its pins run out.
	memberTTL = 5 * time.Second
	// stallCheckBeats is how many beats apart each assigned partition is
	// checked for deliveries nobody takes (stalled).
	stallCheckBeats = 5
	// handOffWait bounds how long a partition given to another replica
	// stays pinned here while this replica finishes its deliveries.
	handOffWait = time.Minute
	keepPinWait = 500 * time.Millisecond
)

func (q *Queue) ensureMembers(ctx context.Context) (jetstream.Stream, error) {
	s, err := q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              streamMembers,
		Description:       "hookline: the dispatcher replicas alive, one subject each, to spread the delivery partitions",
		Subjects:          []string{subjMembers + ".*"},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: 1,
		MaxAge:            memberTTL,
		Storage:           jetstream.MemoryStorage,
		Replicas:          q.cfg.Replicas,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("creating or updating stream %s: %w", streamMembers, err)
	}
	return s, nil
}

// membersStreamOrCreate returns HL_MEMBERS, creating it at first use.
func (s *Deliveries) membersStreamOrCreate(ctx context.Context) (jetstream.Stream, error) {
	if members := s.membersStream(); members != nil {
		return members, nil
	}
	// Placing a new replicated stream takes a busy cluster seconds.
	cctx, cancel := context.WithTimeout(ctx, shortWait)
	defer cancel()
	members, err := s.q.ensureMembers(cctx)
	if err != nil {
		return nil, err
	}
	s.consMu.Lock()
	s.members = members
	s.consMu.Unlock()
	return members, nil
}

// announce says this replica is alive every memberBeat until ctx ends. It
// runs on its own, not in the spread loop: that loop also checks every
// partition for stalls and lists the ordered lanes, and on a loaded server
// a slow pass of it once kept a live replica from beating for memberTTL, so
// the others counted it dead and took its partitions (CI, under -race).
func (s *Deliveries) announce(ctx context.Context) {
	tick := time.NewTicker(memberBeat)
	defer tick.Stop()
	failing := false
	for {
		err := s.announceOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			// The spread loop reports what the others then see (it reads
			// the same stream); this says why.
			s.q.log.V(1).Info("Announcing this dispatcher replica failed; trying again at the next beat", "error", err.Error())
			failing = true
		case err == nil:
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *Deliveries) announceOnce(ctx context.Context) error {
	if _, err := s.membersStreamOrCreate(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, memberTTL/2)
	defer cancel()
	if _, err := s.q.js.Publish(ctx, subjMembers+"."+s.id, nil); err != nil {
		return fmt.Errorf("announcing replica %s: %w", s.id, err)
	}
	return nil
}

// live returns the replicas alive, sorted. This replica is always one of
// them: its announcement may not have landed yet, but it is alive.
func (s *Deliveries) live(ctx context.Context) ([]string, error) {
	members, err := s.membersStreamOrCreate(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, memberTTL/2)
	defer cancel()
	info, err := members.Info(ctx, jetstream.WithSubjectFilter(subjMembers+".*"))
	if err != nil {
		return nil, fmt.Errorf("reading the live replicas: %w", err)
	}
	out := make([]string, 0, len(info.State.Subjects)+1)
	for subj := range info.State.Subjects {
		if id, ok := strings.CutPrefix(subj, subjMembers+"."); ok {
			out = append(out, id)
		}
	}
	if !slices.Contains(out, s.id) {
		out = append(out, s.id)
	}
	slices.Sort(out)
	return out, nil
}

func (s *Deliveries) membersStream() jetstream.Stream {
	s.consMu.Lock()
	defer s.consMu.Unlock()
	return s.members
}

// leave removes this replica from the live ones at once.
func (s *Deliveries) leave(ctx context.Context) error {
	members := s.membersStream()
	if members == nil {
		return nil
	}
	err := members.Purge(ctx, jetstream.WithPurgeSubject(subjMembers+"."+s.id))
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("removing replica %s from the live ones: %w", s.id, err)
	}
	return nil
}

// assign gives each partition to one of members: each member gets
// floor(Partitions/len(members)) of them or one more, and a member joining or leaving
// moves few partitions (rendezvous hashing, filled greedily by score). The
// result depends only on the set of members, so every replica computes the
// same. No members: every partition unassigned ("").
func assign(members []string) [Partitions]string {
	var out [Partitions]string
	if len(members) == 0 {
		return out
	}
	type pair struct {
		score uint64
		m, p  int
	}
	pairs := make([]pair, 0, len(members)*Partitions)
	for mi, m := range members {
		for p := range Partitions {
			h := fnv.New64a()
			_, _ = h.Write([]byte(m))
			_, _ = h.Write([]byte{'/'})
			_, _ = h.Write([]byte(strconv.Itoa(p)))
			pairs = append(pairs, pair{mix(h.Sum64()), mi, p})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		if c := cmp.Compare(members[a.m], members[b.m]); c != 0 {
			return c
		}
		return cmp.Compare(a.p, b.p)
	})
	// Every member gets floor or floor+1 partitions; extra is how many
	// may still get the +1.
	floor, extra := Partitions/len(members), Partitions%len(members)
	count := make([]int, len(members))
	for _, pr := range pairs {
		if out[pr.p] != "" || count[pr.m] > floor || (count[pr.m] == floor && extra == 0) {
			continue
		}
		if count[pr.m] == floor {
			extra--
		}
		out[pr.p] = members[pr.m]
		count[pr.m]++
	}
	return out
}

// mix is splitmix64's finalizer: FNV alone barely changes the high bits
// for names that differ in their last byte, and the ranking would follow
// the member, not the pair.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Assigned is the partitions this replica pulls from now, for status and
// tests.
func (s *Deliveries) Assigned() []int {
	s.consMu.Lock()
	defer s.consMu.Unlock()
	return slices.Clone(s.assigned)
}

// Owns reports whether the endpoint's partition is assigned to this
// replica now: whether this replica is the one to decide, from its own
// breaker and limits, that the endpoint's parked deliveries may come back.
// Another replica's view of the endpoint (a closed circuit where the owner's
// is open) would move them back only for the owner to park them again.
func (s *Deliveries) Owns(ns, endpoint string) bool {
	p := partitionOf(ns, endpoint)
	s.consMu.Lock()
	defer s.consMu.Unlock()
	return slices.Contains(s.assigned, p)
}

// spread beats every memberBeat and keeps one pump running for each
// partition assigned to this replica: it starts the pumps of partitions
// that become its own and hands off those that stop being so. pumps counts
// the pumps and hand-offs it starts, so the deliveries' channel closes after
// the last.
func (s *Deliveries) spread(ctx context.Context, pumps *sync.WaitGroup) {
	var running [Partitions]context.CancelFunc
	var done [Partitions]chan struct{}
	var mine []int
	failing, started, since := false, false, time.Now()
	start := func(p int) {
		pctx, cancel := context.WithCancel(ctx)
		running[p], done[p] = cancel, make(chan struct{})
		s.gen[p].Add(1)
		d := done[p]
		pumps.Go(func() {
			defer close(d)
			s.q.pumpInto(pctx, s.partitionConsumer(p), s.buffer, true, s.msgs, jetstream.PullPriorityGroup(partitionGroup))
		})
	}
	var stalled [Partitions]int
	tick := time.NewTicker(memberBeat)
	defer tick.Stop()
	for beat := 1; ; beat++ {
		if beat%stallCheckBeats == 0 {
			// All at once: one after the other, a slow server made this
			// pass take up to Partitions times the check's timeout.
			var stuck [Partitions]bool
			var checks sync.WaitGroup
			for p := range Partitions {
				if running[p] != nil {
					checks.Go(func() { stuck[p] = s.stalled(ctx, p, &stalled[p]) })
				}
			}
			checks.Wait()
			for p := range Partitions {
				if !stuck[p] {
					continue
				}
				// Start over with a new iterator and no remembered pin.
				running[p]()
				s.consMu.Lock()
				s.cons[p] = nil
				s.consMu.Unlock()
				start(p)
			}
		}
		members, err := s.live(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !started && time.Since(since) < memberTTL:
			// Try again at the next beat before pulling from everything.
			s.q.log.V(1).Info("Reading the live dispatcher replicas failed", "error", err.Error())
		case err != nil && !started:
			// Never heard the others (HL_MEMBERS not created or readable
			// yet): pull from every partition, as every replica did before
			// partitions were spread; the pins keep ownership exclusive.
			if !failing {
				s.q.log.Error(err, "Reading the live dispatcher replicas failed; pulling from every delivery partition until it works")
			}
			failing, members = true, []string{s.id}
		case err != nil:
			// Keep pulling what was assigned; the others take this
			// replica's partitions over once its beat has been missing for
			// memberTTL, and the pins decide meanwhile.
			if !failing {
				s.q.log.Error(err, "Reading the live dispatcher replicas failed; keeping the delivery partitions assigned before")
			}
			failing = true
		case failing:
			s.q.log.Info("Reading the live dispatcher replicas works again", "replicas", len(members))
			failing = false
		}
		if err == nil {
			s.followGroups(ctx, members)
		}
		if err == nil || (!started && members != nil) {
			started = true
			owners := assign(members)
			var now []int
			for p := range Partitions {
				switch {
				case owners[p] == s.id && running[p] == nil:
					start(p)
				case owners[p] != s.id && running[p] != nil:
					running[p]()
					d, gen := done[p], s.gen[p].Load()
					running[p], done[p] = nil, nil
					pumps.Go(func() { s.handOff(ctx, p, d, gen) })
				}
				if running[p] != nil {
					now = append(now, p)
				}
			}
			if !slices.Equal(now, mine) {
				// Also when the live replicas could not be read before the
				// first assignment and this replica pulls from every
				// partition: Owns must say so.
				mine = now
				s.consMu.Lock()
				s.assigned = slices.Clone(mine)
				s.consMu.Unlock()
				s.q.log.Info("Delivery partitions assigned to this replica", "replica", s.id, "partitions", fmt.Sprint(mine), "replicas", len(members))
			}
			s.followLanes(ctx, err == nil, len(members), beat, now)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// partitionConsumer returns the consumer of partition p for its pump,
// creating it if it was deleted, and always the same client-side value: it
// remembers the pin id, which a fresh one would not, and a pull without the
// pin id waits until the pin runs out (PinnedTTL) even when this replica
// holds it.
func (s *Deliveries) partitionConsumer(p int) func(context.Context) (jetstream.Consumer, error) {
	return func(ctx context.Context) (jetstream.Consumer, error) {
		c, err := s.q.partitionConsumer(ctx, p, s.q.groupsOn.Load())
		if err != nil {
			return nil, err
		}
		s.consMu.Lock()
		defer s.consMu.Unlock()
		if s.cons[p] == nil {
			s.cons[p] = c
		}
		return s.cons[p], nil
	}
}

// handOff gives partition p to the replica it is now assigned to: once its
// pump has stopped (putting back what it had pulled ahead) and every job it
// handed out is resolved, it unpins p if this replica still holds it, so the
// new owner is pinned at its next pull and never while a request of this one
// to an endpoint of p is open. It waits at most handOffWait: a job never
// resolved comes back to the new owner after its lease anyway.
func (s *Deliveries) handOff(ctx context.Context, p int, pumpDone <-chan struct{}, gen int64) {
	select {
	case <-ctx.Done():
		return // Release hands everything over at shutdown.
	case <-pumpDone:
	}
	// Meanwhile the pin is kept: the server unpins a client that has not
	// pulled for PinnedTTL, and the engine may hold an endpoint's
	// deliveries longer than that (up to a few seconds of its pace, plus
	// the sends in flight).
	began := time.Now()
	deadline := began.Add(max(s.q.cfg.AckWait, handOffWait))
	for s.held[p].Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		s.keepPin(p)
	}
	if ctx.Err() != nil {
		return
	}
	if s.gen[p].Load() != gen {
		return // assigned back to this replica meanwhile: keep the pin
	}
	rctx, cancel := context.WithTimeout(ctx, shortWait)
	defer cancel()
	if err := s.unpin(rctx, p); err != nil {
		s.q.log.Error(err, "Handing a delivery partition to another replica failed; it moves when the pin runs out", "partition", p, "pinnedTTL", PinnedTTL)
		return
	}
	s.q.log.V(1).Info("Handed a delivery partition to another replica", "partition", p,
		"waited", time.Since(began).Round(time.Millisecond).String(), "unresolved", s.held[p].Load())
}

// keepPin sends one pull request of partition p with this replica's pin id
// that no message fits (MaxBytes 1): the server resets the pin's TTL when
// the request arrives and never hands it a message, which stays for the
// owner that comes next. It returns when the request expires.
func (s *Deliveries) keepPin(p int) {
	s.consMu.Lock()
	c := s.cons[p]
	s.consMu.Unlock()
	if c == nil {
		time.Sleep(keepPinWait)
		return
	}
	batch, err := c.FetchBytes(1, jetstream.FetchMaxWait(keepPinWait), jetstream.FetchPriorityGroup(partitionGroup))
	if err != nil {
		time.Sleep(keepPinWait)
		return
	}
	for m := range batch.Messages() {
		_ = m.Nak() // cannot happen with MaxBytes 1; never keep one
	}
}

// stalled reports a partition whose consumer has deliveries due that no
// replica holds (pending, none waiting for an ack) on two checks in a row:
// its pin or this replica's pull is stuck. With nothing acknowledged
// pending, no replica is sending one of its deliveries, so unpinning cannot
// make two owners overlap.
func (s *Deliveries) stalled(ctx context.Context, p int, count *int) bool {
	ctx, cancel := context.WithTimeout(ctx, memberTTL/2)
	defer cancel()
	name := partitionConsumerName(p)
	c, err := s.q.deliveries.Consumer(ctx, name)
	if err != nil {
		return false
	}
	info := c.CachedInfo()
	if info.NumPending > 0 {
		s.q.log.V(1).Info("Delivery partition has deliveries due", "partition", p, "pending", info.NumPending,
			"ackPending", info.NumAckPending, "waitingPulls", info.NumWaiting)
	}
	if info.NumPending == 0 || info.NumAckPending > 0 {
		*count = 0
		return false
	}
	if *count++; *count < 2 {
		return false
	}
	*count = 0
	pinned := ""
	for _, g := range info.PriorityGroups {
		if g.Group == partitionGroup {
			pinned = g.PinnedClientID
		}
	}
	s.q.log.Info("A delivery partition has deliveries due that nobody takes; unpinning it and pulling again",
		"partition", p, "pending", info.NumPending, "waitingPulls", info.NumWaiting, "pinned", pinned)
	if pinned != "" {
		if err := s.q.deliveries.UnpinConsumer(ctx, name, partitionGroup); err != nil {
			s.q.log.Error(err, "Unpinning a stalled delivery partition failed", "partition", p)
		}
	}
	return true
}

// followLanes runs the ordered lanes of the partitions this replica pulls
// now (laneowner.go), having listed the lanes first to learn of those
// created or re-pointed by another replica since. Alone (members is 1),
// this replica creates the lanes itself and lists them less often. ok is
// whether the live replicas could be read at this beat.
func (s *Deliveries) followLanes(ctx context.Context, ok bool, members, beat int, now []int) {
	if ok && (members > 1 || beat%stallCheckBeats == 0) {
		lctx, cancel := context.WithTimeout(ctx, memberTTL/2)
		err := s.q.lanes.refresh(lctx, s.q)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.q.log.V(1).Info("Listing the ordered lanes failed; trying again at the next beat", "error", err.Error())
		}
	}
	s.q.lanes.own(now)
}

// followGroups lets the fan-out store groups (group.go) once every live
// replica reads them, taking the group subjects into every partition's
// consumer first, and stops it as soon as one does not (a replica of an
// older release joined).
func (s *Deliveries) followGroups(ctx context.Context, members []string) {
	all := !s.q.cfg.Ungrouped
	for _, id := range members {
		all = all && strings.HasPrefix(id, groupReader)
	}
	on := s.q.groupsOn.Load()
	switch {
	case all && !on:
		for p := range Partitions {
			cctx, cancel := context.WithTimeout(ctx, shortWait)
			_, err := s.q.partitionConsumer(cctx, p, true)
			cancel()
			if err != nil {
				s.q.log.V(1).Info("Could not let a delivery partition read groups; trying again at the next beat", "partition", p, "error", err.Error())
				return
			}
		}
		s.q.groupsOn.Store(true)
		s.q.log.V(1).Info("Every dispatcher replica reads grouped deliveries: the fan-out stores a batch's deliveries to one subscription together", "replicas", len(members))
	case !all && on:
		s.q.groupsOn.Store(false)
		if !s.q.cfg.Ungrouped {
			s.q.log.Info("A dispatcher replica of an older release is running: deliveries are stored one by one until it is gone", "replicas", len(members))
		}
	}
}
