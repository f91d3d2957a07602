package queue

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Delivery is one event on its way to one subscription's endpoint.
type Delivery struct {
	Event           Event
	Subscription    string
	SubscriptionUID string
	Endpoint        string
	// Ordered routes the delivery to the subscription's ordered lane
	// (EnsureOrdered), where one delivery at a time is in flight.
	Ordered bool
	// Lane is, for a subscription ordered per key, the keyed lane its key
	// hashes to (KeyLane, from 1; EnsureKeyed); 0 is the subscription's one
	// ordered lane.
	Lane int
	// KeyHash identifies the delivery's key on its keyed lane (KeyHash), 0
	// for none: a key whose head fails then holds only its own successors
	// (keypark.go). Without it a failure holds the whole lane.
	KeyHash uint64
	// KeyHead marks the copy of a blocked key's head that the queue puts on
	// the lane for its next attempt (keypark.go).
	KeyHead bool
	// Attempt counts from 1. Holds and parking do not count.
	Attempt int
	// FirstAttempt is when attempt 1 was handed to a handler. The queue sets
	// it then if the fan-out left it zero, and keeps it across retries.
	FirstAttempt time.Time
	// Holds counts holds of this attempt; it only keeps the message ids of
	// repeated holds apart. Parking publishes without an id and leaves it.
	Holds int
	// Replay is the dead-letter sequence this delivery was replayed from, 0
	// for an original; it gives the replay fresh message ids.
	Replay uint64
	// Park, set by the fan-out's matcher, stores the delivery straight on
	// its endpoint's parking subject instead of its delivery subject: the
	// endpoint cannot take it now (its circuit is open, it is disabled or
	// suspended), so taking it only to park it would cost a second write
	// and an ack. On its event's first fan-out it is stored without a
	// message id (publishDeliveries): a repeated fan-out may park a second
	// copy. Ignored for an ordered delivery, which waits on its lane; not
	// stored.
	Park bool
}

// DeadInfo is the last failure of a delivery that ran out of attempts.
type DeadInfo struct {
	StatusCode int
	Reason     string
	Time       time.Time
}

// ErrResolved is returned when a Job is resolved a second time.
var ErrResolved = errors.New("the delivery was already resolved")

// Job is one delivery to attempt. Whoever takes it resolves it exactly once
// (Done, RetryAt, Hold, Park, Dead); a Job left unresolved is redelivered
// when its lease (AckWait) runs out.
type Job struct {
	q    *Queue
	msg  jetstream.Msg
	d    Delivery
	lane *lane // nil outside ordered lanes
	// key is set for a delivery with a key on a keyed lane (keypark.go).
	key *keyJob
	// unstarted: the message was stored with no first attempt, so one
	// parked before it is handed out keeps none (keypark.go).
	unstarted bool
	// state: 0 open, 1 being resolved, 2 resolved. A resolution that fails
	// to store its follow-up message reopens the job so the handler may try
	// another way (or leave it for redelivery).
	state atomic.Int32
	// detached: the handler passed the job on to be resolved later.
	detached atomic.Bool
	// held is its partition's count of jobs not resolved (Deliveries.held),
	// nil outside the partitions.
	held *atomic.Int64
}

// Delivery is the delivery to attempt.
func (j *Job) Delivery() Delivery { return j.d }

// Done acknowledges the delivery: it succeeded, or it is to be dropped (its
// subscription is gone, the receiver asked to stop).
func (j *Job) Done() error {
	if j.key != nil && j.key.head {
		// A blocked key's head: resolving it moves the key on (keypark.go).
		return j.resolve(func(ctx context.Context) error {
			if j.lane != nil {
				j.lane.forget()
			}
			return j.key.resolved(ctx, j)
		})
	}
	// An ack is one publish that waits for nothing, so it goes without
	// resolve's deadline: a context and a timer per delivery otherwise.
	return j.settleWith(func() error {
		if j.lane != nil {
			j.lane.forget()
			return j.msg.Ack()
		}
		if _, grouped := j.msg.(*member); grouped {
			return j.msg.Ack() // the group's own acknowledgement is late
		}
		return j.q.acks.ack(j.msg)
	})
}

