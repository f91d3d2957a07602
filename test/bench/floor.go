package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue/queuetest"
)

// The floor phase: what hookline's storage layout costs per delivery with nothing of
// hookline in the way. Each pass does one layout's JetStream work with plain nats.go
// calls on an embedded nats-server in this process, and sends every delivery as the
// baseline does (the dispatcher's client, signed, to the same receiver). A pass's ratio
// to the baseline is then the ceiling of any delivery path that stores that much per
// delivery, read beside the dispatcher's own ratio in the same run.
const phaseFloor = "floor"

// floorPath is how a request's events become stored deliveries.
type floorPath int

const (
	// oneByOne is hookline's layout before deliveries were grouped: each event is
	// stored in a work queue; a fan-out consumer stores its deliveries and its
	// retained copy, then acknowledges (removes) it; each delivery is fetched, sent
	// and acknowledged (removed). For one subscription: five stored or removed
	// messages and two consumer hand-offs.
	oneByOne floorPath = iota
	// atIngest stores each event's deliveries and its retained copy at once, with no
	// events stream: docs/benchmarks.md's lever "match at ingest".
	atIngest
	// perRequest stores a request's events as one delivery message and one retained
	// message, removed once every delivery in it has been sent: deliveries stored in
	// groups rather than one by one.
	perRequest
	// keptEvents is oneByOne with the events stream kept by age and size as
	// the retained copy (lever 4 of docs/benchmarks.md, "fan out from the retained
	// stream"): the fan-out's acknowledgement removes nothing and no separate copy is
	// stored.
	keptEvents
	// grouped is hookline's layout: oneByOne with the fan-out storing a fetched
	// batch's deliveries to one endpoint as one message, removed once every delivery
	// in it has been sent; each event keeps its own retained copy.
	grouped
)

// fansOut reports whether the path stores events first and fans them out after.
func (p floorPath) fansOut() bool { return p == oneByOne || p == keptEvents || p == grouped }

// floorShape is how events arrive: publishers each storing batch events at a time and
// waiting for them, as a producer waits for its 202; every event goes to fanout
// endpoints.
type floorShape struct{ publishers, batch, fanout int }

type floorPass struct {
	Name       string
	shape      floorShape
	path       floorPath
	send       bool // false: acknowledge each delivery without sending it
	Deliveries int
	Failed     int
	FirstErr   string
	Elapsed    time.Duration
	Rate       float64
	// CPU is this program's CPU time per delivery: nats-server, the client's JetStream
	// calls, the HTTP client and the receiver.
	CPU time.Duration
}

// The passes in hookline's layout, which the report sets hookline's own phases
// against.
const (
	floorBatches = "batches: hookline's layout"
	floorSingles = "single events: hookline's layout"
	floorFan10   = "fan-out 10: hookline's layout"
)

