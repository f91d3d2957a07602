package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hookline/hookline/internal/receiver"
)

// laneDelivered is how many times the ordered lane of ns/sub has handed out
// a message, redeliveries included: each hold of its head adds one.
func laneDelivered(ns, sub string) uint64 {
	nc, err := nats.Connect("nats://"+natsAddr, nats.Timeout(5*time.Second))
	if err != nil {
		return 0
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, "HL_DELIVERIES", "ord__"+ns+"__"+sub)
	if err != nil {
		return 0
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0
	}
	return info.Delivered.Consumer
}

type attemptEntry struct {
	Attempt    int `json:"attempt"`
	StatusCode int `json:"statusCode"`
}

// attemptLog reads a subscription's attempt log through the admin API.
func attemptLog(ns, token, sub string) []attemptEntry {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, apiURL+"/v1/namespaces/"+ns+"/subscriptions/"+sub+"/attempts?limit=1000", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out struct {
		Items []attemptEntry `json:"items"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return nil
	}
	return out.Items
}

// flakyReceiver verifies like a customer's endpoint, and can be told to hang
// (until the caller goes away) or to answer the next n requests with 503.
type flakyReceiver struct {
	*receiver.Receiver
	srv      *httptest.Server
	inFlight atomic.Int32
	hang     atomic.Bool
	fail     atomic.Int32
}

func newFlakyReceiver(keys func() []string) *flakyReceiver {
	f := &flakyReceiver{Receiver: &receiver.Receiver{Secrets: keys}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.inFlight.Add(1)
		defer f.inFlight.Add(-1)
		if f.hang.Load() {
			// Read to the end first: only then does the server notice the
			// client going away and end the request's context.
			_, _ = io.Copy(io.Discard, req.Body)
			<-req.Context().Done()
			return
		}
		if f.fail.Add(-1) >= 0 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		f.ServeHTTP(w, req)
	}))
	DeferCleanup(f.srv.Close)
	return f
}

var _ = Describe("Ordered lanes", func() {
	It("spends no attempt on holds or on a send cut off by SIGKILL, and keeps lane order", func() {
		ns, token := newNamespace()
		grantAttemptLog(ns)
		r := newFlakyReceiver(verifiedWith(ns))
		// Suspended from the start: every delivery of the ordered lane is
		// held (--suspended-hold 1s) and none is sent. Four attempts at most
		// (three retries), a timeout long enough to SIGKILL a hung send.
		kubectlApply(ns, fmt.Sprintf(`apiVersion: hookline.io/v1alpha1
kind: WebhookEndpoint
metadata: {name: shop}
spec:
  url: %s/hooks
  allowInsecureHTTP: true
  suspend: true
  limits: {timeout: 10s}
---
apiVersion: hookline.io/v1alpha1
kind: Subscription
metadata: {name: ledger}
spec:
  endpointRef: {name: shop}
  eventTypes: ["ledger.*"]
  delivery:
    ordering: Ordered
    schedule: [1s, 1s, 1s]
`, r.srv.URL))
		// Probes until one reaches the lane: the dispatcher routes to it.
		probes := 0
		Eventually(func() uint64 {
			publish(ns, token, fmt.Sprintf("probe-%03d", probes), "ledger.probe", map[string]any{})
			probes++
			time.Sleep(500 * time.Millisecond)
			return laneDelivered(ns, "ledger")
		}).Should(BeNumerically(">", 0), "nothing reached the ordered lane; dispatcher log: %s", dispP.logPath)
		const n = 5
		for i := range n {
			publish(ns, token, fmt.Sprintf("ord-%d", i), "ledger.entry", map[string]any{"n": i})
		}

		By("holding the lane's head through two SIGKILLs while the endpoint is suspended")
		for range 2 {
			before := laneDelivered(ns, "ledger")
			Eventually(func() uint64 { return laneDelivered(ns, "ledger") }).Should(BeNumerically(">=", before+3))
			dispP.kill()
			dispP = startDispatcher()
		}
		Expect(r.Stats().Accepted).To(BeZero(), "nothing is sent to a suspended endpoint")

		By("SIGKILLing the dispatcher while the head's first send is under way")
		r.hang.Store(true)
		kubectlOut("patch", "whep", "shop", "-n", ns, "--type=merge", "-p", `{"spec":{"suspend":false}}`)
		Eventually(func() int32 { return r.inFlight.Load() }).Should(BeNumerically(">", 0))
		dispP.kill()
		Eventually(func() int32 { return r.inFlight.Load() }).Should(BeZero())
		r.hang.Store(false)

		By("failing the next two sends: the head must arrive as attempt 3 of 4, not be given up")
		r.fail.Store(2)
		dispP = startDispatcher()
		all := func() []string {
			var ids []string
			for _, d := range r.Deliveries() {
				ids = append(ids, d.EventID)
			}
			return ids
		}
		Eventually(func() int { return len(all()) }, "3m").Should(BeNumerically(">=", n+1), "dispatcher log: %s", dispP.logPath)
		Eventually(func() bool { return r.SeenEvent(fmt.Sprintf("ord-%d", n-1)) }, "2m").Should(BeTrue())

		ids := all()
		Expect(r.Stats().Duplicates).To(BeZero(), "each event arrives once: %v", ids)
		Expect(r.Stats().Rejected).To(BeZero())
		// Lane order: the probes that reached the lane, in publish order,
		// then ord-0..ord-4.
		Expect(ids[len(ids)-n:]).To(Equal([]string{"ord-0", "ord-1", "ord-2", "ord-3", "ord-4"}), "arrival order %v", ids)
		for i, id := range ids[:len(ids)-n] {
			Expect(id).To(HavePrefix("probe-"), "arrival order %v", ids)
			if i > 0 {
				Expect(id > ids[i-1]).To(BeTrue(), "probes out of order: %v", ids)
			}
		}

		By("counting exactly the three real attempts of the head in the attempt log, and no dead letter")
		want := len(ids) + 2 // one success per event, and the two 503s
		Eventually(func() []attemptEntry { return attemptLog(ns, token, "ledger") }, "30s").Should(HaveLen(want))
		var failed, third, firsts int
		for _, a := range attemptLog(ns, token, "ledger") {
			switch {
			case a.StatusCode == http.StatusServiceUnavailable:
				Expect(a.Attempt).To(BeNumerically("<=", 2), "a 503 counted as attempt %d", a.Attempt)
				failed++
			case a.Attempt == 3:
				third++
			case a.Attempt == 1:
				firsts++
			default:
				Fail(fmt.Sprintf("attempt %d with status %d: a hold or a killed send was counted", a.Attempt, a.StatusCode))
			}
		}
		Expect([]int{failed, third, firsts}).To(Equal([]int{2, 1, len(ids) - 1}))
		// No dead letter, and nothing left waiting once the last is acked.
		Eventually(func() []string {
			var left []string
			for _, h := range queueHolds(ns) {
				if strings.HasPrefix(h, "HL_DEAD ") || strings.HasPrefix(h, "HL_DELIVERIES subject") {
					left = append(left, h)
				}
			}
			return left
		}, "30s").Should(BeEmpty())
	})
})
