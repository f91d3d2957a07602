package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/queue/queuetest"
	"github.com/hookline/hookline/internal/server"
)

// fanOutAll runs the queue's fan-out, matching nothing, until the test
// ends: every published event is then retained.
func fanOutAll(t testing.TB, q *queue.Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	f, err := q.OpenFanout(ctx)
	if err != nil {
		t.Fatalf("OpenFanout: %v", err)
	}
	var wg sync.WaitGroup
	for range f.Workers() {
		wg.Go(func() {
			for b := range f.Batches() {
				b.Store(make([]queue.Matched, len(b.Events())))
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait(); f.Close() })
}

// fixedRecoverer answers every recovery with rec and counts the calls.
type fixedRecoverer struct {
	mu    sync.Mutex
	calls []string
	rec   queue.Recovery
}

func (f *fixedRecoverer) Recover(_ context.Context, sub queue.SubscriptionID, id string, since time.Time) (queue.Recovery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, sub.String()+" "+id)
	r := f.rec
	r.ID, r.Subscription, r.Since = id, sub, since
	return r, nil
}

func (f *fixedRecoverer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func recoverRequest(h http.Handler, target, key, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, target, nil)
	req.RemoteAddr = "10.7.0.1:40000"
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func itemIDs(page map[string]any) []string {
	var ids []string
	items, _ := page["items"].([]any)
	for _, it := range items {
		ids = append(ids, it.(map[string]any)["id"].(string))
	}
	return ids
}

// TestEventsAPI: retained events are listed in pages, newest first by
// default or oldest first, by type, and one is read by id; bad parameters
// are named.
func TestEventsAPI(t *testing.T) {
	t.Parallel()
	q := queuetest.Open(t, nil)
	ctx := context.Background()
	for i := range 7 {
		ev := queue.Event{Namespace: ns, ID: fmt.Sprintf("e%d", i), Type: "invoice.paid", Time: time.Now(), Data: []byte(`{"n":1}`)}
		if i%2 == 1 {
			ev.Type = "order.created"
		}
		if _, err := q.PublishEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	fanOutAll(t, q)
	eventually(t, "7 retained events", func() bool {
		evs, _, err := q.ListEvents(ctx, queue.EventQuery{Namespace: ns, Limit: 10})
		return err == nil && len(evs) == 7
	})
	rcv := &fixedRecoverer{rec: queue.Recovery{Phase: queue.RecoveryRunning}}
	h, err := server.NewHandler(server.Options{
		Publisher: &recorder{}, Authorizer: server.AllowAll{}, Deliveries: q, Events: q, Recoverer: rcv,
		SubscriptionUID: anySubscription,
	})
	if err != nil {
		t.Fatal(err)
	}
	base := "/v1/namespaces/" + ns + "/events"

	var got []string
	target := base + "?limit=3"
	for range 5 {
		page := doJSON(t, h, http.MethodGet, target, http.StatusOK)
		got = append(got, itemIDs(page)...)
		next, _ := page["next"].(string)
		if next == "" {
			break
		}
		target = base + "?limit=3&cursor=" + next
	}
	if fmt.Sprint(got) != "[e6 e5 e4 e3 e2 e1 e0]" {
		t.Errorf("newest first in pages of 3: %v", got)
	}
	page := doJSON(t, h, http.MethodGet, base+"?order=oldest&type=order.created&limit=2", http.StatusOK)
	if ids := itemIDs(page); fmt.Sprint(ids) != "[e1 e3]" || page["next"] == nil {
		t.Errorf("oldest order.created, 2: %v next %v", ids, page["next"])
	}
	next := page["next"].(string)
	if ids := itemIDs(doJSON(t, h, http.MethodGet, base+"?order=oldest&type=order.created&limit=2&cursor="+next, http.StatusOK)); fmt.Sprint(ids) != "[e5]" {
		t.Errorf("second page: %v", ids)
	}

	one := doJSON(t, h, http.MethodGet, base+"/e4", http.StatusOK)
	if one["id"] != "e4" || one["type"] != "invoice.paid" || fmt.Sprint(one["data"]) != "map[n:1]" || one["retainedAt"] == nil {
		t.Errorf("GET e4: %v", one)
	}
	if e := doJSON(t, h, http.MethodGet, base+"/nope", http.StatusNotFound)["error"].(map[string]any); e["parameter"] != "id" {
		t.Errorf("GET of a missing event: %v", e)
	}

	for param, query := range map[string]string{
		"limit":  "limit=0",
		"order":  "order=sideways",
		"since":  "since=yesterday",
		"until":  "since=2026-11-26T20:00:00Z&until=2026-11-26T19:00:00Z",
		"cursor": "order=oldest&cursor=" + strings.Replace(next, "o", "n", 1),
	} {
		e := doJSON(t, h, http.MethodGet, base+"?"+query, http.StatusBadRequest)["error"].(map[string]any)
		if e["parameter"] != param {
			t.Errorf("?%s: error %v, want one naming %s", query, e, param)
		}
	}

	sub := "/v1/namespaces/" + ns + "/subscriptions/invoices/recover"
	if rec := recoverRequest(h, sub, "", ""); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "Idempotency-Key") {
		t.Errorf("recover without a key: %d %s", rec.Code, rec.Body)
	}
	if rec := recoverRequest(h, sub+"?since=2999-01-01T00:00:00Z", "k1", ""); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"since"`) {
		t.Errorf("recover since the future: %d %s", rec.Code, rec.Body)
	}
	rec := recoverRequest(h, sub+"?since=2026-01-01T00:00:00Z", "k1", "")
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"id":"k1"`) || !strings.Contains(rec.Body.String(), `"phase":"Running"`) {
		t.Errorf("recover: %d %s", rec.Code, rec.Body)
	}
	if rcv.count() != 1 {
		t.Errorf("%d recoveries started, want 1", rcv.count())
	}
}

var (
	readerRule    = rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"events"}, Verbs: []string{"get", "list"}}
	recovererRule = rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"subscriptions"}, Verbs: []string{"recover"}}
)

