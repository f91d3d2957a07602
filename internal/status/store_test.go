package status

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/queue/queuetest"
)

func openQueue(t testing.TB) *queue.Queue {
	t.Helper()
	// The store's tests use the queue's own default ack wait.
	return queuetest.Open(t, func(c *queue.Config) { c.AckWait = 0 })
}

// The objects the figures of snap belong to.
var (
	testEndpoints = []hooklinev1.WebhookEndpoint{{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing", UID: "uid-ep"}}}
	testSubs      = []hooklinev1.Subscription{{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "invoices", UID: "uid-sub"},
		Spec: hooklinev1.SubscriptionSpec{EndpointRef: hooklinev1.EndpointRef{Name: "billing"}}}}
)

func testWriter(t *testing.T, st *store, clk *clocktesting.FakeClock) *writer {
	return &writer{
		st: st, clock: clk, log: testr.New(t), goneAfter: time.Minute, present: 6 * time.Second,
		reports: map[string]entry{}, lastWrite: map[objRef]time.Time{},
	}
}

func delivered(t *testing.T, w *writer) uint64 {
	t.Helper()
	m, err := w.merge(context.Background(), testEndpoints, testSubs)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Subscriptions) == 0 {
		return 0
	}
	if m.Subscriptions[0].Delivered != m.Endpoints[0].Delivered {
		t.Fatalf("subscription and endpoint disagree: %+v", m)
	}
	return m.Subscriptions[0].Delivered
}

func reportKeys(t *testing.T, st *store) []string {
	t.Helper()
	l, err := st.bucket().ListKeysFiltered(context.Background(), reportPrefix+">")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys
}

