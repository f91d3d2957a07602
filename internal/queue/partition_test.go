package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestPartitionOfIsStableAndSpread(t *testing.T) {
	t.Parallel()
	// Part of the stored layout: these must never change.
	for _, tt := range []struct {
		ns, ep string
		want   int
	}{{"team-a", "erp", partitionOf("team-a", "erp")}} {
		if got := partitionOf(tt.ns, tt.ep); got != tt.want {
			t.Errorf("partitionOf(%q, %q) = %d, want %d", tt.ns, tt.ep, got, tt.want)
		}
	}
	used := map[int]bool{}
	for i := range 200 {
		used[partitionOf("ns", fmt.Sprintf("ep-%d", i))] = true
	}
	if len(used) != Partitions {
		t.Errorf("200 endpoints fell into %d of %d partitions", len(used), Partitions)
	}
	if p := partitionOfSubject(deliverySubject("a", "b")); p != partitionOf("a", "b") {
		t.Errorf("partitionOfSubject = %d, want %d", p, partitionOf("a", "b"))
	}
	if p := partitionOfSubject(subjDeliver + ".a.b"); p != -1 {
		t.Errorf("partitionOfSubject(legacy) = %d, want -1", p)
	}
}

// replica is one dispatcher's delivery loop in a test: it records which
// endpoints it handled and acknowledges everything.
type replica struct {
	name string
	mu   sync.Mutex
	got  map[string]int // endpoint -> deliveries
	src  *Deliveries
}

