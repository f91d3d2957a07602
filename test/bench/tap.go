package main

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// deliveryTap watches the dispatcher's embedded queue (the dispatcher runs with
// --nats-listen on loopback) for the deliveries the fan-out publishes, to time the
// fan-out itself apart from the sending that follows it: a core NATS subscription
// on the deliveries' subjects sees each delivery as the stream receives it.
//
// The fan-out stores the deliveries of one event with the message id
// "namespace/event id/subscription uid/attempt" (queue.deliveryMsgID; a hold or
// a replay adds a suffix); the tap counts the distinct subscriptions of the
// messages whose id has the prefix it is told to wait for.
type deliveryTap struct {
	nc  *nats.Conn
	sub *nats.Subscription

	mu     sync.Mutex
	prefix string
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
	t.prefix, t.want, t.seen, t.first, t.pid = ns+"/"+id+"/", n, 0, time.Time{}, pid
	t.counts = make(map[string]struct{}, n)
	t.done = make(chan tapDone, 1)
	return t.done
}

func (t *deliveryTap) msg(m *nats.Msg) {
	id := m.Header.Get(nats.MsgIdHdr)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.prefix == "" || !strings.HasPrefix(id, t.prefix) {
		return // another event's
	}
	uid, _, _ := strings.Cut(id[len(t.prefix):], "/")
	if _, ok := t.counts[uid]; ok {
		return // a hold or a retry of a delivery already seen
	}
	t.counts[uid] = struct{}{}
	t.seen++
	if t.seen == 1 {
		t.first = now
	}
	if t.seen == t.want {
		t.done <- tapDone{at: now, cpu: procCPU(t.pid)}
	}
}