// floorOf is the run's floor pass named name, or nil.
func floorOf(r *runResult, name string) *floorPass {
	for _, p := range r.Floor {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// floorFetch is how many events the fan-out consumer takes at once, as hookline's does.
const floorFetch = 100

func (b *bench) floorPasses() []*floorPass {
	c := b.cfg
	batches := floorShape{publishers: c.publishers, batch: c.batch, fanout: 1}
	singles := floorShape{publishers: c.singlePublishers, batch: 1, fanout: 1}
	fan10 := floorShape{publishers: c.singlePublishers, batch: 1, fanout: fan10Endpoints}
	return []*floorPass{
		{Name: floorBatches, shape: batches, path: grouped, send: true},
		{Name: "batches: hookline's layout, not sent", shape: batches, path: grouped},
		{Name: "batches: one message a delivery (before groups)", shape: batches, path: oneByOne, send: true},
		{Name: "batches: matched at ingest", shape: batches, path: atIngest, send: true},
		{Name: "batches: one message a request", shape: batches, path: perRequest, send: true},
		{Name: "batches: events kept as the retained copy", shape: batches, path: keptEvents, send: true},
		{Name: floorSingles, shape: singles, path: grouped, send: true},
		{Name: "single events: one message a delivery (before groups)", shape: singles, path: oneByOne, send: true},
		{Name: "single events: matched at ingest", shape: singles, path: atIngest, send: true},
		{Name: "single events: events kept as the retained copy", shape: singles, path: keptEvents, send: true},
		{Name: floorFan10, shape: fan10, path: grouped, send: true},
		{Name: "fan-out 10: one message a delivery (before groups)", shape: fan10, path: oneByOne, send: true},
		{Name: "fan-out 10: matched at ingest", shape: fan10, path: atIngest, send: true},
	}
}

// floor runs every pass, each on a fresh embedded nats-server.
func (b *bench) floor(ctx context.Context, r *run) ([]*floorPass, error) {
	target, done, err := b.directTarget("/" + r.ns + "/floor")
	if err != nil {
		return nil, err
	}
	defer done()
	passes := b.floorPasses()
	for i, p := range passes {
		dir := filepath.Join(b.cfg.workDir, "floor", strconv.Itoa(i))
		if err := b.floorPass(ctx, p, dir, target, "fl"+strconv.Itoa(i)); err != nil {
			return passes[:i], fmt.Errorf("%s: %w", p.Name, err)
		}
		b.logf("  %s: %.0f/s, %s per delivery", p.Name, p.Rate, us(p.CPU))
		_ = os.RemoveAll(dir)
	}
	return passes, nil
}

// floorRun is one pass in progress.
type floorRun struct {
	b      *bench
	p      *floorPass
	js     jetstream.JetStream
	target *delivery.Target
	group  string // of the events' ids at the receiver
	events int
	// ctx ends when every delivery has been made (cause context.Canceled) or a
	// step failed (its error).
	ctx          context.Context
	cancel       context.CancelCauseFunc
	sent, failed atomic.Int64
	errOnce      sync.Once
}

func (b *bench) floorPass(ctx context.Context, p *floorPass, dir string, target *delivery.Target, group string) error {
	_, js, stop, err := queuetest.JetStream(dir, false)
	if err != nil {
		return err
	}
	defer stop()
	f := &floorRun{b: b, p: p, js: js, target: target, group: group, events: max(1, b.cfg.floorDeliveries/p.shape.fanout)}
	p.Deliveries = f.events * p.shape.fanout
	// The senders and the fan-out are waited for after f.ctx is cancelled: they
	// stop on it.
	var workers sync.WaitGroup
	defer workers.Wait()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	f.ctx, f.cancel = ctx, cancel
	deliveries, err := f.streams()
	if err != nil {
		return err
	}
	stopSending, err := f.send(deliveries, &workers)
	if err != nil {
		return err
	}
	defer stopSending()

	cpu, start := selfCPU(), time.Now()
	if p.path.fansOut() {
		if err := f.fanOut(&workers); err != nil {
			return err
		}
	}
	if err := f.publish(); err != nil {
		return err
	}
	<-ctx.Done()
	p.Elapsed = time.Since(start)
	p.Failed = int(f.failed.Load())
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	if got := f.sent.Load(); got != int64(p.Deliveries) {
		return fmt.Errorf("%d of %d deliveries made", got, p.Deliveries)
	}
	p.Rate = float64(p.Deliveries) / p.Elapsed.Seconds()
	p.CPU = (selfCPU() - cpu) / time.Duration(p.Deliveries)
	return nil
}

// streams creates hookline's streams as far as a delivery touches them (same
// retention and de-duplication windows; the events kept by size for keptEvents)
// and the deliveries' consumer.
func (f *floorRun) streams() (jetstream.Consumer, error) {
	events := jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}, Retention: jetstream.WorkQueuePolicy, Duplicates: 10 * time.Minute}
	if f.p.path == keptEvents {
		events.Retention, events.MaxBytes = jetstream.LimitsPolicy, 1<<30
	}
	for _, sc := range []jetstream.StreamConfig{
		events,
		{Name: "DELIVERIES", Subjects: []string{"dl.>"}, Retention: jetstream.WorkQueuePolicy, Duplicates: 4 * time.Minute},
		{Name: "RETAINED", Subjects: []string{"rt.>"}, Retention: jetstream.LimitsPolicy, Duplicates: 4 * time.Minute, MaxBytes: 1 << 30},
	} {
		sc.Storage = jetstream.FileStorage
		if _, err := f.js.CreateStream(f.ctx, sc); err != nil {
			return nil, err
		}
	}
	return f.js.CreateConsumer(f.ctx, "DELIVERIES", jetstream.ConsumerConfig{Durable: "deliver", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
}

// send consumes the deliveries with the baseline's number of workers, each
// sending one delivery (unless the pass does not send); a message is
// acknowledged once every delivery in it has been sent. stop ends the consumer;
// workers ends with f.ctx.
func (f *floorRun) send(deliveries jetstream.Consumer, workers *sync.WaitGroup) (stop func(), err error) {
	work := make(chan floorItem, f.b.cfg.baselineWorkers)
	for range f.b.cfg.baselineWorkers {
		workers.Go(func() {
			for {
				select {
				case it := <-work:
					f.deliver(it)
				case <-f.ctx.Done():
					return
				}
			}
		})
	}
	cc, err := deliveries.Consume(func(m jetstream.Msg) {
		ep, _, _ := strings.Cut(strings.TrimPrefix(m.Subject(), "dl."), ".")
		left := new(atomic.Int32)
		var items []floorItem
		for seq, body := range frames(m.Data()) {
			items = append(items, floorItem{m: m, ep: ep, seq: seq, body: body, left: left})
		}
		left.Store(int32(len(items)))
		for _, it := range items {
			select {
			case work <- it:
			case <-f.ctx.Done():
				return
			}
		}
	}, jetstream.PullMaxMessages(2*floorFetch))
	if err != nil {
		return nil, err
	}
	return cc.Stop, nil
}

// floorItem is one delivery of a stored message; left counts the message's
// deliveries not sent yet.
type floorItem struct {
	m    jetstream.Msg
	ep   string
	seq  int
	body []byte
	left *atomic.Int32
}

// deliver sends one delivery, and acknowledges its message once it was the
// message's last.
func (f *floorRun) deliver(it floorItem) {
	if f.p.send {
		now := time.Now()
		id := eventID(f.group, it.seq) + "." + it.ep
		msg := delivery.Message{ID: id, WebhookID: id, Type: "bench.floor", Time: now, Data: it.body, Namespace: "bench", Subscription: "floor"}
		if res := delivery.Send(f.ctx, f.target, msg, now); res.Verdict != delivery.Delivered {
			f.failed.Add(1)
			f.errOnce.Do(func() { f.p.FirstErr = fmt.Sprintf("status %d, %v", res.StatusCode, res.Err) })
		}
	}
	if it.left.Add(-1) == 0 {
		if err := it.m.Ack(); err != nil {
			f.cancel(err)
			return
		}
	}
	if f.sent.Add(1) == int64(f.p.Deliveries) {
		f.cancel(nil)
	}
}

// store publishes what events numbered from first become by the pass's path
// (its deliveries and retained copies, or one message of each for the request),
// and waits for them.
func (f *floorRun) store(first int, bodies [][]byte) error {
	var futures []jetstream.PubAckFuture
	if f.p.path == perRequest {
		joined := framed(nil, first, bodies...)
		var err error
		if futures, err = publishAll(f.js, futures, joined, "dl.e0."+strconv.Itoa(first)+".r", "rt.r."+strconv.Itoa(first)); err != nil {
			return err
		}
	} else {
		for i, body := range bodies {
			var err error
			if futures, err = publishDeliveries(f.js, futures, first+i, body, f.p.shape.fanout, true); err != nil {
				return err
			}
		}
	}
	return awaitPubAcks(f.ctx, futures)
}

// fanOut runs the events' consumer: it fetches up to floorFetch events, publishes
// their deliveries and retained copies together, waits for them once and then
// acknowledges the events, as hookline's fan-out does. It stops with f.ctx;
// workers waits for it.
func (f *floorRun) fanOut(workers *sync.WaitGroup) error {
	fanout, err := f.js.CreateConsumer(f.ctx, "EVENTS", jetstream.ConsumerConfig{Durable: "fanout", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 8192})
	if err != nil {
		return err
	}
	workers.Go(func() {
		for f.ctx.Err() == nil {
			if err := f.fanOutBatch(fanout); err != nil {
				f.cancel(err)
				return
			}
		}
	})
	return nil
}

func (f *floorRun) fanOutBatch(fanout jetstream.Consumer) error {
	batch, err := fanout.Fetch(floorFetch, jetstream.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return err
	}
	var msgs []jetstream.Msg
	var futures []jetstream.PubAckFuture
	if f.p.path == grouped {
		var group []byte
		first := -1
		for m := range batch.Messages() {
			msgs = append(msgs, m)
			for seq, body := range frames(m.Data()) {
				if first < 0 {
					first = seq
				}
				group = framed(group, seq, body)
				if futures, err = publishAll(f.js, futures, framed(nil, seq, body), "rt.e."+strconv.Itoa(seq)); err != nil {
					return err
				}
			}
		}
		if first >= 0 {
			for ep := range f.p.shape.fanout {
				if futures, err = publishAll(f.js, futures, group, "dl.e"+strconv.Itoa(ep)+".g"+strconv.Itoa(first)); err != nil {
					return err
				}
			}
		}
		return f.ackFetched(futures, msgs)
	}
	for m := range batch.Messages() {
		msgs = append(msgs, m)
		for seq, body := range frames(m.Data()) {
			if futures, err = publishDeliveries(f.js, futures, seq, body, f.p.shape.fanout, f.p.path != keptEvents); err != nil {
				return err
			}
		}
	}
	return f.ackFetched(futures, msgs)
}

// ackFetched waits for what the fan-out stored from the fetched events, then
// acknowledges (removes) them.
func (f *floorRun) ackFetched(futures []jetstream.PubAckFuture, msgs []jetstream.Msg) error {
	if err := awaitPubAcks(f.ctx, futures); err != nil {
		return err
	}
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			return err
		}
	}
	return nil
}

