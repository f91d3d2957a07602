package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func endpointReady(ns, name string) func(g Gomega) {
	return func(g Gomega) {
		var ep hooklinev1.WebhookEndpoint
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ep)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(ep.Status.Conditions, hooklinev1.ConditionReady)).To(BeTrue(), "endpoint %s not Ready: %+v", name, ep.Status.Conditions)
	}
}

// deliverySetup applies an endpoint and a subscription for type "order.*" delivering to a
// fresh receiver, and waits until the dispatcher routes to it.
func deliverySetup(keys func(ns string) func() []string) (ns, token string, r *endpointReceiver) {
	ns, token = newNamespace()
	r = newReceiver(keys(ns))
	kubectlApply(ns, endpointYAML("shop", r.URL())+"---\n"+subscriptionYAML("orders", "shop", "order.*"))
	Eventually(endpointReady(ns, "shop")).Should(Succeed())
	// The dispatcher learns the subscription through its watch within about a second;
	// a probe event shows when it has.
	Eventually(func() bool {
		publish(ns, token, fmt.Sprintf("probe-%d", time.Now().UnixNano()), "order.probe", map[string]any{})
		time.Sleep(300 * time.Millisecond)
		return r.Stats().Unique > 0
	}).Should(BeTrue(), "no probe delivered; dispatcher log: %s", dispP.logPath)
	return ns, token, r
}

func verifiedWith(ns string) func() []string {
	return func() []string { return liveKeys(ns, "shop", false) }
}

func seenAll(r *endpointReceiver, prefix string, n int) func() []string {
	return func() []string {
		var missing []string
		for i := 0; i < n; i++ {
			if id := fmt.Sprintf("%s-%d", prefix, i); !r.SeenEvent(id) {
				missing = append(missing, id)
			}
		}
		return missing
	}
}

