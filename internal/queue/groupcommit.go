package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit for SyncAlways. The embedded server fsyncs every message it
// stores under SyncAlways, so single events from concurrent API requests
// each waited for their own fsync in the events stream. A JetStream atomic
// batch is committed with one fsync for all of its messages (nats-server
// 2.12+: the stream store syncs on flush while it applies the batch). The
// committer sends an event on its own, at once, whenever a commit slot is
// free; events that arrive while every slot is busy wait for the next slot
// together and go as one batch. Nothing waits to fill a batch, so a quiet
// system pays no extra latency.
//
// An atomic batch has a fixed cost, though: the server stages it in a file
// store of its own, created and removed for each batch (a directory, its
// metadata files and the staged block, each synced), in the stream's one
// goroutine. Measured on the embedded server (docs/benchmarks.md, "--durability
// always at 1,000 events/s"), that is ~2.3 ms, as much as ~15 messages stored
// one by one, so only groups of at least groupCommitAtomicMin messages go as
// an atomic batch; smaller ones are published one by one, pipelined, each
// with its own fsync. Below that size an atomic batch made a slow store
// slower: at 1,000 single events/s the fan-out's small batches each cost
// ~2.3 ms of the deliveries stream and a backlog built (p50 181 ms).
//
// The guarantees do not change: a caller returns once its event is stored
// and synced (the batch's acknowledgement comes after the sync, a single
// publish's after its own), a batch is all or nothing, and a batch the
// server refuses — one holding a repeated event id, for instance, which an
// atomic batch cannot skip — is published again event by event, so each
// caller gets its own result (stored or duplicate) as without batching. A
// crash before the commit's acknowledgement leaves the producer without a
// 202; its retry is either stored or recognised by its id.
const (
	// groupCommitSlots is how many batches are in flight at once: enough to
	// keep the stream busy while the next batch gathers, far below the
	// server's 50 in-flight batches per stream.
	groupCommitSlots = 4
	// groupCommitMax bounds a batch (the server's limit is 1,000 messages).
	groupCommitMax = 256
	// groupCommitTimeout bounds the wait for a batch's acknowledgement, as
	// the async publisher's timeout does for single publishes.
	groupCommitTimeout = 30 * time.Second
)

// groupCommitAtomicMin is the smallest group stored as an atomic batch:
// below it, publishing the messages one by one costs the stream less than
// staging them (see above). A variable only for the crash test's child,
// which publishes every group one by one.
var groupCommitAtomicMin = 16

type groupCommit struct {
	q     *Queue
	reqs  chan *commitReq
	slots chan struct{}
}

type commitReq struct {
	msg  *nats.Msg
	res  PublishResult
	err  error
	done chan struct{}
}

func newGroupCommit(q *Queue) *groupCommit {
	return &groupCommit{q: q, reqs: make(chan *commitReq, groupCommitMax), slots: make(chan struct{}, groupCommitSlots)}
}