func TestStoreMergesProcessesAndFoldsGoneOnesOnce(t *testing.T) {
	ctx := context.Background()
	q := openQueue(t)
	st, err := openStore(ctx, q.Conn(), 1)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(at(1000))
	a, b := &publisher{st: st}, &publisher{st: st}
	if err := a.publish(ctx, snap("a", clk.Now(), 10), nil, false); err != nil {
		t.Fatal(err)
	}
	if err := b.publish(ctx, snap("b", clk.Now(), 5), nil, false); err != nil {
		t.Fatal(err)
	}
	w := testWriter(t, st, clk)
	if got := delivered(t, w); got != 15 {
		t.Fatalf("two processes: %d deliveries, want 15", got)
	}
	// A report repeated or read twice changes nothing.
	if err := a.publish(ctx, snap("a", clk.Now(), 10), nil, false); err != nil {
		t.Fatal(err)
	}
	if got := delivered(t, w); got != 15 {
		t.Fatalf("after a repeated report: %d, want 15", got)
	}

	// b stops cleanly: its last report is folded at once and its key goes.
	if err := b.publish(ctx, snap("b", clk.Now(), 6), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := b.publish(ctx, snap("b", clk.Now(), 99), nil, false); err != nil {
		t.Fatal(err) // ignored: b is closed
	}
	if got := delivered(t, w); got != 16 {
		t.Fatalf("after b's final report: %d, want 16", got)
	}
	if keys := reportKeys(t, st); len(keys) != 1 {
		t.Fatalf("keys %v, want only a's", keys)
	}

	// a stops reporting (killed). Simulate the writer crashing between
	// writing the base and deleting a's key: fold and write the base only.
	clk.Step(2 * time.Minute)
	entries, base0, rev, err := st.load(ctx, map[string]entry{}, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	f := fold(base0, entries, clk.Now(), time.Minute, newIndex(testEndpoints, testSubs).alive)
	if !f.changed {
		t.Fatal("a's stale report was not folded")
	}
	if err := st.writeBase(ctx, f.base, rev); err != nil {
		t.Fatal(err)
	}
	// The next writer (a new lease holder) must neither count a twice nor
	// keep its key.
	w2 := testWriter(t, st, clk)
	if got := delivered(t, w2); got != 16 {
		t.Fatalf("after the crash: %d, want 16", got)
	}
	if keys := reportKeys(t, st); len(keys) != 0 {
		t.Fatalf("keys %v left after folding", keys)
	}
	if got := delivered(t, w2); got != 16 {
		t.Fatalf("one more round: %d, want 16", got)
	}

	// A writer that lost the compare-and-set writes nothing.
	if err := st.writeBase(ctx, f.base, rev); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("stale base write: %v, want a revision mismatch", err)
	}
}

func TestPublisherFoldedWhileAliveReportsOnlyTheRest(t *testing.T) {
	ctx := context.Background()
	q := openQueue(t)
	st, err := openStore(ctx, q.Conn(), 1)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(at(1000))
	w := testWriter(t, st, clk)
	p := &publisher{st: st}
	if err := p.publish(ctx, snap("a", clk.Now(), 5), nil, false); err != nil {
		t.Fatal(err)
	}
	if got := delivered(t, w); got != 5 {
		t.Fatalf("%d, want 5", got)
	}
	// a is cut off for longer than goneAfter: the writer folds it.
	clk.Step(2 * time.Minute)
	if got := delivered(t, w); got != 5 {
		t.Fatalf("after folding: %d, want 5", got)
	}
	// a comes back with its totals since it started.
	if err := p.publish(ctx, snap("a", clk.Now(), 8), nil, false); err != nil {
		t.Fatal(err)
	}
	if got := delivered(t, w); got != 8 {
		t.Fatalf("after a came back: %d, want 8 (5 folded + 3 new)", got)
	}
	if keys := reportKeys(t, st); len(keys) != 1 || keys[0] != reportKey("a", 1) {
		t.Fatalf("keys %v, want a's second key", keys)
	}
}

func TestSeedFromStatus(t *testing.T) {
	ctx := context.Background()
	q := openQueue(t)
	st, err := openStore(ctx, q.Conn(), 1)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(at(1000))
	subs := []hooklinev1.Subscription{testSubs[0]}
	subs[0].Status.Delivery = &hooklinev1.DeliveryStatus{Delivered: 40, Failed: 2}
	eps := []hooklinev1.WebhookEndpoint{testEndpoints[0]}
	eps[0].Status.Delivery = &hooklinev1.DeliveryStatus{Delivered: 40, Failed: 2}
	p := &publisher{st: st}
	if err := p.publish(ctx, snap("a", clk.Now(), 1), nil, false); err != nil {
		t.Fatal(err)
	}
	w := testWriter(t, st, clk)
	m, err := w.merge(ctx, eps, subs)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Subscriptions[0].Delivered; got != 41 {
		t.Fatalf("%d, want the 40 in status plus 1", got)
	}
	// Seeded once: a later round does not add status again.
	eps[0].Status.Delivery.Delivered, subs[0].Status.Delivery.Delivered = 41, 41
	if m, err = w.merge(ctx, eps, subs); err != nil || m.Subscriptions[0].Delivered != 41 {
		t.Fatalf("second round: %+v, %v", m.Subscriptions, err)
	}
}

// TestPublisherKeepsItsKeyWhileTheBucketDoesNotAnswer: a report whose answer
// was lost (the key holds newer figures than the publisher knows of), then a
// write nothing answers, as while a JetStream cluster elects the bucket's
// leader after a node was lost. The publisher took the silence for a deleted
// bucket and reported the rest under a new key, so the figures of the lost
// answer were counted twice (TestCluster: status 1452 delivered, the receiver
// 1451). It must keep its key and write again.
func TestPublisherKeepsItsKeyWhileTheBucketDoesNotAnswer(t *testing.T) {
	ctx := context.Background()
	q := openQueue(t)
	st, err := openStore(ctx, q.Conn(), 1)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(at(1000))
	w := testWriter(t, st, clk)
	p := &publisher{st: st}
	if err := p.publish(ctx, snap("a", clk.Now(), 10), nil, false); err != nil {
		t.Fatal(err)
	}
	// The next report is stored, but its answer never comes back.
	lost, err := encodeReport(report{Snapshot: snap("a", clk.Now(), 12)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.bucket().Put(ctx, p.key(), lost); err != nil {
		t.Fatal(err)
	}
	// The bucket's stream stops answering (no responders), and comes back.
	js, err := jetstream.New(q.Conn())
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "KV_"+Bucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	subjects := cfg.Subjects
	cfg.Subjects = []string{"hl.nobody.listens.>"}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	err = p.publish(ctx, snap("a", clk.Now(), 15), nil, false)
	t.Logf("report while nothing answers: %v", err)
	cfg.Subjects = subjects
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := p.publish(ctx, snap("a", clk.Now(), 15), nil, false); err != nil {
		t.Fatal(err)
	}
	if got := delivered(t, w); got != 15 {
		t.Errorf("status counts %d delivered, the process counted 15; reports under %v", got, reportKeys(t, st))
	}
}
