//go:build clusterprocs

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
)

// The endpoint whose limits are checked across the replicas.
const (
	rateLimit   = 50
	burst       = 5
	maxInFlight = 4
	// publishRate is a little above the limit, so the limit, not the
	// publisher, sets the pace and a backlog builds up.
	publishRate = 55
	publishFor  = 16 * time.Second
	eventType   = "order.created"
)

// receiver is one endpoint on loopback. It answers 204 after a short pause,
// so requests overlap, and records every webhook-id, when each arrived and
// the most requests it had in flight at once.
type receiver struct {
	srv   *httptest.Server
	delay time.Duration

	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	got         map[string]int
	times       []time.Time
}

func newReceiver(t *testing.T, delay time.Duration) *receiver {
	r := &receiver{delay: delay, got: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	r.inFlight++
	r.maxInFlight = max(r.maxInFlight, r.inFlight)
	r.mu.Unlock()
	time.Sleep(r.delay)
	r.mu.Lock()
	r.inFlight--
	r.got[id]++
	r.times = append(r.times, time.Now())
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// which says, for each of ids, whether the receiver has it.
func (r *receiver) which(ids []string) []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]bool, len(ids))
	for i, id := range ids {
		out[i] = r.got[id] > 0
	}
	return out
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.times)
}

func (r *receiver) has(ids []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if r.got[id] == 0 {
			return false
		}
	}
	return true
}

// rate is deliveries per second from the first to the last, and the most
// deliveries in any window of w.
func (r *receiver) rate(w time.Duration) (perSecond float64, maxInWindow int) {
	r.mu.Lock()
	ts := slices.Clone(r.times)
	r.mu.Unlock()
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	if len(ts) < 2 {
		return 0, len(ts)
	}
	j := 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		maxInWindow = max(maxInWindow, i-j+1)
	}
	return float64(len(ts)-1) / ts[len(ts)-1].Sub(ts[0]).Seconds(), maxInWindow
}

