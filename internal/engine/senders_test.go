package engine

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testSenders is a sender pool whose sends call send and count in wg.
func testSenders(idleWait time.Duration, send func(sendWork)) (*senders, *sync.WaitGroup) {
	var wg sync.WaitGroup
	return &senders{send: send, done: wg.Done, idleWait: idleWait}, &wg
}

// wantRan fails the test unless ran counted n sends.
func wantRan(t *testing.T, ran *atomic.Int64, n int64) {
	t.Helper()
	if got := ran.Load(); got != n {
		t.Fatalf("%d sends ran, want %d", got, n)
	}
}

// sendOne starts one send on p and waits until it is done.
func sendOne(t *testing.T, p *senders, wg *sync.WaitGroup) {
	t.Helper()
	wg.Add(1)
	p.start(sendWork{})
	waitGroup(t, wg)
}

// waitGroup waits for wg, failing the test after a few seconds.
func waitGroup(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the sends to be done: a send was lost")
	}
}

func TestSendersReuseIdleGoroutines(t *testing.T) {
	release := make(chan struct{})
	var ran atomic.Int64
	p, wg := testSenders(time.Minute, func(sendWork) {
		<-release
		ran.Add(1)
	})
	defer p.close()

	// Eight sends at once need eight senders.
	for range 8 {
		wg.Add(1)
		p.start(sendWork{})
	}
	close(release)
	waitGroup(t, wg)
	if idle, started := p.counts(); idle != 8 || started != 8 {
		t.Fatalf("after 8 concurrent sends: %d idle, %d started; want 8 and 8", idle, started)
	}

	// The next eight run on them: no goroutine is started.
	for range 8 {
		wg.Add(1)
		p.start(sendWork{})
	}
	waitGroup(t, wg)
	wantRan(t, &ran, 16)
	if idle, started := p.counts(); idle != 8 || started != 8 {
		t.Fatalf("after 8 more sends: %d idle, %d started; want 8 and 8 (reused)", idle, started)
	}
}

func TestSendersExitWhenIdle(t *testing.T) {
	var ran atomic.Int64
	p, wg := testSenders(20*time.Millisecond, func(sendWork) { ran.Add(1) })
	defer p.close()

	sendOne(t, p, wg)
	eventually(t, "the idle sender to exit", func() bool { idle, _ := p.counts(); return idle == 0 })

	// A send after that starts a goroutine again.
	sendOne(t, p, wg)
	if _, started := p.counts(); started != 2 {
		t.Fatalf("%d goroutines started, want 2", started)
	}
	wantRan(t, &ran, 2)
}

func TestSendersClose(t *testing.T) {
	var ran atomic.Int64
	p, wg := testSenders(time.Minute, func(sendWork) { ran.Add(1) })
	for range 4 {
		wg.Add(1)
		p.start(sendWork{})
	}
	waitGroup(t, wg)
	eventually(t, "the senders to park", func() bool { idle, _ := p.counts(); return idle > 0 })

	p.close()
	if idle, _ := p.counts(); idle != 0 {
		t.Fatalf("%d senders idle after close, want 0", idle)
	}
	// A send after close still runs, on a goroutine that does not park.
	sendOne(t, p, wg)
	if idle, _ := p.counts(); idle != 0 {
		t.Fatalf("%d senders idle after a send that followed close, want 0", idle)
	}
	wantRan(t, &ran, 5)
}

// TestSendersEveryWorkRunsOnce hands work to senders whose idle wait runs out
// all the time, so that start and a sender giving up race: each send must run
// exactly once and be counted done.
func TestSendersEveryWorkRunsOnce(t *testing.T) {
	const n = 20000
	tasks := make([]task, n)
	index := make(map[*task]int, n)
	for i := range tasks {
		index[&tasks[i]] = i
	}
	seen := make([]atomic.Int32, n)
	p, wg := testSenders(50*time.Microsecond, func(w sendWork) {
		seen[index[w.t]].Add(1)
	})
	defer p.close()
	var producers sync.WaitGroup
	for g := range 4 {
		producers.Go(func() {
			for i := g; i < n; i += 4 {
				wg.Add(1)
				p.start(sendWork{t: &tasks[i]})
				if i%64 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
		})
	}
	producers.Wait()
	waitGroup(t, wg)
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("send %d ran %d times, want 1", i, c)
		}
	}
}

// counts reports the parked senders and the goroutines started so far.
func (p *senders) counts() (idle, started int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle), p.started
}