func runReplica(t *testing.T, q *Queue, name string, all *recorder) (r *replica, stop func()) {
	t.Helper()
	r = &replica{name: name, got: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	src, err := q.OpenDeliveries(ctx, 64)
	if err != nil {
		t.Fatal(err)
	}
	r.src = src
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for j := range src.Jobs() {
				d := j.Delivery()
				r.mu.Lock()
				r.got[d.Endpoint]++
				r.mu.Unlock()
				all.add(d)
				if err := j.Done(); err != nil {
					t.Errorf("Done: %v", err)
				}
			}
		})
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			rctx, c := context.WithTimeout(context.Background(), 10*time.Second)
			defer c()
			if err := src.Release(rctx); err != nil {
				t.Errorf("Release: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

func (r *replica) endpoints() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.got {
		out[k] = v
	}
	return out
}

func storeDeliveries(t *testing.T, q *Queue, endpoints []string, perEndpoint int, tag string) {
	t.Helper()
	ctx := context.Background()
	for _, ep := range endpoints {
		for i := range perEndpoint {
			d := Delivery{Event: testEvent("team-a", fmt.Sprintf("%s-%s-%d", tag, ep, i)), Subscription: "s-" + ep,
				SubscriptionUID: "u-" + ep, Endpoint: ep, Attempt: 1}
			// The test servers answer within 500 ms; under a loaded
			// machine a publish can take longer. The same delivery id
			// is stored once, so trying again is safe.
			err := q.publishAt(ctx, &d, time.Now())
			for try := 0; errors.Is(err, context.DeadlineExceeded) && try < 10; try++ {
				err = q.publishAt(ctx, &d, time.Now())
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestEachEndpointHasOneOwner runs two replicas on one server (the second
// through the network, as with an external cluster): each endpoint's
// deliveries all go to one of them, and when that one stops (letting its
// sends finish, then releasing), the other takes its endpoints over at once.
func TestEachEndpointHasOneOwner(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.Listen = "127.0.0.1:-1"
	q1 := openTest(t, cfg)
	q2 := openTest(t, Config{URL: q1.ClientURL(), MaxRequestTimeout: cfg.MaxRequestTimeout, AckWait: cfg.AckWait})

	var endpoints []string
	for i := range 24 {
		endpoints = append(endpoints, fmt.Sprintf("ep-%02d", i))
	}
	all := &recorder{}
	r1, stop1 := runReplica(t, q1, "r1", all)
	r2, _ := runReplica(t, q2, "r2", all)
	// The two split the partitions between them once each has seen the
	// other.
	eventually(t, "the partitions split between the replicas", func() bool {
		a1, a2 := r1.src.Assigned(), r2.src.Assigned()
		return len(a1) == Partitions/2 && len(a2) == Partitions/2 && len(slices.Concat(a1, a2)) == len(dedupe(slices.Concat(a1, a2)))
	})
	assigned := map[int]*replica{}
	for _, r := range []*replica{r1, r2} {
		for _, p := range r.src.Assigned() {
			assigned[p] = r
		}
	}
	// Owns, which decides who unparks an endpoint, says the same.
	for _, ep := range endpoints {
		r := assigned[partitionOf("team-a", ep)]
		if !r.src.Owns("team-a", ep) || (r == r1) == r2.src.Owns("team-a", ep) {
			t.Errorf("endpoint %s: Owns is %v on r1 and %v on r2; its partition is assigned to %s",
				ep, r1.src.Owns("team-a", ep), r2.src.Owns("team-a", ep), r.name)
		}
	}
	const per = 20
	storeDeliveries(t, q1, endpoints, per, "a")
	eventually(t, "first deliveries", func() bool { return all.len() == len(endpoints)*per })

	// Exactly one owner per endpoint.
	e1, e2 := r1.endpoints(), r2.endpoints()
	for _, ep := range endpoints {
		if e1[ep] > 0 && e2[ep] > 0 {
			t.Errorf("endpoint %s was delivered by both replicas (%d and %d)", ep, e1[ep], e2[ep])
		}
	}
	owners, err := q1.Owners(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range endpoints {
		if owners[partitionOf("team-a", ep)] == "" {
			t.Errorf("partition of %s has no pinned owner", ep)
		}
	}
	t.Logf("r1 owned %d endpoints, r2 %d", len(e1), len(e2))
	// Each endpoint went to the replica its partition is assigned to.
	for _, ep := range endpoints {
		r := assigned[partitionOf("team-a", ep)]
		if r.endpoints()[ep] != per {
			t.Errorf("endpoint %s (partition %d) got %d deliveries from %s, its partition's replica; want all %d", ep, partitionOf("team-a", ep), r.endpoints()[ep], r.name, per)
		}
	}

	// r1 stops and releases: r2 gets everything, long before PinnedTTL.
	stop1()
	stopped := time.Now()
	storeDeliveries(t, q1, endpoints, per, "b")
	eventually(t, "deliveries after r1 stopped", func() bool { return all.len() == 2*len(endpoints)*per })
	t.Logf("all endpoints delivered %s after r1 released its partitions (PinnedTTL %s)", time.Since(stopped), PinnedTTL)
	if after := r1.endpoints(); fmt.Sprint(after) != fmt.Sprint(e1) {
		t.Errorf("r1 delivered after it stopped: %v, was %v", after, e1)
	}
}

// TestLegacyDeliveriesAreStillDelivered stores deliveries as a release
// before partitioning did (on hl.dlv.<ns>.<endpoint>, with the old
// consumer reading hl.dlv.>), then opens the deliveries: they arrive.
func TestLegacyDeliveriesAreStillDelivered(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	if _, err := q.deliveries.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: consumerDeliveries, FilterSubject: subjDeliver + ".>", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: q.cfg.AckWait, MaxDeliver: -1,
	}); err != nil {
		t.Fatal(err)
	}
	const n = 10
	for i := range n {
		d := Delivery{Event: testEvent("team-a", fmt.Sprintf("old-%d", i)), Subscription: "s", SubscriptionUID: "u", Endpoint: "erp", Attempt: 1}
		m := &nats.Msg{Subject: subjDeliver + ".team-a.erp", Header: nats.Header{jetstream.MsgIDHeader: []string{deliveryMsgID(&d)}},
			Data: encodeDelivery(&d)}
		if _, err := q.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	b, err := q.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Endpoints[EndpointKey{"team-a", "erp"}]; got != n {
		t.Errorf("backlog of the legacy subject = %d, want %d", got, n)
	}
	all := &recorder{}
	runReplica(t, q, "r", all)
	storeDeliveries(t, q, []string{"erp"}, n, "new")
	eventually(t, "old and new deliveries", func() bool { return all.len() == 2*n })
}

func dedupe(xs []int) []int {
	s := slices.Clone(xs)
	slices.Sort(s)
	return slices.Compact(s)
}
