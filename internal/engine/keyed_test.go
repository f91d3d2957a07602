package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
)

// TestOrderingKeyPicksTheLane: a subscription ordered per key sends each
// event to the lane of its key; an event without the key goes to the empty
// key's lane and is counted, not dropped; and the keyed lanes deliver.
func TestOrderingKeyPicksTheLane(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) { w.WriteHeader(http.StatusNoContent) })
	f.endpoint("erp", rc)
	lanes := int32(4)
	keyed := func(name, key string) {
		f.subscription(name, "erp", func(s *hooklinev1.Subscription) {
			s.Spec.Delivery = &hooklinev1.DeliveryPolicy{Ordering: hooklinev1.OrderingOrdered, OrderingKey: key, OrderingLanes: &lanes}
		})
	}
	keyed("by-id", "data.id")             // event data is {"id": <event id>, "amount": 42}
	keyed("by-customer", "data.customer") // missing: the empty key
	keyed("by-amount", "data.amount")     // a number, not a string: the empty key
	eng := f.start(testOptions())

	ds, err := eng.Match(context.Background(), event("e7"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"by-id": queue.KeyLane("e7", 4), "by-customer": queue.KeyLane("", 4), "by-amount": queue.KeyLane("", 4)}
	if len(ds) != len(want) {
		t.Fatalf("Match gave %d deliveries, want %d", len(ds), len(want))
	}
	for _, d := range ds {
		if !d.Ordered || d.Lane != want[d.Subscription] {
			t.Errorf("%s: ordered %v, lane %d; want ordered on lane %d", d.Subscription, d.Ordered, d.Lane, want[d.Subscription])
		}
	}
	for _, sub := range []string{"by-customer", "by-amount"} {
		if got := metricValue(f.eng.m.keyMissing.WithLabelValues(ns, sub)); got != 1 {
			t.Errorf("%s: ordering key missing metric %v, want 1", sub, got)
		}
	}
	if got := metricValue(f.eng.m.keyMissing.WithLabelValues(ns, "by-id")); got != 0 {
		t.Errorf("by-id: ordering key missing metric %v, want 0", got)
	}

	const n = 12
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("k%d", i))
	}
	f.publish(ids...)
	eventually(t, "every delivery of the three subscriptions", func() bool { return rc.count() >= 3*n })
}

// TestInvalidOrderingKeyIsUnusable: the dispatcher refuses a key that does
// not give a string, naming the field, like the operator does.
func TestInvalidOrderingKeyIsUnusable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) { w.WriteHeader(http.StatusNoContent) })
	f.endpoint("erp", rc)
	f.subscription("bad", "erp", func(s *hooklinev1.Subscription) {
		s.Spec.Delivery = &hooklinev1.DeliveryPolicy{Ordering: hooklinev1.OrderingOrdered, OrderingKey: "data.amount > 3"}
	})
	f.build()
	s := f.reg.Subscription(ns, "bad")
	if s == nil || s.Usable || s.Reason != hooklinev1.ReasonInvalidOrderingKey || !strings.Contains(s.Message, "spec.delivery.orderingKey does not compile") {
		t.Fatalf("subscription %+v, want unusable with reason InvalidOrderingKey", s)
	}
}

// TestFailingKeyHoldsOnlyItsOwn: many keys on two lanes, one key whose
// receiver keeps answering 503. While it fails, every other key is delivered
// in order, those that share its lane too; once it recovers, its own
// deliveries arrive in publish order, the held head first.
func TestFailingKeyHoldsOnlyItsOwn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const bad, keys, perKey = "bad", 16, 6
	var failing atomic.Bool
	failing.Store(true)
	type body struct {
		Data struct {
			Customer string `json:"customer"`
			Seq      int    `json:"seq"`
		} `json:"data"`
	}
	decode := func(r request) body {
		var b body
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Errorf("request %d: %v", r.n, err)
		}
		return b
	}
	var mu sync.Mutex
	var ok []body      // answered 204, in arrival order
	var badTries []int // the failing key's deliveries answered 500
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		b := decode(r)
		mu.Lock()
		defer mu.Unlock()
		if b.Data.Customer == bad && failing.Load() {
			badTries = append(badTries, b.Data.Seq)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ok = append(ok, b)
		w.WriteHeader(http.StatusNoContent)
	})
	f.endpoint("erp", rc)
	lanes := int32(2)
	retries := make([]hooklinev1.Duration, 50) // the head outlives the test: it never becomes a dead letter
	for i := range retries {
		retries[i] = hooklinev1.Duration{Duration: metav1.Duration{Duration: 500 * time.Millisecond}}
	}
	f.subscription("per-customer", "erp", func(s *hooklinev1.Subscription) {
		s.Spec.Delivery = &hooklinev1.DeliveryPolicy{Ordering: hooklinev1.OrderingOrdered, OrderingKey: "data.customer",
			OrderingLanes: &lanes, Schedule: retries}
	})
	opts := testOptions()
	opts.Breaker.Threshold = 1000 // the one failing key is not the endpoint failing
	f.start(opts)

	names := []string{bad}
	for k := range keys {
		names = append(names, fmt.Sprintf("cus-%02d", k))
	}
	peers := 0
	for _, k := range names[1:] {
		if queue.KeyLane(k, int(lanes)) == queue.KeyLane(bad, int(lanes)) {
			peers++
		}
	}
	if peers == 0 {
		t.Fatal("no key shares the failing key's lane")
	}
	var evs []queue.Event
	for seq := range perKey {
		for _, k := range names {
			evs = append(evs, queue.Event{Namespace: ns, ID: fmt.Sprintf("%s-%d", k, seq), Type: "invoice.paid", Time: time.Now(),
				Data: json.RawMessage(fmt.Sprintf(`{"customer":%q,"seq":%d}`, k, seq))})
		}
	}
	if _, err := f.q.PublishEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	delivered := func() map[string][]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string][]int{}
		for _, b := range ok {
			out[b.Data.Customer] = append(out[b.Data.Customer], b.Data.Seq)
		}
		return out
	}
	eventually(t, "every other key, its lane's peers too, while the failing key fails", func() bool {
		got := delivered()
		for _, k := range names[1:] {
			if len(got[k]) < perKey {
				return false
			}
		}
		return true
	})
	eventually(t, "the failing key retried", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(badTries) >= 3
	})
	mu.Lock()
	if len(badTries) < 2 {
		t.Errorf("the failing key was tried %d times, want it retried", len(badTries))
	}
	for _, seq := range badTries {
		if seq != 0 {
			t.Errorf("the failing key's delivery %d was sent while its head had not gone through: %v", seq, badTries)
		}
	}
	failing.Store(false)
	mu.Unlock()
	eventually(t, "the failing key's deliveries", func() bool { return len(delivered()[bad]) >= perKey })
	got := delivered()
	for _, k := range names {
		if fmt.Sprint(got[k]) != fmt.Sprint([]int{0, 1, 2, 3, 4, 5}) {
			t.Errorf("key %s arrived as %v, want each once in publish order", k, got[k])
		}
	}
}

