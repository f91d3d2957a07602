package server_test

import (
	"context"
	"net/http"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/queue/queuetest"
	"github.com/hookline/hookline/internal/server"
)

// The Roles of docs/security.md, one per purpose.
var (
	publisherRule   = rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"events"}, Verbs: []string{"create"}}
	attemptsRule    = rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"subscriptions/attempts"}, Verbs: []string{"get"}}
	deadLettersRule = rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"subscriptions/deadletters"}, Verbs: []string{"get"}}
	replayRule      = rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"subscriptions"}, Verbs: []string{"replay"}}
)

// saToken creates a ServiceAccount in ns bound to a Role with rule and
// returns a token for it.
func saToken(ctx context.Context, ns, name string, rule rbacv1.PolicyRule) string {
	token, err := controlplane.ServiceAccountToken(ctx, admin, ns, name, rule)
	Expect(err).NotTo(HaveOccurred())
	return token
}

// countingAdmin counts what reached the queue through the admin API.
type countingAdmin struct {
	q     *queue.Queue
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingAdmin) count(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[what]++
}

func (c *countingAdmin) RecentAttempts(ctx context.Context, sub queue.SubscriptionID, limit int) ([]queue.Attempt, error) {
	c.count("attempts")
	return c.q.RecentAttempts(ctx, sub, limit)
}

func (c *countingAdmin) ListDead(ctx context.Context, sub queue.SubscriptionID, limit int) ([]queue.DeadDelivery, error) {
	c.count("dead")
	return c.q.ListDead(ctx, sub, limit)
}

func (c *countingAdmin) Replay(ctx context.Context, sub queue.SubscriptionID, from, to time.Time) (int, error) {
	c.count("replay")
	return c.q.Replay(ctx, sub, from, to)
}

func (c *countingAdmin) Resend(ctx context.Context, sub queue.SubscriptionID, seq uint64) error {
	c.count("resend")
	return c.q.Resend(ctx, sub, seq)
}

// anySubscription makes every subscription name exist, with a UID of its own.
func anySubscription(_, name string) (string, bool) { return "uid-" + name, true }

func (c *countingAdmin) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

type adminCall struct{ method, path string }

var _ = Describe("Admin API authorization by purpose", func() {
	It("grants attempts, dead letters, replay and publishing only with their own rule", func() {
		ctx := context.Background()
		ns := createNamespace(ctx)
		tokens := map[string]string{
			"publisher": saToken(ctx, ns, "publisher", publisherRule),
			"attempts":  saToken(ctx, ns, "attempts-reader", attemptsRule),
			"dead":      saToken(ctx, ns, "deadletter-reader", deadLettersRule),
			"replay":    saToken(ctx, ns, "replayer", replayRule),
		}
		pub := &recorder{}
		q := &countingAdmin{q: queuetest.Open(GinkgoT(), nil), calls: map[string]int{}}
		h, err := server.NewHandler(server.Options{
			Publisher: pub, Deliveries: q, SubscriptionUID: anySubscription,
			Authorizer: server.NewKubernetesAuthorizer(authCli, server.KubernetesAuthorizerOptions{}),
		})
		Expect(err).NotTo(HaveOccurred())
		sub := "/v1/namespaces/" + ns + "/subscriptions/invoices/"
		calls := map[string]adminCall{
			"publisher": {http.MethodPost, "/v1/namespaces/" + ns + "/events"},
			"attempts":  {http.MethodGet, sub + "attempts"},
			"dead":      {http.MethodGet, sub + "dead"},
			"replay":    {http.MethodPost, sub + "replay"},
		}
		for who, token := range tokens {
			for what, call := range calls {
				rec := serveRequest(h, call.method, call.path, token, "10.5.0.1")
				before := q.snapshot()
				if who == what {
					Expect(rec.Code).To(SatisfyAny(Equal(http.StatusOK), Equal(http.StatusAccepted)), "%s doing %s: %s", who, what, rec.Body)
					continue
				}
				Expect(rec.Code).To(Equal(http.StatusForbidden), "%s doing %s: %s", who, what, rec.Body)
				Expect(rec.Body.String()).To(ContainSubstring("may not"))
				Expect(q.snapshot()).To(Equal(before))
			}
		}
		Expect(q.snapshot()).To(Equal(map[string]int{"attempts": 1, "dead": 1, "replay": 1}))
		Expect(pub.events).To(HaveLen(1), "only the publisher published")
	})

	It("answers 503 with Retry-After on every route when the API server cannot be asked", func() {
		dead := rest.CopyConfig(env.Config)
		dead.Host = "https://127.0.0.1:1" // nothing listens there
		dead.Timeout = 2 * time.Second
		cs, err := kubernetes.NewForConfig(dead)
		Expect(err).NotTo(HaveOccurred())
		pub := &recorder{}
		q := &countingAdmin{q: queuetest.Open(GinkgoT(), nil), calls: map[string]int{}}
		h, err := server.NewHandler(server.Options{
			Publisher: pub, Deliveries: q, SubscriptionUID: anySubscription,
			Authorizer: server.NewKubernetesAuthorizer(cs, server.KubernetesAuthorizerOptions{}),
		})
		Expect(err).NotTo(HaveOccurred())
		sub := "/v1/namespaces/team-a/subscriptions/invoices/"
		for _, call := range []adminCall{
			{http.MethodPost, "/v1/namespaces/team-a/events"},
			{http.MethodPost, "/v1/namespaces/team-a/events:batch"},
			{http.MethodGet, sub + "attempts"},
			{http.MethodGet, sub + "dead"},
			{http.MethodPost, sub + "replay"},
		} {
			rec := serveRequest(h, call.method, call.path, forgedToken(""), "10.6.0.1")
			Expect(rec.Code).To(Equal(http.StatusServiceUnavailable), "%s %s: %s", call.method, call.path, rec.Body)
			Expect(rec.Header().Get("Retry-After")).NotTo(BeEmpty())
		}
		Expect(pub.events).To(BeEmpty())
		Expect(q.snapshot()).To(BeEmpty())
	})
})