var _ = Describe("Retained events and recovery authorization by purpose", func() {
	It("lets publishers only publish, readers only read events and recoverers only recover", func() {
		ctx := context.Background()
		ns := createNamespace(ctx)
		tokens := map[string]string{
			"publisher": saToken(ctx, ns, "publisher", publisherRule),
			"reader":    saToken(ctx, ns, "event-reader", readerRule),
			"recoverer": saToken(ctx, ns, "recoverer", recovererRule),
			"replayer":  saToken(ctx, ns, "replayer", replayRule),
		}
		pub := &recorder{}
		q := queuetest.Open(GinkgoT(), nil)
		rcv := &fixedRecoverer{rec: queue.Recovery{Phase: queue.RecoveryComplete}}
		h, err := server.NewHandler(server.Options{
			Publisher: pub, Deliveries: q, Events: q, Recoverer: rcv, SubscriptionUID: anySubscription,
			Authorizer: server.NewKubernetesAuthorizer(authCli, server.KubernetesAuthorizerOptions{}),
		})
		Expect(err).NotTo(HaveOccurred())
		allowed := map[string][]string{"publisher": {"publish"}, "reader": {"list", "get"}, "recoverer": {"recover"}, "replayer": nil}
		for who, token := range tokens {
			for _, what := range []string{"publish", "list", "get", "recover"} {
				var rec *httptest.ResponseRecorder
				switch what {
				case "publish":
					rec = serveRequest(h, http.MethodPost, "/v1/namespaces/"+ns+"/events", token, "10.8.0.1")
				case "list":
					rec = serveRequest(h, http.MethodGet, "/v1/namespaces/"+ns+"/events", token, "10.8.0.1")
				case "get":
					rec = serveRequest(h, http.MethodGet, "/v1/namespaces/"+ns+"/events/e1", token, "10.8.0.1")
				case "recover":
					rec = recoverRequest(h, "/v1/namespaces/"+ns+"/subscriptions/invoices/recover", "key-"+who, token)
				}
				if contains(allowed[who], what) {
					// The reader may read e1; it just is not retained.
					Expect(rec.Code).To(SatisfyAny(Equal(http.StatusOK), Equal(http.StatusAccepted), Equal(http.StatusNotFound)), "%s doing %s: %s", who, what, rec.Body)
					Expect(rec.Body.String()).NotTo(ContainSubstring("may not"))
					continue
				}
				Expect(rec.Code).To(Equal(http.StatusForbidden), "%s doing %s: %s", who, what, rec.Body)
				Expect(rec.Body.String()).To(ContainSubstring("may not"))
			}
		}
		Expect(rcv.count()).To(Equal(1), "only the recoverer recovered")
		Expect(pub.events).To(HaveLen(1), "only the publisher published")
	})
})

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
