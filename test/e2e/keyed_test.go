package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/receiver"
)

// keyedEvent is what the keyed receiver reads from a delivery's body.
type keyedEvent struct {
	Data struct {
		Customer string `json:"customer"`
		Seq      int    `json:"seq"`
	} `json:"data"`
}

var _ = Describe("Ordering per key", func() {
	It("keeps each key's order through a SIGKILL mid-stream, and a failing key holds only its own deliveries", func() {
		ns, token := newNamespace()
		const badKey = "bad"
		var failBad atomic.Bool
		failBad.Store(true)
		rcv := &receiver.Receiver{Secrets: verifiedWith(ns)}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			body, _ := io.ReadAll(req.Body)
			var ev keyedEvent
			_ = json.Unmarshal(body, &ev)
			if ev.Data.Customer == badKey && failBad.Load() {
				http.Error(w, "not now", http.StatusServiceUnavailable)
				return
			}
			// Slow enough that the stream is still going when the
			// dispatcher is killed.
			time.Sleep(40 * time.Millisecond)
			req.Body = io.NopCloser(bytes.NewReader(body))
			rcv.ServeHTTP(w, req)
		}))
		DeferCleanup(srv.Close)
		kubectlApply(ns, fmt.Sprintf(`apiVersion: hookline.io/v1alpha1
kind: WebhookEndpoint
metadata: {name: shop}
spec:
  url: %s/hooks
  allowInsecureHTTP: true
  limits: {timeout: 5s, maxInFlight: 4}
---
apiVersion: hookline.io/v1alpha1
kind: Subscription
metadata: {name: per-customer}
spec:
  endpointRef: {name: shop}
  eventTypes: ["invoice.*"]
  delivery:
    ordering: Ordered
    orderingKey: data.customer
    exponential: {initialInterval: 1s, maxInterval: 2s}
    maxAttempts: 100
`, srv.URL))

		delivered := func() map[string][]int {
			out := map[string][]int{}
			for _, d := range rcv.Deliveries() {
				var ev keyedEvent
				Expect(json.Unmarshal(d.Body, &ev)).To(Succeed())
				out[ev.Data.Customer] = append(out[ev.Data.Customer], ev.Data.Seq)
			}
			return out
		}
		By("probing until the subscription routes")
		probes := 0
		Eventually(func() int {
			publish(ns, token, fmt.Sprintf("probe-%03d", probes), "invoice.probe", map[string]any{"customer": "probe", "seq": probes})
			probes++
			time.Sleep(300 * time.Millisecond)
			return len(delivered()["probe"])
		}).Should(BeNumerically(">", 0), "no probe arrived; dispatcher log: %s", dispP.logPath)

		By("publishing interleaved events of many keys, the failing key first")
		const keys, perKey = 24, 15
		names := []string{badKey}
		for k := range keys {
			names = append(names, fmt.Sprintf("cus-%02d", k))
		}
		badLane := queue.KeyLane(badKey, hooklinev1.DefaultOrderingLanes)
		// And one key that shares the failing key's lane, to see that it is
		// not held.
		for k := keys; ; k++ {
			if name := fmt.Sprintf("cus-%02d", k); queue.KeyLane(name, hooklinev1.DefaultOrderingLanes) == badLane {
				names = append(names, name)
				break
			}
		}
		var peers, free []string
		for _, k := range names[1:] {
			if queue.KeyLane(k, hooklinev1.DefaultOrderingLanes) == badLane {
				peers = append(peers, k)
			} else {
				free = append(free, k)
			}
		}
		Expect(free).NotTo(BeEmpty())
		Expect(peers).NotTo(BeEmpty())
		for seq := range perKey {
			for _, k := range names {
				publish(ns, token, fmt.Sprintf("%s-%02d", k, seq), "invoice.paid", map[string]any{"customer": k, "seq": seq})
			}
		}

		By("SIGKILLing the dispatcher mid-stream")
		total := (len(free) + len(peers)) * perKey
		Eventually(func() int { return len(rcv.Deliveries()) }).Should(BeNumerically(">=", total/4))
		dispP.kill()
		Expect(len(rcv.Deliveries())).To(BeNumerically("<", total), "the stream had ended before the kill; the test did not kill mid-stream")
		dispP = startDispatcher()

		By("delivering every other key while the failing key fails, those on its lane too")
		Eventually(func(g Gomega) {
			got := delivered()
			for _, k := range append(free, peers...) {
				g.Expect(unique(got[k])).To(HaveLen(perKey), "key %s", k)
			}
		}, "3m").Should(Succeed(), "dispatcher log: %s", dispP.logPath)
		got := delivered()
		Expect(got[badKey]).To(BeEmpty())

		By("delivering the failing key's deliveries, in order, once it recovers")
		failBad.Store(false)
		Eventually(func(g Gomega) {
			got := delivered()
			for _, k := range names {
				g.Expect(unique(got[k])).To(HaveLen(perKey), "key %s", k)
			}
		}, "3m").Should(Succeed(), "dispatcher log: %s", dispP.logPath)

		got = delivered()
		for _, k := range append(names, "probe") {
			// At least once: a delivery in flight at the SIGKILL may come
			// again, right after itself, before anything behind it.
			seqs := got[k]
			for i := 1; i < len(seqs); i++ {
				Expect(seqs[i]).To(BeNumerically(">=", seqs[i-1]), "key %s arrived out of order: %v", k, seqs)
			}
		}
		Expect(rcv.Stats().Rejected).To(BeZero())
		GinkgoWriter.Printf("keyed lanes: %d deliveries, %d duplicates after the SIGKILL\n", len(rcv.Deliveries()), rcv.Stats().Duplicates)
	})
})

// unique drops repeats from a key's arrival sequence.
func unique(seqs []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, s := range seqs {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