// RetryAt schedules the next attempt no earlier than t and acknowledges this
// one once the retry is stored.
func (j *Job) RetryAt(t time.Time) error {
	return j.resolve(func(ctx context.Context) error {
		if j.key != nil {
			return j.key.retry(ctx, j, t)
		}
		if j.lane != nil {
			return j.lane.nakUntil(j.msg, t, false)
		}
		next := j.d
		next.Attempt++
		next.Holds = 0
		if err := j.q.publishAt(ctx, &next, t); err != nil {
			return fmt.Errorf("scheduling attempt %d: %w", next.Attempt, err)
		}
		return j.msg.Ack()
	})
}

// Hold puts the same attempt back until the given time without spending
// retry budget, for a short wait (the endpoint is busy or rate-limited, an
// ordered delivery waits on its lane). Each hold costs the server memory
// until it fires, so a wait of unknown length parks instead (Park).
func (j *Job) Hold(until time.Time) error {
	return j.resolve(func(ctx context.Context) error {
		if j.lane != nil {
			return j.lane.nakUntil(j.msg, until, true)
		}
		next := j.d
		next.Holds++
		if err := j.q.publishAt(ctx, &next, until); err != nil {
			return fmt.Errorf("holding attempt %d: %w", next.Attempt, err)
		}
		return j.msg.Ack()
	})
}

// Dead moves the delivery to the dead letters, kept for replay.
func (j *Job) Dead(info DeadInfo) error {
	return j.resolve(func(ctx context.Context) error {
		if info.Time.IsZero() {
			info.Time = time.Now()
		}
		dead := j.d
		dead.KeyHead = false // a dead letter is no copy of a head (keypark.go)
		m := &nats.Msg{
			Subject: deadSubjectOf(&dead),
			Header:  nats.Header{jetstream.MsgIDHeader: []string{deliveryMsgID(&dead) + "/dead"}},
			Data:    encodeDead(&dead, &info),
		}
		if _, err := j.q.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("storing dead delivery: %w", err)
		}
		if j.lane != nil {
			j.lane.forget()
		}
		if j.key != nil && j.key.head {
			return j.key.resolved(ctx, j)
		}
		return j.msg.Ack()
	})
}

// Detach says that the handler has passed the job to another goroutine,
// which will resolve it: returning from the handler without resolving it is
// then expected rather than a bug worth logging. The lease runs as usual; the
// new owner extends it with InProgress if it waits long.
func (j *Job) Detach() { j.detached.Store(true) }

// InProgress extends the lease by AckWait, for a request that is still
// running (a slow receiver, a wait for a rate limit).
func (j *Job) InProgress() error {
	if j.state.Load() == 2 {
		return ErrResolved
	}
	return j.msg.InProgress()
}

// resolve runs one settlement of the job's message on its own deadline (see
// shortWait), not under any caller's context: a caller cancelled mid-settlement
// must not leave the message half-settled.
//
//nolint:contextcheck // a settlement's fresh context is the design; this also clears Done, RetryAt, Hold, Dead and Park's callers.
func (j *Job) resolve(f func(context.Context) error) error {
	return j.settleWith(func() error {
		ctx, cancel := resolveContext(context.Background())
		defer cancel()
		return f(ctx)
	})
}

// settleWith runs one settlement of the job's message, once.
func (j *Job) settleWith(f func() error) error {
	if !j.state.CompareAndSwap(0, 1) {
		return ErrResolved
	}
	if err := f(); err != nil {
		j.state.Store(0)
		return err
	}
	j.state.Store(2)
	if j.held != nil {
		j.held.Add(-1)
	}
	return nil
}

// publishAt stores d on its lane at t: directly when t has come, otherwise as
// a message schedule the server fires at t.
//
// "@at" has whole-second resolution and the client formats the time without
// fractions, which truncates: rounding up keeps the retry from firing early.
// The schedule's subject is unique per message id since the server keeps one
// schedule per subject.
func (q *Queue) publishAt(ctx context.Context, d *Delivery, t time.Time) error {
	return q.storeAt(ctx, d, t, true)
}