// ingest stores a request's events (framed, no JSON) and answers 202 once they
// are stored: in the events stream for hookline's layout, otherwise as store
// makes them.
func (f *floorRun) ingest(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	first, bodies := -1, [][]byte(nil)
	for seq, b := range frames(body) {
		if first < 0 {
			first = seq
		}
		bodies = append(bodies, b)
	}
	if f.p.path.fansOut() {
		err = publishEvents(req.Context(), f.js, first, bodies)
	} else {
		err = f.store(first, bodies)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// publish runs the pass's publishers against ingest: each POSTs its events batch
// at a time and waits for the 202 before the next, as a producer does. It returns
// when all are published.
func (f *floorRun) publish() error {
	ingest, err := serveLoopback(f.ctx, http.HandlerFunc(f.ingest))
	if err != nil {
		return err
	}
	defer ingest.close()
	sh := f.p.shape
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: sh.publishers}}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var publishers sync.WaitGroup
	for range sh.publishers {
		publishers.Go(func() {
			var buf []byte
			for f.ctx.Err() == nil {
				last := int(next.Add(int64(sh.batch))) - 1
				first := last - sh.batch + 1
				if first >= f.events {
					return
				}
				now := time.Now()
				buf = buf[:0]
				for seq := first; seq <= min(last, f.events-1); seq++ {
					buf = framed(buf, seq, f.b.payload.data(nil, seq, now))
				}
				if err := postFramed(f.ctx, client, ingest.url("/events"), buf); err != nil {
					f.cancel(err)
					return
				}
			}
		})
	}
	publishers.Wait()
	return nil
}

