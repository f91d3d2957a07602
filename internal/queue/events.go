package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Event is what a producer published: the unit the API accepts and the
// fan-out matches against subscriptions.
type Event struct {
	Namespace string
	// ID is the producer's id, unique per namespace; a repeat within the
	// de-duplication window is stored once.
	ID   string
	Type string
	Time time.Time
	Data json.RawMessage
	// TraceParent is the W3C trace context of the event's ingest span, when tracing is
	// on: fan-out and delivery attempts continue its trace across the queue.
	TraceParent string `json:"-"`
}

// PublishResult is the outcome of storing an event.
type PublishResult struct {
	// Seq is the event's sequence in the events stream (the first copy's,
	// for a duplicate).
	Seq uint64
	// Duplicate reports that the id was seen within the window and the
	// event was not stored again.
	Duplicate bool
}

// publishStall is how long a publisher waits for room in the async window
// before giving up; a full window means the server is far behind.
const publishStall = 5 * time.Second

// stallWait is the publish option of publishStall, made once: the option is a
// closure, and every async publish on the hot path passes it.
var stallWait = jetstream.WithStallWait(publishStall)

func (ev *Event) validate() error {
	if ev.Namespace == "" || ev.ID == "" {
		return errors.New("an event needs a namespace and an id")
	}
	return nil
}

func eventMsg(ev *Event) *nats.Msg {
	return &nats.Msg{
		Subject: eventSubject(ev.Namespace),
		Header:  nats.Header{jetstream.MsgIDHeader: []string{eventMsgID(ev.Namespace, ev.ID)}},
		Data:    encodeEvent(ev),
	}
}

// admit refuses events while the heap is close to the memory limit
// (memgate.go).
func (q *Queue) admit() error {
	if q.memory == nil {
		return nil
	}
	return q.memory.admit(q.log)
}

// PublishEvent returns once JetStream has stored the event (or recognised it
// as a duplicate), which is when the API may answer 202.
//
// It goes through the async publisher and waits for its own acknowledgement,
// rather than a request per call: concurrent API requests then share one
// pipeline of in-flight publishes instead of each paying a round trip.
//
// Close to the memory limit it stores nothing and returns a
// *MemoryHighError (ErrMemoryHigh), as PublishEvents does.
func (q *Queue) PublishEvent(ctx context.Context, ev Event) (PublishResult, error) {
	if err := ev.validate(); err != nil {
		return PublishResult{}, err
	}
	if err := q.admit(); err != nil {
		return PublishResult{}, err
	}
	if q.group != nil {
		return q.group.publish(ctx, &ev)
	}
	f, err := q.js.PublishMsgAsync(eventMsg(&ev), stallWait)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publishing event %s/%s: %w", ev.Namespace, ev.ID, err)
	}
	select {
	case ack := <-f.Ok():
		return PublishResult{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
	case err := <-f.Err():
		return PublishResult{}, fmt.Errorf("publishing event %s/%s: %w", ev.Namespace, ev.ID, err)
	case <-ctx.Done():
		return PublishResult{}, fmt.Errorf("publishing event %s/%s: %w", ev.Namespace, ev.ID, ctx.Err())
	}
}

// publishEventSync is the request-per-event alternative PublishEvent was
// measured against (BenchmarkPublish).
func (q *Queue) publishEventSync(ctx context.Context, ev Event) (PublishResult, error) {
	ack, err := q.js.PublishMsg(ctx, eventMsg(&ev))
	if err != nil {
		return PublishResult{}, fmt.Errorf("publishing event %s/%s: %w", ev.Namespace, ev.ID, err)
	}
	return PublishResult{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// PublishEvents stores a batch, for an API that accepts several events in
// one request. Results are in the order of evs. On error, some events may
// have been stored; publishing the batch again is safe because of the ids.
func (q *Queue) PublishEvents(ctx context.Context, evs []Event) ([]PublishResult, error) {
	for i := range evs {
		if err := evs[i].validate(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	if err := q.admit(); err != nil {
		return nil, err
	}
	if q.group != nil {
		return q.group.publishBatch(ctx, evs)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for i := range evs {
		f, err := q.js.PublishMsgAsync(eventMsg(&evs[i]), stallWait)
		if err != nil {
			return nil, fmt.Errorf("publishing event %s/%s: %w", evs[i].Namespace, evs[i].ID, err)
		}
		futures = append(futures, f)
	}
	res := make([]PublishResult, len(evs))
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			res[i] = PublishResult{Seq: ack.Sequence, Duplicate: ack.Duplicate}
		case err := <-f.Err():
			return nil, fmt.Errorf("publishing event %s/%s: %w", evs[i].Namespace, evs[i].ID, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("publishing events: %w", ctx.Err())
		}
	}
	return res, nil
}