// run gathers requests into batches until ctx ends.
func (g *groupCommit) run(ctx context.Context) {
	for {
		var first *commitReq
		select {
		case first = <-g.reqs:
		case <-ctx.Done():
			g.refuse(ctx.Err())
			return
		}
		// Wait for a slot; what arrives meanwhile joins this batch.
		select {
		case g.slots <- struct{}{}:
		case <-ctx.Done():
			first.finish(PublishResult{}, ctx.Err())
			g.refuse(ctx.Err())
			return
		}
		batch := []*commitReq{first}
	gather:
		for len(batch) < groupCommitMax {
			select {
			case r := <-g.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		go func() {
			defer func() { <-g.slots }()
			g.commit(ctx, batch)
		}()
	}
}

// refuse answers the requests still waiting once the queue closes.
func (g *groupCommit) refuse(err error) {
	for {
		select {
		case r := <-g.reqs:
			r.finish(PublishResult{}, err)
		default:
			return
		}
	}
}

// publish stores one event, possibly in a batch with others.
func (g *groupCommit) publish(ctx context.Context, ev *Event) (PublishResult, error) {
	r := &commitReq{msg: eventMsg(ev), done: make(chan struct{})}
	select {
	case g.reqs <- r:
	case <-ctx.Done():
		return PublishResult{}, fmt.Errorf("publishing event %s/%s: %w", ev.Namespace, ev.ID, ctx.Err())
	}
	select {
	case <-r.done:
		if r.err != nil {
			return PublishResult{}, fmt.Errorf("publishing event %s/%s: %w", ev.Namespace, ev.ID, r.err)
		}
		return r.res, nil
	case <-ctx.Done():
		return PublishResult{}, fmt.Errorf("publishing event %s/%s: %w", ev.Namespace, ev.ID, ctx.Err())
	}
}

// publishBatch stores a caller's batch of events as atomic batches of up to
// groupCommitMax, one sync each, instead of one sync per event (a chunk
// smaller than groupCommitAtomicMin goes event by event).
func (g *groupCommit) publishBatch(ctx context.Context, evs []Event) ([]PublishResult, error) {
	res := make([]PublishResult, len(evs))
	for from := 0; from < len(evs); from += groupCommitMax {
		chunk := evs[from:min(from+groupCommitMax, len(evs))]
		batch := make([]*commitReq, len(chunk))
		for i := range chunk {
			batch[i] = &commitReq{msg: eventMsg(&chunk[i]), done: make(chan struct{})}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			g.commit(ctx, batch)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("publishing events: %w", ctx.Err())
		}
		for i, r := range batch {
			if r.err != nil {
				return nil, fmt.Errorf("publishing event %s/%s: %w", chunk[i].Namespace, chunk[i].ID, r.err)
			}
			res[from+i] = r.res
		}
	}
	return res, nil
}

func (r *commitReq) finish(res PublishResult, err error) {
	r.res, r.err = res, err
	close(r.done)
}

func (g *groupCommit) commit(ctx context.Context, batch []*commitReq) {
	if len(batch) >= groupCommitAtomicMin {
		msgs := make([]*nats.Msg, len(batch))
		for i, r := range batch {
			msgs[i] = r.msg
		}
		seq, err := g.commitAtomic(ctx, msgs)
		if ctx.Err() != nil {
			// Stored or not, nobody waits for the answer any more.
			for _, r := range batch {
				r.finish(PublishResult{}, ctx.Err())
			}
			return
		}
		if err == nil {
			first := seq - uint64(len(batch)) + 1
			for i, r := range batch {
				r.finish(PublishResult{Seq: first + uint64(i)}, nil)
			}
			return
		}
		g.q.log.V(1).Info("An atomic batch of events was refused; publishing them one by one", "events", len(batch), "error", err.Error())
	}
	g.commitEach(batch)
}

// commitEach publishes the events one by one, each with its own result.
func (g *groupCommit) commitEach(batch []*commitReq) {
	futures := make([]jetstream.PubAckFuture, len(batch))
	for i, r := range batch {
		f, err := g.q.js.PublishMsgAsync(r.msg, stallWait)
		if err != nil {
			r.finish(PublishResult{}, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			batch[i].finish(PublishResult{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil)
		case err := <-f.Err():
			batch[i].finish(PublishResult{}, err)
		}
	}
}

// batchAck is the server's answer to an atomic batch's commit.
type batchAck struct {
	Seq   uint64              `json:"seq"`
	Count int                 `json:"count"`
	Error *jetstream.APIError `json:"error,omitempty"`
}

// commitAtomic stores the batch atomically and returns the sequence of its
// last event. The staged messages carry no reply subject: the server
// answers only the commit, after the batch is stored and synced.
func (g *groupCommit) commitAtomic(ctx context.Context, batch []*nats.Msg) (uint64, error) {
	// Any unique string of up to 64 characters names a batch.
	id := nats.NewInbox()
	last := len(batch) - 1
	for i, m := range batch[:last] {
		if err := g.q.nc.PublishMsg(batchMsg(m, id, i+1, false)); err != nil {
			return 0, fmt.Errorf("staging an atomic batch: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, groupCommitTimeout)
	defer cancel()
	resp, err := g.q.nc.RequestMsgWithContext(ctx, batchMsg(batch[last], id, last+1, true))
	if err != nil {
		return 0, fmt.Errorf("committing an atomic batch: %w", err)
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("reading an atomic batch's acknowledgement: %w", err)
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	if ack.Count != len(batch) || ack.Seq < uint64(len(batch)) {
		return 0, errors.New("an atomic batch's acknowledgement does not match the batch")
	}
	return ack.Seq, nil
}

// batchMsg is m as message seq of atomic batch id.
func batchMsg(m *nats.Msg, id string, seq int, commit bool) *nats.Msg {
	h := make(nats.Header, len(m.Header)+3)
	for k, v := range m.Header {
		h[k] = v
	}
	h.Set("Nats-Batch-Id", id)
	h.Set("Nats-Batch-Sequence", strconv.Itoa(seq))
	if commit {
		h.Set("Nats-Batch-Commit", "1")
	}
	return &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data}
}

// publishFunc publishes one message and returns its acknowledgement to come.
type publishFunc func(*nats.Msg) (jetstream.PubAckFuture, error)

// publishAsync is the plain async publish.
func (q *Queue) publishAsync(m *nats.Msg) (jetstream.PubAckFuture, error) {
	return q.js.PublishMsgAsync(m, stallWait)
}

// stager collects a fan-out batch's messages per stream and stores each
// stream's as one atomic batch (flush), or one by one when there are fewer
// than groupCommitAtomicMin. A batch the server refuses — one repeating a
// delivery already stored by an earlier, interrupted fan-out — is published
// message by message instead, each with its own answer.
//
// Ordered deliveries keep their lane's order either way: published one by
// one, they go through the lane's chain (fanorder.go), as with the default
// durability; stored atomically, their batch waits until the deliveries
// still on their lanes' chains, from earlier fan-out batches, are stored.
// Either way a lane whose delivery cannot be stored holds the whole fan-out
// batch until it can, where the default durability settles that event in
// the background and lets the batch's others go; group commit runs only on
// the embedded server, where a publish fails only when the store itself
// does, for every lane alike.
type stager struct {
	ctx    context.Context
	q      *Queue
	lanes  *laneChains
	groups map[string][]*stagedFuture // by stream subject root
	order  []string
}

func newStager(ctx context.Context, q *Queue, lanes *laneChains) *stager {
	return &stager{ctx: ctx, q: q, lanes: lanes, groups: map[string][]*stagedFuture{}}
}

func (s *stager) stage(m *nats.Msg) (jetstream.PubAckFuture, error) {
	return s.add(m, false)
}

// stageOrdered stages a delivery of an ordered lane.
func (s *stager) stageOrdered(m *nats.Msg) (jetstream.PubAckFuture, error) {
	return s.add(m, true)
}

func (s *stager) add(m *nats.Msg, ordered bool) (jetstream.PubAckFuture, error) {
	f := &stagedFuture{msg: m, ordered: ordered, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	root := subjRetained
	switch {
	case strings.HasPrefix(m.Subject, subjRetained+"."):
	case strings.HasPrefix(m.Subject, subjDead+"."):
		// Dead letters at fan-out are rare: published on their own.
		return s.q.publishAsync(m)
	default:
		root = "deliveries"
	}
	if _, ok := s.groups[root]; !ok {
		s.order = append(s.order, root)
	}
	s.groups[root] = append(s.groups[root], f)
	return f, nil
}

// flush stores what was staged, the streams' batches concurrently, and
// returns once every message is stored or has failed (or, when published
// one by one, is on its way).
func (s *stager) flush() {
	var wg sync.WaitGroup
	for _, root := range s.order {
		fs := s.groups[root]
		wg.Go(func() { s.store(fs) })
	}
	wg.Wait()
}

func (s *stager) store(fs []*stagedFuture) {
	// In order, chunk by chunk: a stream keeps the fan-out's order.
	for from := 0; from < len(fs); from += groupCommitMax {
		s.storeChunk(fs[from:min(from+groupCommitMax, len(fs))])
	}
}

func (s *stager) storeChunk(fs []*stagedFuture) {
	if len(fs) >= groupCommitAtomicMin {
		if lanes := orderedSubjects(fs); len(lanes) > 0 {
			s.lanes.wait(lanes)
		}
		msgs := make([]*nats.Msg, len(fs))
		for i, f := range fs {
			msgs[i] = f.msg
		}
		last, err := s.q.group.commitAtomic(s.ctx, msgs)
		if s.ctx.Err() != nil {
			// The fan-out is stopping: its events come back, and a repeat
			// is recognised by the deliveries' ids.
			for _, f := range fs {
				f.err <- s.ctx.Err()
			}
			return
		}
		if err == nil {
			first := last - uint64(len(fs)) + 1
			for i, f := range fs {
				f.ok <- &jetstream.PubAck{Sequence: first + uint64(i)}
			}
			return
		}
		s.q.log.V(1).Info("An atomic batch of the fan-out was refused; publishing it message by message", "messages", len(fs), "error", err.Error())
	}
	for _, f := range fs {
		publish := s.q.publishAsync
		if f.ordered {
			publish = s.lanes.publish
		}
		inner, err := publish(f.msg)
		if err != nil {
			f.err <- err
			continue
		}
		go func() {
			select {
			case a := <-inner.Ok():
				f.ok <- a
			case err := <-inner.Err():
				f.err <- err
			}
		}()
	}
}

// orderedSubjects are the lanes of the ordered deliveries among fs.
func orderedSubjects(fs []*stagedFuture) map[string]bool {
	var lanes map[string]bool
	for _, f := range fs {
		if f.ordered {
			if lanes == nil {
				lanes = map[string]bool{}
			}
			lanes[f.msg.Subject] = true
		}
	}
	return lanes
}

// stagedFuture is the acknowledgement of a staged message.
type stagedFuture struct {
	msg     *nats.Msg
	ordered bool
	ok      chan *jetstream.PubAck
	err     chan error
}

func (f *stagedFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *stagedFuture) Err() <-chan error            { return f.err }
func (f *stagedFuture) Msg() *nats.Msg               { return f.msg }