// scenario is one run: a namespace with a rate-limited endpoint and an
// unlimited one, both subscribed to every event; events published for
// publishFor at publishRate through the replicas that answer; fault run once
// the limited endpoint is busy; then the checks.
//
// lossyCounts is for a scenario that kills a dispatcher: the deliveries it
// made since its last report (every --status-interval) are at the receiver
// but in no figure, so status may count fewer than the receiver saw, never
// more.
func (e *env) scenario(t *testing.T, name string, lossyCounts bool, fault func(t *testing.T, progress func(n int))) {
	ctx := context.Background()
	start := time.Now()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-"}}
	if err := e.kube.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	limited, free := newReceiver(t, 20*time.Millisecond), newReceiver(t, 5*time.Millisecond)
	eps := []*hooklinev1.WebhookEndpoint{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "limited"}, Spec: hooklinev1.WebhookEndpointSpec{
			URL: limited.srv.URL + "/hooks", AllowInsecureHTTP: true,
			Limits: &hooklinev1.EndpointLimits{RateLimit: ptr.To[int32](rateLimit), Burst: ptr.To[int32](burst),
				MaxInFlight: ptr.To[int32](maxInFlight), Timeout: hooklinev1.DurationOf(maxRequestTimeout)},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "free"}, Spec: hooklinev1.WebhookEndpointSpec{
			URL: free.srv.URL + "/hooks", AllowInsecureHTTP: true,
			Limits: &hooklinev1.EndpointLimits{MaxInFlight: ptr.To[int32](8), Timeout: hooklinev1.DurationOf(maxRequestTimeout)},
		}},
	}
	subs := map[*receiver]*hooklinev1.Subscription{}
	for i, ep := range eps {
		if err := e.kube.Create(ctx, ep); err != nil {
			t.Fatal(err)
		}
		s := &hooklinev1.Subscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "to-" + ep.Name},
			Spec: hooklinev1.SubscriptionSpec{EndpointRef: hooklinev1.EndpointRef{Name: ep.Name}, EventTypes: []string{eventType}}}
		if err := e.kube.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		subs[[]*receiver{limited, free}[i]] = s
	}
	idsOf := func(r *receiver, events []string) []string {
		out := make([]string, len(events))
		for i, ev := range events {
			out[i] = delivery.WebhookIDOf(ns.Name, ev, string(subs[r].UID))
		}
		return out
	}

	probes := e.probe(t, name, ns.Name, limited, free, idsOf)
	baseline := limited.count()

	// Publish in the background while the fault happens.
	var (
		pubMu    sync.Mutex
		accepted []string
		tried    = map[string]bool{}
		refused  int
	)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		tick := time.NewTicker(time.Second / publishRate)
		defer tick.Stop()
		end := time.Now().Add(publishFor)
		for n := 0; time.Now().Before(end); n++ {
			<-tick.C
			id := fmt.Sprintf("e-%05d", n)
			pubMu.Lock()
			tried[id] = true
			pubMu.Unlock()
			ok := false
			// A producer retries an event with the same id elsewhere; it is
			// stored once.
			for try := 0; try < 2*len(e.disp) && !ok; try++ {
				d := e.disp[(n+try)%len(e.disp)]
				ok = publishTo(ctx, d.api, ns.Name, id) == nil
			}
			pubMu.Lock()
			if ok {
				accepted = append(accepted, id)
			} else {
				refused++
			}
			pubMu.Unlock()
		}
	}()
	waitFor(t, "the limited endpoint to be busy", 60*time.Second, func() bool { return limited.count() >= baseline+100 })
	faultAt := time.Now()
	// progress waits until the limited endpoint has had n more deliveries.
	// It logs how long the endpoint went without a delivery: the time
	// ownership took to move, when the fault took its owner.
	progress := func(n int) {
		from, since := limited.count(), time.Now()
		waitFor(t, "a delivery to the limited endpoint", time.Minute, func() bool { return limited.count() > from })
		t.Logf("%s: the limited endpoint delivered again %s after the fault", name, time.Since(since).Round(10*time.Millisecond))
		waitFor(t, fmt.Sprintf("%d more deliveries to the limited endpoint", n), time.Minute, func() bool { return limited.count() >= from+n })
	}
	fault(t, progress)
	t.Logf("%s: fault done after %s", name, time.Since(faultAt).Round(time.Millisecond))
	<-pubDone
	pubMu.Lock()
	events := slices.Clone(accepted)
	pubMu.Unlock()

	// Every accepted event reaches both receivers.
	allThere := func() bool { return limited.has(idsOf(limited, events)) && free.has(idsOf(free, events)) }
	for end := time.Now().Add(3 * time.Minute); !allThere(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			e.checkNoDrops(t, ns.Name)
			e.dumpDiagnostics(t, ns.Name)
			t.Fatalf("%s: timed out after 3m waiting for every accepted event at both receivers", name)
		}
	}
	e.checkNoDrops(t, ns.Name)

	for _, r := range []*receiver{limited, free} {
		want := map[string]bool{}
		for _, id := range idsOf(r, append(slices.Clone(probes), keys(tried)...)) {
			want[id] = true
		}
		r.mu.Lock()
		dups := 0
		for id, n := range r.got {
			if !want[id] {
				t.Errorf("%s: receiver %s got webhook-id %s, which is no event published", name, subs[r].Spec.EndpointRef.Name, id)
			}
			dups += n - 1
		}
		maxSeen := r.maxInFlight
		r.mu.Unlock()
		limit := 8
		if r == limited {
			limit = maxInFlight
		}
		if maxSeen > limit {
			t.Errorf("%s: endpoint %s had %d requests in flight at once, maxInFlight is %d", name, subs[r].Spec.EndpointRef.Name, maxSeen, limit)
		}
		t.Logf("%s: %s received %d deliveries for %d accepted events (%d duplicates, same webhook-id), at most %d in flight",
			name, subs[r].Spec.EndpointRef.Name, r.count(), len(events)+len(probes), dups, maxSeen)
	}
	// Status: the endpoints' and subscriptions' figures, merged from every
	// replica's reports by the lease holder, equal what the receivers saw.
	for _, r := range []*receiver{limited, free} {
		e.checkStatus(t, name, ns.Name, subs[r], r, lossyCounts)
	}

	perSecond, inWindow := limited.rate(5 * time.Second)
	t.Logf("%s: limited endpoint: %.1f/s from first to last delivery, at most %d in any 5 s (limit %d/s, burst %d); %d events accepted, %d refused; took %s",
		name, perSecond, inWindow, rateLimit, burst, len(events), refused, time.Since(start).Round(time.Second))
	if perSecond > rateLimit*1.1 {
		t.Errorf("%s: the limited endpoint received %.1f/s across the replicas, more than %d/s + 10%%", name, perSecond, rateLimit)
	}
	if limitIn5s := int(5*rateLimit*1.1) + burst; inWindow > limitIn5s {
		t.Errorf("%s: the limited endpoint received %d deliveries in 5 s, more than %d (5 s at %d/s + 10%%, plus the burst)", name, inWindow, limitIn5s, rateLimit)
	}
}

