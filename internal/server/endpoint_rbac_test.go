package server_test

import (
	"context"
	"net/http"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/server"
)

// The Roles of docs/publishing.md's test sends.
var (
	sendTestRule         = rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"webhookendpoints/test"}, Verbs: []string{"create"}}
	endpointAttemptsRule = rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"webhookendpoints/attempts"}, Verbs: []string{"get"}}
)

// countingTests counts the test sends and log reads that got past authorization.
type countingTests struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingTests) count(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[what]++
}

func (c *countingTests) SendTest(_ context.Context, req server.TestRequest) (server.TestResult, error) {
	c.count("test")
	return server.TestResult{EventID: "test_1", Type: req.Type, Delivered: true, StatusCode: 200}, nil
}

func (c *countingTests) EndpointAttempts(context.Context, string, string, int) ([]queue.Attempt, error) {
	c.count("endpoint-attempts")
	return nil, nil
}

func (c *countingTests) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

var _ = Describe("Test sends authorization", func() {
	It("grants test sends and their log only with their own rule, and neither publishes", func() {
		ctx := context.Background()
		ns := createNamespace(ctx)
		tokens := map[string]string{
			"publisher":         saToken(ctx, ns, "publisher", publisherRule),
			"test":              saToken(ctx, ns, "tester", sendTestRule),
			"endpoint-attempts": saToken(ctx, ns, "endpoint-log-reader", endpointAttemptsRule),
			"sub-attempts":      saToken(ctx, ns, "attempts-reader", attemptsRule),
		}
		pub := &recorder{}
		tests := &countingTests{calls: map[string]int{}}
		h, err := server.NewHandler(server.Options{
			Publisher: pub, Tests: tests,
			Authorizer: server.NewKubernetesAuthorizer(authCli, server.KubernetesAuthorizerOptions{}),
		})
		Expect(err).NotTo(HaveOccurred())
		ep := "/v1/namespaces/" + ns + "/webhookendpoints/billing/"
		calls := map[string]adminCall{
			"publisher":         {http.MethodPost, "/v1/namespaces/" + ns + "/events"},
			"test":              {http.MethodPost, ep + "test"},
			"endpoint-attempts": {http.MethodGet, ep + "attempts"},
		}
		for who, token := range tokens {
			for what, call := range calls {
				before := tests.snapshot()
				rec := serveRequest(h, call.method, call.path, token, "10.7.0.1")
				if who == what {
					Expect(rec.Code).To(SatisfyAny(Equal(http.StatusOK), Equal(http.StatusAccepted)), "%s doing %s: %s", who, what, rec.Body)
					continue
				}
				Expect(rec.Code).To(Equal(http.StatusForbidden), "%s doing %s: %s", who, what, rec.Body)
				Expect(tests.snapshot()).To(Equal(before))
			}
		}
		Expect(tests.snapshot()).To(Equal(map[string]int{"test": 1, "endpoint-attempts": 1}))
		Expect(pub.events).To(HaveLen(1), "only the publisher published")
	})
})