// TestBlockedKeysGauge: hookline_ordered_blocked_keys, as scraped from the
// engine's registry, rises to N while N customers' receiver answers fail,
// is read again when the lanes start on another engine while the keys are
// still blocked (the stopped engine reports nothing any more), and falls to
// 0 once the receiver recovers.
func TestBlockedKeysGauge(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := map[string]bool{"bad-0": true, "bad-1": true, "bad-2": true}
	const n = 3
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		var b struct {
			Data struct {
				Customer string `json:"customer"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Errorf("request %d: %v", r.n, err)
		}
		if bad[b.Data.Customer] && failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	f.endpoint("erp", rc)
	lanes := int32(2)
	retries := make([]hooklinev1.Duration, 50) // the heads outlive the test
	for i := range retries {
		retries[i] = hooklinev1.Duration{Duration: metav1.Duration{Duration: 300 * time.Millisecond}}
	}
	f.subscription("per-customer", "erp", func(s *hooklinev1.Subscription) {
		s.Spec.Delivery = &hooklinev1.DeliveryPolicy{Ordering: hooklinev1.OrderingOrdered, OrderingKey: "data.customer",
			OrderingLanes: &lanes, Schedule: retries}
	})
	f.build()
	opts := testOptions()
	opts.Breaker.Threshold = 1000 // failing keys are not the endpoint failing
	first := prometheus.NewRegistry()
	opts.Metrics = first
	_, stop := f.run(opts)

	var evs []queue.Event
	for seq := range 3 {
		for _, c := range []string{"bad-0", "bad-1", "bad-2", "ok-0", "ok-1", "ok-2", "ok-3"} {
			evs = append(evs, queue.Event{Namespace: ns, ID: fmt.Sprintf("%s-%d", c, seq), Type: "invoice.paid", Time: time.Now(),
				Data: json.RawMessage(fmt.Sprintf(`{"customer":%q,"seq":%d}`, c, seq))})
		}
	}
	if _, err := f.q.PublishEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	blocked := func(reg *prometheus.Registry, want float64) func() bool {
		return func() bool {
			v, ok := blockedKeysGauge(t, reg, "per-customer")
			if v > n {
				t.Errorf("hookline_ordered_blocked_keys %v, never more than %d keys fail", v, n)
			}
			return ok && v == want
		}
	}
	eventually(t, fmt.Sprintf("%d blocked keys", n), blocked(first, n))

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if v, ok := blockedKeysGauge(t, first, "per-customer"); ok {
		t.Errorf("the stopped engine still reports %v blocked keys", v)
	}
	second := prometheus.NewRegistry()
	opts.Metrics = second
	_, stop = f.run(opts)
	t.Cleanup(func() { _ = stop() })
	eventually(t, fmt.Sprintf("%d blocked keys on the next engine", n), blocked(second, n))

	failing.Store(false)
	eventually(t, "every delivery", func() bool {
		got := map[string]bool{}
		for _, r := range rc.requests() {
			got[r.id()] = true
		}
		return len(got) == len(evs)
	})
	eventually(t, "no blocked key", blocked(second, 0))
}

// blockedKeysGauge scrapes hookline_ordered_blocked_keys of a subscription
// from reg; ok is false when the series is not there.
func blockedKeysGauge(t testing.TB, reg *prometheus.Registry, sub string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "hookline_ordered_blocked_keys" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["subscription"] == sub {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}