// probe returns once every replica knows both subscriptions of namespace
// ns, with the ids of the probes it published. A subscription takes effect
// on a replica when its registry sees it, and an event is matched once, by
// the replica that holds the fan-out at the time: an event published a few
// milliseconds after the subscription was created may be matched by a
// replica that has not seen it yet, and is then (rightly) never delivered to
// it. So probes go in rounds, one through each replica, until a whole round
// reaches both receivers; the probes of earlier rounds are allowed at the
// receivers but not required.
func (e *env) probe(t *testing.T, name, ns string, limited, free *receiver, idsOf func(*receiver, []string) []string) []string {
	t.Helper()
	var probes []string
	deadline := time.Now().Add(90 * time.Second)
	for round := 0; ; round++ {
		var ids []string
		for i, d := range e.disp {
			id := fmt.Sprintf("probe-%d-%d", round, i)
			waitFor(t, "a probe accepted by "+d.name, 60*time.Second, func() bool { return publishTo(context.Background(), d.api, ns, id) == nil })
			ids = append(ids, id)
		}
		probes = append(probes, ids...)
		arrived := func() bool { return limited.has(idsOf(limited, ids)) && free.has(idsOf(free, ids)) }
		for roundEnd := time.Now().Add(5 * time.Second); time.Now().Before(roundEnd) && !arrived(); {
			time.Sleep(100 * time.Millisecond)
		}
		if arrived() {
			if round > 0 {
				t.Logf("%s: probe round %d was the first to reach both receivers in full", name, round)
			}
			return probes
		}
		t.Logf("%s: probe round %d: limited has %v, free has %v of %v", name, round,
			limited.which(idsOf(limited, ids)), free.which(idsOf(free, ids)), ids)
		if time.Now().After(deadline) {
			e.checkNoDrops(t, ns)
			e.dumpDiagnostics(t, ns)
			t.Fatalf("%s: no round of probes reached both receivers within 90 s", name)
		}
	}
}