// postFramed POSTs framed events to the floor's ingest and wants its 202.
func postFramed(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("ingest answered %d: %s", resp.StatusCode, msg)
	}
	return nil
}

// publishDeliveries publishes an event's deliveries to fanout endpoints, and its
// retained copy when asked, adding their futures to futures.
func publishDeliveries(js jetstream.JetStream, futures []jetstream.PubAckFuture, seq int, body []byte, fanout int, retained bool) ([]jetstream.PubAckFuture, error) {
	s := strconv.Itoa(seq)
	data := framed(nil, seq, body)
	subjects := make([]string, 0, fanout+1)
	if retained {
		subjects = append(subjects, "rt.e."+s)
	}
	for ep := range fanout {
		subjects = append(subjects, "dl.e"+strconv.Itoa(ep)+"."+s)
	}
	return publishAll(js, futures, data, subjects...)
}

// publishAll publishes data to each subject, with the subject as its message id,
// adding the futures to futures.
func publishAll(js jetstream.JetStream, futures []jetstream.PubAckFuture, data []byte, subjects ...string) ([]jetstream.PubAckFuture, error) {
	for _, subj := range subjects {
		f, err := js.PublishAsync(subj, data, jetstream.WithMsgID(subj))
		if err != nil {
			return futures, err
		}
		futures = append(futures, f)
	}
	return futures, nil
}

// publishEvents stores a request's events in the events stream, each with its id.
func publishEvents(ctx context.Context, js jetstream.JetStream, first int, bodies [][]byte) error {
	futures := make([]jetstream.PubAckFuture, 0, len(bodies))
	for i, body := range bodies {
		var err error
		if futures, err = publishAll(js, futures, framed(nil, first+i, body), "ev.e."+strconv.Itoa(first+i)); err != nil {
			return err
		}
	}
	return awaitPubAcks(ctx, futures)
}

func awaitPubAcks(ctx context.Context, futures []jetstream.PubAckFuture) error {
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// framed appends bodies to b as frames of (sequence, length, body), the first body
// numbered first.
func framed(b []byte, first int, bodies ...[]byte) []byte {
	for i, body := range bodies {
		b = binary.AppendUvarint(b, uint64(first+i))
		b = binary.AppendUvarint(b, uint64(len(body)))
		b = append(b, body...)
	}
	return b
}

// frames yields the (sequence, body) frames of a stored message.
func frames(b []byte) iter.Seq2[int, []byte] {
	return func(yield func(int, []byte) bool) {
		for rest := b; len(rest) > 0; {
			seq, n := binary.Uvarint(rest)
			if n <= 0 {
				return
			}
			size, m := binary.Uvarint(rest[n:])
			if m <= 0 || uint64(len(rest)-n-m) < size {
				return
			}
			body := rest[n+m : n+m+int(size)]
			rest = rest[n+m+int(size):]
			if !yield(int(seq), body) {
				return
			}
		}
	}
}
