package engine

import (
	"slices"
	"sync"
	"time"
)

// Unordered sends run on goroutines kept for the next send. A goroutine
// started for each send begins on a small stack, which the HTTP client's call
// path then grows by copying (runtime.newstack → copystack): 2–6 % of the
// dispatcher's CPU in the benchmark's send-heavy phases (docs/benchmarks.md,
// "Sends on goroutines kept for the next send"). A sender that finished a
// send waits up to senderIdle for the next one, the most recently idle first
// so that the stacks in use stay warm, and exits past that wait or once the
// engine has stopped. Nothing about a send changes: its slot and its limits
// are taken and freed as before, and e.sends counts it until it is done.
const senderIdle = 5 * time.Second

type senders struct {
	// send runs one send; done marks it finished (e.sends.Done). Both are
	// set by New.
	send func(sendWork)
	done func()
	// idleWait is how long a sender waits for the next send (senderIdle).
	idleWait time.Duration

	mu      sync.Mutex
	idle    []chan sendWork // parked senders, the most recently idle last
	closed  bool
	started int // goroutines started (the tests read it)
}

type sendWork struct {
	st *endpointState
	t  *task
}

// start runs w on an idle sender, or on a new one when none is idle. It does
// not block: a parked sender's channel has room for one send.
func (p *senders) start(w sendWork) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		ch := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		ch <- w
		return
	}
	p.started++
	p.mu.Unlock()
	go p.loop(w)
}

// loop is one sender: it runs w, then whatever start hands it next.
func (p *senders) loop(w sendWork) {
	ch := make(chan sendWork, 1)
	var timer *time.Timer
	for {
		p.send(w)
		// Parked before the send counts as done, so that once every send
		// is done each sender is either parked, where close reaches it,
		// or gone.
		parked := p.park(ch)
		p.done()
		if !parked {
			return
		}
		if timer == nil {
			timer = time.NewTimer(p.idleWait)
		} else {
			timer.Reset(p.idleWait)
		}
		var ok bool
		select {
		case w, ok = <-ch:
			timer.Stop()
		case <-timer.C:
			if p.unpark(ch) {
				return
			}
			// start took this sender meanwhile and its send is on the way,
			// or close closed the channel.
			w, ok = <-ch
		}
		if !ok {
			return
		}
	}
}

// park adds ch to the idle senders; false once the engine has stopped.
func (p *senders) park(ch chan sendWork) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.idle = append(p.idle, ch)
	return true
}

// unpark takes ch out of the idle senders; false if start or close took it
// first.
func (p *senders) unpark(ch chan sendWork) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.idle, ch)
	if i < 0 {
		return false
	}
	p.idle = slices.Delete(p.idle, i, i+1)
	return true
}

// close ends the idle senders. A send started later runs on a goroutine of
// its own, which ends with it.
func (p *senders) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, ch := range p.idle {
		close(ch)
	}
	p.idle = nil
}