// checkStatus waits until the status of the subscription sub and of its
// endpoint counts every request receiver r answered (each was a 2xx, so a
// delivery; an attempt the dispatcher gave up on as a timeout counts as
// failed instead), then checks it counts none more.
func (e *env) checkStatus(t *testing.T, name, ns string, sub *hooklinev1.Subscription, r *receiver, lossy bool) {
	t.Helper()
	ctx := context.Background()
	read := func() (ep, s hooklinev1.DeliveryStatus) {
		var whep hooklinev1.WebhookEndpoint
		if err := e.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: sub.Spec.EndpointRef.Name}, &whep); err == nil && whep.Status.Delivery != nil {
			ep = *whep.Status.Delivery
		}
		var cur hooklinev1.Subscription
		if err := e.kube.Get(ctx, client.ObjectKeyFromObject(sub), &cur); err == nil && cur.Status.Delivery != nil {
			s = *cur.Status.Delivery
		}
		return ep, s
	}
	// A figure in status counts a request that had been answered when status
	// was read, so every read is checked against the receiver's count taken
	// after it: status never counts more. Duplicates (held or parked copies
	// of deliveries that were also sent) may still be arriving after every
	// event has, so a count taken before the test looked at status would
	// not do. Status has caught up once it counts at least what the
	// receiver had answered before the read.
	over := func(ep, s hooklinev1.DeliveryStatus, after int64) {
		for what, d := range map[string]hooklinev1.DeliveryStatus{"WebhookEndpoint " + sub.Spec.EndpointRef.Name: ep, "Subscription " + sub.Name: s} {
			if d.Delivered > after {
				t.Errorf("%s: %s status counts %d delivered, the receiver had answered only %d requests", name, what, d.Delivered, after)
			}
		}
	}
	caughtUp := func(ep, s hooklinev1.DeliveryStatus, before int64) bool {
		return ep.Delivered+ep.Failed >= before && s.Delivered+s.Failed >= before
	}
	if lossy {
		// Give the reports of the live replicas time to land.
		time.Sleep(5 * time.Second)
	}
	var before, after int64
	var ep, s hooklinev1.DeliveryStatus
	deadline := time.Now().Add(30 * time.Second)
	for {
		before = int64(r.count())
		ep, s = read()
		after = int64(r.count())
		over(ep, s, after)
		if lossy || caughtUp(ep, s, before) || time.Now().After(deadline) || t.Failed() {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%s: %s: the receiver answered %d requests (%d when status was read); endpoint status delivered %d, failed %d; subscription status delivered %d, failed %d",
		name, sub.Spec.EndpointRef.Name, before, after, ep.Delivered, ep.Failed, s.Delivered, s.Failed)
	if !lossy && !caughtUp(ep, s, before) {
		t.Errorf("%s: status counts %d (endpoint) and %d (subscription) delivered and failed, the receiver had answered %d requests", name,
			ep.Delivered+ep.Failed, s.Delivered+s.Failed, before)
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func publishTo(ctx context.Context, api, ns, id string) error {
	body, _ := json.Marshal(map[string]any{"id": id, "type": eventType, "data": map[string]string{"id": id}})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+api+"/v1/namespaces/"+ns+"/events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

func TestCluster(t *testing.T) {
	e := setup(t)

	t.Run("kill -9 a NATS node and bring it back", func(t *testing.T) {
		e.scenario(t, "nats-kill", false, func(t *testing.T, progress func(int)) {
			nd := e.nats[0]
			nd.kill()
			// Deliveries go on without it.
			progress(100)
			e.restartNATS(t, nd)
		})
	})
	t.Run("kill -9 a dispatcher replica", func(t *testing.T) {
		e.scenario(t, "disp-kill", true, func(t *testing.T, progress func(int)) {
			d := e.disp[0]
			d.kill()
			progress(100)
			e.restartDispatcher(t, d)
		})
	})
	t.Run("rolling restart of every dispatcher", func(t *testing.T) {
		e.scenario(t, "rolling", false, func(t *testing.T, _ func(int)) {
			for _, d := range e.disp {
				d.stop(30 * time.Second)
				e.restartDispatcher(t, d)
			}
		})
	})
	t.Run("a NATS node paused for 30 s", func(t *testing.T) {
		e.scenario(t, "nats-pause", false, func(t *testing.T, _ func(int)) {
			nd := e.nats[1]
			if err := nd.signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			// The pause is the fault itself: a partition of 30 s.
			time.Sleep(30 * time.Second)
			if err := nd.signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		})
	})
}