// storeAt stores d on its lane, or as a schedule onto it when t is ahead,
// with its delivery id as message id, or without one (withID false: a
// group's member put back, which may be put back more than once), its
// schedule subject then made unique.
func (q *Queue) storeAt(ctx context.Context, d *Delivery, t time.Time, withID bool) error {
	target := laneSubject(d)
	id := deliveryMsgID(d)
	m := &nats.Msg{Subject: target, Data: encodeDelivery(d)}
	if withID {
		m.Header = nats.Header{jetstream.MsgIDHeader: []string{id}}
	} else {
		id += "/" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if !t.After(time.Now()) {
		_, err := q.js.PublishMsg(ctx, m)
		return err
	}
	m.Subject = scheduleSubject(d.Event.Namespace, d.Endpoint, id)
	_, err := q.js.PublishMsg(ctx, m,
		jetstream.WithScheduleAt(ceilSecond(t)),
		jetstream.WithScheduleTarget(target))
	return err
}

func ceilSecond(t time.Time) time.Time {
	c := t.Truncate(time.Second)
	if c.Before(t) {
		c = c.Add(time.Second)
	}
	return c
}

// Deliveries hands out the deliveries to attempt: the unordered ones of the
// endpoints this replica owns (partition.go) from the partitions' consumers
// (Jobs), and the ordered lanes (Lanes). OpenDeliveries starts it; any number
// of replicas may.
type Deliveries struct {
	q     *Queue
	ctx   context.Context
	msgs  chan jetstream.Msg
	lanes chan *Lane
	pins  pins
	// id names this replica among the live ones (members.go).
	id     string
	buffer int
	// held counts, per partition, the jobs handed out and not resolved yet:
	// a partition is handed to another replica once it is back to zero.
	held [Partitions]atomic.Int64
	// cons keeps one client-side consumer per partition across restarts
	// of its pump, so the pin id it learnt goes with its next pulls.
	consMu sync.Mutex
	cons   [Partitions]jetstream.Consumer
	// assigned is the partitions this replica pulls from (Assigned).
	assigned []int
	// members is HL_MEMBERS, nil until it could be created.
	members jetstream.Stream
	// gen counts the pumps started per partition, so a hand-off that
	// finds its partition taken up again leaves it pinned.
	gen [Partitions]atomic.Int64
	// spare holds the members of groups read and not handed out yet.
	spare spareJobs
}

// OpenDeliveries starts reading deliveries until ctx ends, keeping up to
// buffer unordered ones pulled ahead, and runs the ordered lanes
// (EnsureOrdered). Of the partitions it pulls only those assigned to this
// replica among the live ones (members.go).
func (q *Queue) OpenDeliveries(ctx context.Context, buffer int) (*Deliveries, error) {
	if buffer < 1 {
		return nil, fmt.Errorf("buffer must be positive, got %d", buffer)
	}
	// The legacy consumer is narrowed first: until then its filter overlaps
	// the partitions' and the server refuses them.
	if _, err := q.legacyConsumer(ctx); err != nil {
		return nil, err
	}
	for p := range Partitions {
		if _, err := q.partitionConsumer(ctx, p, false); err != nil {
			return nil, err
		}
	}
	s := &Deliveries{q: q, ctx: ctx, msgs: make(chan jetstream.Msg), lanes: make(chan *Lane),
		id: groupReader + nuid.Next(), buffer: buffer, spare: spareJobs{ready: make(chan struct{}, 1)}}
	if err := q.lanes.start(ctx, q, s.lanes, &s.held); err != nil {
		return nil, err
	}
	var pumps sync.WaitGroup
	pumps.Go(func() { q.pumpInto(ctx, q.legacyConsumer, buffer, true, s.msgs) })
	pumps.Go(func() { s.announce(ctx) })
	pumps.Go(func() { s.spread(ctx, &pumps) })
	go func() {
		pumps.Wait()
		close(s.msgs)
	}()
	return s, nil
}

// Jobs yields unordered deliveries until the context of OpenDeliveries ends.
// Any number of goroutines may range over it. The members of a group
// (group.go) are spread over them: the one that reads the group takes its
// first member and leaves the others to whoever asks next, before any new
// message is read.
func (s *Deliveries) Jobs() iter.Seq[*Job] {
	return func(yield func(*Job) bool) {
		defer func() {
			if s.ctx.Err() != nil {
				s.spare.putBack()
			}
		}()
		for {
			if j := s.spare.pop(); j != nil {
				// A member waiting here keeps the group's lease, as the
				// members already handed out do.
				_ = j.msg.InProgress()
				if !yield(j) {
					return
				}
				continue
			}
			var m jetstream.Msg
			select {
			case <-s.spare.ready:
				continue
			case next, ok := <-s.msgs:
				if !ok {
					return
				}
				m = next
			}
			if s.ctx.Err() != nil {
				_ = m.Nak()
				continue
			}
			p := partitionOfSubject(m.Subject())
			s.pins.note(m, p)
			if _, _, ok := splitGroupSubject(m.Subject()); ok {
				jobs := s.groupJobs(m, p)
				if len(jobs) == 0 {
					continue
				}
				s.spare.push(jobs[1:])
				if !yield(jobs[0]) {
					return
				}
				continue
			}
			j := s.q.job(m, nil)
			if j == nil {
				continue
			}
			s.hold(j, p)
			if !yield(j) {
				return
			}
		}
	}
}

// hold counts j held by partition p (-1: none) until it is resolved.
func (s *Deliveries) hold(j *Job, p int) {
	if p >= 0 {
		j.held = &s.held[p]
		j.held.Add(1)
	}
}

// groupJobs splits a group message into a Job per member (group.go). A group
// that does not decode is dropped, as an undecodable delivery is.
func (s *Deliveries) groupJobs(m jetstream.Msg, p int) []*Job {
	members, err := s.q.members(m)
	if err != nil {
		s.q.log.Error(err, "Dropping an undecodable delivery group", "subject", m.Subject())
		_ = m.Term()
		return nil
	}
	jobs := make([]*Job, 0, len(members))
	for _, mm := range members {
		if j := s.q.job(mm, nil); j != nil {
			s.hold(j, p)
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// spareJobs holds the members of groups not handed out yet.
type spareJobs struct {
	mu   sync.Mutex
	jobs []*Job
	// ready has a value while jobs may be non-empty, to wake one waiting
	// reader; each reader that takes a job passes it on if more are left.
	ready chan struct{}
}

func (q *spareJobs) push(jobs []*Job) {
	if len(jobs) == 0 {
		return
	}
	q.mu.Lock()
	q.jobs = append(q.jobs, jobs...)
	q.mu.Unlock()
	q.signal()
}

func (q *spareJobs) pop() *Job {
	q.mu.Lock()
	if len(q.jobs) == 0 {
		q.mu.Unlock()
		return nil
	}
	j := q.jobs[0]
	q.jobs[0] = nil
	q.jobs = q.jobs[1:]
	more := len(q.jobs) > 0
	q.mu.Unlock()
	if more {
		q.signal()
	}
	return j
}

func (q *spareJobs) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// putBack stores every spare job again on its own for its next attempt, as
// a Hold does, so that a dispatcher shutting down leaves no group to wait for
// its lease; one that cannot be stored comes back with its group's lease.
func (q *spareJobs) putBack() {
	for j := q.pop(); j != nil; j = q.pop() {
		_ = j.Hold(time.Now())
	}
}

// Lanes yields each ordered lane once it is to be consumed: those on the
// server when OpenDeliveries was called and those EnsureOrdered adds later.
// Range over each lane's Jobs on its own goroutine. The channel is never
// closed; stop reading it when the context of OpenDeliveries ends.
func (s *Deliveries) Lanes() <-chan *Lane { return s.lanes }

// job decodes a delivery message; it drops (and returns nil for) one that
// will never decode.
func (q *Queue) job(m jetstream.Msg, l *lane) *Job {
	d, err := decodeDelivery(m.Data())
	if err != nil {
		q.log.Error(err, "Dropping an undecodable delivery", "subject", m.Subject())
		_ = m.Term()
		return nil
	}
	j := &Job{q: q, msg: m, d: d, lane: l, unstarted: d.FirstAttempt.IsZero()}
	if l != nil {
		l.observe(m, &j.d)
	}
	if j.d.FirstAttempt.IsZero() {
		j.d.FirstAttempt = time.Now()
	}
	return j
}

// Retarget points the delivery at its subscription's current endpoint, so
// that a retry, hold or park follows the subscription rather than the
// endpoint it was fanned out to.
func (j *Job) Retarget(endpoint string) { j.d.Endpoint = endpoint }

// Unresolved reports a job that is neither resolved nor passed on (Detach):
// a bug in whoever took it, since it now waits for its lease to run out.
func (j *Job) Unresolved() bool { return j.state.Load() != 2 && !j.detached.Load() }