var _ = Describe("Delivery", func() {
	It("delivers signed events published by a ServiceAccount, and shows it in kubectl", func() {
		var ns string
		ns, token, r := deliverySetup(func(n string) func() []string { ns = n; return verifiedWith(n) })
		for i := 0; i < 20; i++ {
			publish(ns, token, fmt.Sprintf("basic-%d", i), "order.created", map[string]any{"n": i})
		}
		Eventually(seenAll(r, "basic", 20)).Should(BeEmpty())
		Expect(r.Stats().Rejected).To(BeZero(), "every delivery verifies with the endpoint's key")

		By("refusing a publisher without RBAC in another namespace")
		other, _ := newNamespace()
		req, _ := http.NewRequest(http.MethodPost, apiURL+"/v1/namespaces/"+other+"/events", strings.NewReader(`{"type":"order.created","data":{}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))

		By("showing live delivery health in kubectl get whep,whsub")
		Eventually(func() string {
			return kubectlOut("get", "whep,whsub", "-n", ns)
		}).Should(MatchRegexp(`subscription.hookline.io/orders\s+shop\s+\["order\.\*"\]\s+True\s+Ready\s+2[0-9]`))
	})

	It("keeps delivering through an outage: Degraded while down, everything delivered after", func() {
		var ns string
		ns, token, r := deliverySetup(func(n string) func() []string { ns = n; return verifiedWith(n) })
		r.FailWith(http.StatusServiceUnavailable)
		for i := 0; i < 10; i++ {
			publish(ns, token, fmt.Sprintf("outage-%d", i), "order.created", map[string]any{"n": i})
		}
		Eventually(func(g Gomega) {
			var ep hooklinev1.WebhookEndpoint
			g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "shop"}, &ep)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(ep.Status.Conditions, hooklinev1.ConditionDegraded)).To(BeTrue(), "%+v", ep.Status.Conditions)
			g.Expect(ep.Status.Delivery).NotTo(BeNil())
			g.Expect(ep.Status.Delivery.ConsecutiveFailures).To(BeNumerically(">", 0))
			g.Expect(ep.Status.Delivery.LastFailure).NotTo(BeNil())
			g.Expect(ep.Status.Delivery.LastFailure.StatusCode).To(BeEquivalentTo(503))
		}).Should(Succeed())

		r.FailWith(0)
		Eventually(seenAll(r, "outage", 10), "3m").Should(BeEmpty())
		Eventually(func(g Gomega) {
			var ep hooklinev1.WebhookEndpoint
			g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "shop"}, &ep)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(ep.Status.Conditions, hooklinev1.ConditionDelivering)).To(BeTrue(), "%+v", ep.Status.Conditions)
			g.Expect(meta.IsStatusConditionTrue(ep.Status.Conditions, hooklinev1.ConditionDegraded)).To(BeFalse())
		}).Should(Succeed())
	})

	It("delivers everything through a key rotation to a receiver that switches to the new key after the overlap", func() {
		var ns string
		var switched atomic.Bool
		keys := func(n string) func() []string {
			ns = n
			return func() []string { return liveKeys(n, "shop", switched.Load()) }
		}
		ns, token, r := deliverySetup(keys)
		var before hooklinev1.WebhookEndpoint
		Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "shop"}, &before)).To(Succeed())

		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			for i := 0; i < 60; i++ {
				publish(ns, token, fmt.Sprintf("rot-%d", i), "order.created", map[string]any{"n": i})
				time.Sleep(50 * time.Millisecond)
			}
		}()
		kubectlOut("annotate", "whep", "shop", "-n", ns, hooklinev1.AnnotationRotate+"=e2e")
		Eventually(func(g Gomega) {
			var ep hooklinev1.WebhookEndpoint
			g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "shop"}, &ep)).To(Succeed())
			g.Expect(ep.Status.Signing.CurrentKeyID).NotTo(Equal(before.Status.Signing.CurrentKeyID))
		}).Should(Succeed())
		// From here the receiver knows only the new key, as one that switched would.
		switched.Store(true)
		<-done
		Eventually(seenAll(r, "rot", 60), "2m").Should(BeEmpty())
		Expect(r.Stats().Rejected).To(BeZero(), "every delivery through the rotation verifies with a key the receiver knows")
	})

	It("loses nothing when the dispatcher is killed mid-stream", func() {
		var ns string
		ns, token, r := deliverySetup(func(n string) func() []string { ns = n; return verifiedWith(n) })
		const n = 300
		for i := 0; i < n/2; i++ {
			publish(ns, token, fmt.Sprintf("kill-%d", i), "order.created", map[string]any{"n": i})
		}
		dispP.kill()
		dispP = startDispatcher()
		for i := n / 2; i < n; i++ {
			publish(ns, token, fmt.Sprintf("kill-%d", i), "order.created", map[string]any{"n": i})
		}
		Eventually(seenAll(r, "kill", n), "3m").Should(BeEmpty())
		st := r.Stats()
		GinkgoWriter.Printf("after SIGKILL: %d events, %d deliveries, %d duplicates\n", n, st.Accepted, st.Duplicates)
		AddReportEntry("duplicates after SIGKILL", fmt.Sprintf("%d of %d events", st.Duplicates, n))
	})

	It("stops delivering for a deleted Subscription", func() {
		var ns string
		ns, token, r := deliverySetup(func(n string) func() []string { ns = n; return verifiedWith(n) })
		kubectlOut("delete", "whsub", "orders", "-n", ns)
		Eventually(func() error {
			return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "orders"}, &hooklinev1.Subscription{})
		}).Should(Satisfy(apierrors.IsNotFound))
		// The dispatcher has seen the deletion once its admin API no longer knows the name.
		Eventually(func() int { return adminStatus(ns, token, "orders") }).Should(Equal(http.StatusNotFound))
		before := r.Stats().Accepted
		for i := 0; i < 5; i++ {
			publish(ns, token, fmt.Sprintf("after-delete-%d", i), "order.created", map[string]any{})
		}
		Consistently(func() int { return r.Stats().Accepted }, "3s").Should(Equal(before))
		// Its attempt log and anything else the queue kept for it go too (the
		// sweep runs every minute and removes what it saw gone twice).
		Eventually(func() []string { return queueHolds(ns) }, "3m").Should(BeEmpty())
	})

	It("cleans everything up when the namespace is deleted", func() {
		var ns string
		ns, _, _ = deliverySetup(func(n string) func() []string { ns = n; return verifiedWith(n) })
		Expect(k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Eventually(func() bool {
			err := k8s.Get(context.Background(), client.ObjectKey{Name: ns}, &corev1.Namespace{})
			return apierrors.IsNotFound(err)
		}, "2m").Should(BeTrue(), "namespace not deleted; kube-controller-manager log: %s", env.ControllerManagerLog())
		var secrets corev1.SecretList
		Expect(k8s.List(context.Background(), &secrets, client.InNamespace(ns))).To(Succeed())
		Expect(secrets.Items).To(BeEmpty())
		var eps hooklinev1.WebhookEndpointList
		Expect(k8s.List(context.Background(), &eps, client.InNamespace(ns))).To(Succeed())
		Expect(eps.Items).To(BeEmpty())
		// Nothing of the namespace is left in the queue: no attempt log, dead
		// letters, parked or waiting deliveries, lanes or consumers.
		Eventually(func() []string { return queueHolds(ns) }, "3m").Should(BeEmpty())
	})
})
