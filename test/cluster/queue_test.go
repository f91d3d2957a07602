package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/queue"
)

// queueReplica is the queue half of a dispatcher, in this process: its own
// connection to the cluster, a fan-out matching every event to every
// endpoint, and workers that acknowledge each delivery after a short pause.
type queueReplica struct {
	name   string
	q      *queue.Queue
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// owners tracks, across replicas, which replicas have a delivery of each
// endpoint in flight.
type owners struct {
	mu       sync.Mutex
	inFlight map[string]map[string]int // endpoint -> replica -> requests
	last     map[string]string         // endpoint -> replica that last delivered it
	moves    int
	overlaps int
	got      map[string]int      // event/endpoint -> deliveries
	ordered  []string            // the ordered subscription's deliveries, as taken
	fanned   map[string][]string // event -> the replicas that fanned it out, in turn
	// laneFailures counts the failed tries to create the ordered lane.
	laneFailures int
}

func (o *owners) begin(ep, replica string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.inFlight[ep]
	if m == nil {
		m = map[string]int{}
		o.inFlight[ep] = m
	}
	m[replica]++
	for r, n := range m {
		if r != replica && n > 0 {
			o.overlaps++
		}
	}
	if prev, ok := o.last[ep]; ok && prev != replica {
		o.moves++
	}
	o.last[ep] = replica
}

func (o *owners) end(ep, replica, key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight[ep][replica]--
	o.got[key]++
}

func startQueueReplica(t *testing.T, name, urls string, endpoints []string, o *owners) *queueReplica {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, queue.Config{URL: urls, Replicas: 3, MaxRequestTimeout: time.Second, AckWait: 2 * time.Second},
		testr.NewWithInterface(t, testr.Options{LogTimestamp: true}).WithName(name))
	if err != nil {
		t.Fatalf("%s: opening the queue: %v", name, err)
	}
	r := &queueReplica{name: name, q: q}
	runCtx, stop := context.WithCancel(context.Background())
	r.cancel = stop
	f, err := q.OpenFanout(runCtx)
	if err != nil {
		t.Fatal(err)
	}
	src, err := q.OpenDeliveries(runCtx, 64)
	if err != nil {
		t.Fatal(err)
	}
	// One ordered subscription, to the first endpoint: its lane is created
	// by the fan-out, as the engine does (and, as the engine does, when
	// that fails the delivery is stored anyway and the lane is created
	// later, from a goroutine of its own), and pulled by the endpoint's
	// owner.
	var ensured, ensuring atomic.Bool
	ensure := func() {
		if ensured.Load() || !ensuring.CompareAndSwap(false, true) {
			return
		}
		r.done.Go(func() {
			defer ensuring.Store(false)
			for runCtx.Err() == nil {
				if err := q.EnsureOrdered(runCtx, "team-a", orderedSub, endpoints[0]); err == nil {
					ensured.Store(true)
					return
				}
				o.mu.Lock()
				o.laneFailures++
				o.mu.Unlock()
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	for range f.Workers() {
		r.done.Go(func() {
			for b := range f.Batches() {
				ms := make([]queue.Matched, len(b.Events()))
				o.mu.Lock()
				for _, ev := range b.Events() {
					o.fanned[ev.ID] = append(o.fanned[ev.ID], name)
				}
				o.mu.Unlock()
				ensure()
				for i := range ms {
					for _, ep := range endpoints {
						ms[i].Deliveries = append(ms[i].Deliveries, queue.Delivery{Subscription: "to-" + ep, SubscriptionUID: "uid-" + ep, Endpoint: ep})
					}
					ms[i].Deliveries = append(ms[i].Deliveries, queue.Delivery{Subscription: orderedSub, SubscriptionUID: "uid-ordered",
						Endpoint: endpoints[0], Ordered: true})
				}
				b.Store(ms)
			}
		})
	}
	r.done.Go(func() {
		for {
			select {
			case lane := <-src.Lanes():
				r.done.Go(func() {
					for j := range lane.Jobs() {
						d := j.Delivery()
						o.begin(d.Endpoint, name)
						time.Sleep(2 * time.Millisecond)
						o.end(d.Endpoint, name, d.Event.ID+"/"+orderedSub)
						o.mu.Lock()
						o.ordered = append(o.ordered, d.Event.ID)
						o.mu.Unlock()
						if err := j.Done(); err != nil {
							t.Logf("%s: Done: %v", name, err)
						}
					}
				})
			case <-runCtx.Done():
				return
			}
		}
	})
	for range 8 {
		r.done.Go(func() {
			for j := range src.Jobs() {
				d := j.Delivery()
				o.begin(d.Endpoint, name)
				time.Sleep(2 * time.Millisecond)
				o.end(d.Endpoint, name, d.Event.ID+"/"+d.Endpoint)
				if err := j.Done(); err != nil {
					t.Logf("%s: Done: %v", name, err)
				}
			}
		})
	}
	t.Cleanup(func() { r.stop(false) })
	return r
}

// orderedSub is the ordered subscription of every replica's fan-out.
const orderedSub = "ordered"

// stop ends the replica. graceful: as a dispatcher on SIGTERM (sends
// finish, then its partitions are released). Otherwise as a crash: the
// connection is cut with nothing handed over.
func (r *queueReplica) stop(graceful bool) {
	if r.cancel == nil {
		return
	}
	if !graceful {
		r.q.Conn().Close()
	}
	r.cancel()
	r.done.Wait()
	r.cancel = nil
	r.q.Close()
}

// TestQueueReplicasOnNATSCluster runs three queue replicas in this process
// against three nats-server processes (streams with three replicas) and
// breaks things mid-stream: a NATS node killed and restarted, a replica cut
// off as in a crash, a NATS node paused. Every accepted event must reach
// every endpoint. It needs no Kubernetes API, so it checks the queue's
// ownership where TestCluster checks whole dispatchers. An ordered
// subscription to one of the endpoints, whose lane only that endpoint's
// owner pulls, must get every event too.
func TestQueueReplicasOnNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster; skipped with -short")
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: t.TempDir()}
	e.startNATS(t, natsServerBinary(t, root))

	var endpoints []string
	for i := range 12 {
		endpoints = append(endpoints, fmt.Sprintf("ep-%02d", i))
	}
	o := &owners{inFlight: map[string]map[string]int{}, last: map[string]string{}, got: map[string]int{}, fanned: map[string][]string{}}
	var reps []*queueReplica
	for i := range 3 {
		reps = append(reps, startQueueReplica(t, fmt.Sprintf("replica-%d", i), e.natsURLs(), endpoints, o))
	}
	delivered := func() int {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.got)
	}

	const events = 1500
	var (
		pubMu    sync.Mutex
		accepted []string
		// retried is the events accepted only after a failed publish,
		// which may have been stored after later ones (the client resends
		// what it buffered when it reconnects).
		retried = map[string]bool{}
	)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for n := range events {
			id := fmt.Sprintf("e-%05d", n)
			ev := queue.Event{Namespace: "team-a", ID: id, Type: "order.created", Time: time.Now(), Data: []byte(`{}`)}
			for try := range 20 {
				r := reps[(n+try)%len(reps)]
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := r.q.PublishEvent(ctx, ev)
				cancel()
				if err == nil {
					pubMu.Lock()
					accepted = append(accepted, id)
					if try > 0 {
						retried[id] = true
					}
					pubMu.Unlock()
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	progress := func(what string, n int) {
		from := delivered()
		waitFor(t, what, 2*time.Minute, func() bool { return delivered() >= from+n })
	}

	progress("deliveries before any fault", 500)
	t.Log("kill -9 of NATS node 0")
	e.nats[0].kill()
	progress("deliveries without NATS node 0", 500)
	e.restartNATS(t, e.nats[0])
	t.Log("NATS node 0 is back")

	// Cut off the replica that delivered last: a crash, nothing handed over.
	o.mu.Lock()
	victim := o.last[endpoints[0]]
	o.mu.Unlock()
	for _, r := range reps {
		if r.name == victim {
			t.Logf("crash of %s", r.name)
			r.stop(false)
		}
	}
	progress("deliveries after the crash", 500)

	t.Log("SIGSTOP of NATS node 1 for 15 s")
	if err := e.nats[1].signal(sigStop); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second) // the pause is the fault itself
	if err := e.nats[1].signal(sigCont); err != nil {
		t.Fatal(err)
	}
	<-pubDone

	pubMu.Lock()
	ids := append([]string(nil), accepted...)
	pubMu.Unlock()
	waitFor(t, "every accepted event at every endpoint", 3*time.Minute, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, id := range ids {
			for _, ep := range endpoints {
				if o.got[id+"/"+ep] == 0 {
					return false
				}
			}
			if o.got[id+"/"+orderedSub] == 0 {
				return false
			}
		}
		return true
	})
	// The lane hands out its deliveries in the order they were stored on
	// it, and the fan-out stores them in the order of the events: through
	// the NATS node's kill and pause (a publish it could not store is
	// retried before the lane's next; a lane that cannot be created yet
	// does not hold its event back), and when the fan-out moves to another
	// replica (the new holder first fans out what the old one left
	// unresolved, fantakeover.go). Left out: events whose publish the
	// producer retried (the client resends what it buffered when it
	// reconnects, after the retry on another replica went through, so the
	// event may be stored after later ones).
	o.mu.Lock()
	last, seen, outOfOrder := "", map[string]bool{}, 0
	for _, id := range o.ordered {
		if seen[id] || retried[id] {
			seen[id] = true
			continue
		}
		seen[id] = true
		if id < last {
			outOfOrder++
			if outOfOrder <= 10 {
				t.Logf("ordered lane: %s (fanned out by %v) taken after %s (by %v)", id, o.fanned[id], last, o.fanned[last])
			}
		}
		last = max(last, id)
	}
	t.Logf("ordered lane: %d deliveries of %d events (%d accepted after a retried publish); %d taken after a later event; %d failed tries to create the lane",
		len(o.ordered), len(seen), len(retried), outOfOrder, o.laneFailures)
	if outOfOrder != 0 {
		t.Errorf("the ordered lane took %d events after a later one", outOfOrder)
	}
	dups := 0
	for _, n := range o.got {
		dups += n - 1
	}
	t.Logf("%d of %d events accepted; %d deliveries, %d duplicates; endpoint owner changes %d, deliveries started while another replica had one of the same endpoint in flight %d",
		len(ids), events, len(o.got)+dups, dups, o.moves, o.overlaps)
	o.mu.Unlock()
}

// waitFor polls cond until it holds or timeout passes; it asserts outcomes,
// never speed.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
