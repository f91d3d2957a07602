package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/internal/queue"
)

// deliveryTap watches the dispatcher's embedded queue (the dispatcher runs with
// --nats-listen on loopback) for the deliveries the fan-out publishes, to time the
// fan-out itself apart from the sending that follows it: a core NATS subscription
// on the deliveries' subjects sees each delivery as the stream receives it.
//
// The tap decodes each delivery (queue.DecodeDeliveries: the message ids are
// hashes) and counts the distinct subscriptions of the deliveries of the event
// it is told to wait for; a hold or a retry of a delivery already seen does not
// count again.
type deliveryTap struct {
	nc  *nats.Conn
	sub *nats.Subscription

	mu     sync.Mutex
	ns, id string
	want   int
	seen   int
	first  time.Time
	pid    int
	done   chan tapDone
	counts map[string]struct{}
}

// tapDone is when the last expected delivery was seen, and the dispatcher's CPU
// time (procCPU) then.
type tapDone struct {
	at  time.Time
	cpu time.Duration
}

// deliverySubjects are where unordered deliveries are published: hl.dlv.<partition>.<ns>.<endpoint>.
const deliverySubjects = "hl.dlv.>"

func openTap(addr string) (*deliveryTap, error) {
	nc, err := nats.Connect("nats://"+addr, nats.Name("hookline-bench-tap"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connecting to the dispatcher's embedded queue at %s: %w", addr, err)
	}
	t := &deliveryTap{nc: nc}
	if t.sub, err = nc.Subscribe(deliverySubjects, t.msg); err != nil {
		nc.Close()
		return nil, err
	}
	// The fan-out of one event can be thousands of messages at once.
	if err := t.sub.SetPendingLimits(-1, -1); err != nil {
		nc.Close()
		return nil, err
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	return t, nil
}

func (t *deliveryTap) close() { t.nc.Close() }

// expect starts counting the deliveries of event id in ns; the channel gets the
// time the n-th distinct one was seen, with the CPU time of process pid then.
func (t *deliveryTap) expect(ns, id string, n, pid int) <-chan tapDone {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ns, t.id, t.want, t.seen, t.first, t.pid = ns, id, n, 0, time.Time{}, pid
	t.counts = make(map[string]struct{}, n)
	t.done = make(chan tapDone, 1)
	return t.done
}

func (t *deliveryTap) msg(m *nats.Msg) {
	now := time.Now()
	ds, err := queue.DecodeDeliveries(m.Subject, m.Data)
	if err != nil {
		return // a schedule or another kind of message on these subjects
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, d := range ds {
		t.note(&d, now)
	}
}

// note counts d, a delivery seen stored at now. Its caller holds t.mu.
func (t *deliveryTap) note(d *queue.Delivery, now time.Time) {
	if t.id == "" || d.Event.Namespace != t.ns || d.Event.ID != t.id {
		return // another event's
	}
	if _, ok := t.counts[d.SubscriptionUID]; ok {
		return // a hold or a retry of a delivery already seen
	}
	t.counts[d.SubscriptionUID] = struct{}{}
	t.seen++
	if t.seen == 1 {
		t.first = now
	}
	if t.seen == t.want {
		t.done <- tapDone{at: now, cpu: procCPU(t.pid)}
	}
}
