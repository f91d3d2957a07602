package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// readyOf returns a getter of obj's Ready condition for Eventually.
func readyOf(obj client.Object) func(g Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *hooklinev1.Subscription:
			conds = o.Status.Conditions
		case *hooklinev1.WebhookEndpoint:
			conds = o.Status.Conditions
		}
		c := meta.FindStatusCondition(conds, hooklinev1.ConditionReady)
		g.Expect(c).NotTo(BeNil(), "no Ready condition yet")
		return *c
	}
}

func haveReady(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(HaveField("Status", status), HaveField("Reason", reason))
}

func newEndpoint(ns, name string) *hooklinev1.WebhookEndpoint {
	return &hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       hooklinev1.WebhookEndpointSpec{URL: "https://receiver.example.com/hooks"},
	}
}

func newSubscription(ns, name, endpoint string) *hooklinev1.Subscription {
	return &hooklinev1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: hooklinev1.SubscriptionSpec{
			EndpointRef: hooklinev1.EndpointRef{Name: endpoint},
			EventTypes:  []string{"invoice.*"},
		},
	}
}

var _ = Describe("Subscription", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("is EndpointNotFound until its endpoint appears, then Ready through the watch", func() {
		sub := newSubscription(ns, "invoices", "billing")
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonEndpointNotFound))
		Expect(readyOf(sub)(Default).Message).To(ContainSubstring(`WebhookEndpoint "billing" does not exist`))

		Expect(k8sClient.Create(ctx, newEndpoint(ns, "billing"))).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))

		By("going back to EndpointNotFound when the endpoint is deleted")
		Expect(k8sClient.Delete(ctx, newEndpoint(ns, "billing"))).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonEndpointNotFound))
	})

	It("is EndpointNotReady while its endpoint is not ready", func() {
		ep := newEndpoint(ns, "needs-token")
		ep.Spec.Auth = &hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: "absent", Key: "token"}}
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		sub := newSubscription(ns, "s", "needs-token")
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		// The subscription may first see the endpoint before its first reconcile; it
		// follows the endpoint's status.
		Eventually(readyOf(sub)).Should(And(haveReady(metav1.ConditionFalse, hooklinev1.ReasonEndpointNotReady),
			HaveField("Message", ContainSubstring("SecretNotFound"))))
	})

	It("reports a filter that does not compile, and recovers when it is fixed", func() {
		Expect(k8sClient.Create(ctx, newEndpoint(ns, "billing"))).To(Succeed())
		sub := newSubscription(ns, "filtered", "billing")
		sub.Spec.Filter = "data.amount >"
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonInvalidFilter))
		Expect(readyOf(sub)(Default).Message).To(ContainSubstring("spec.filter does not compile"))

		sub.Spec.Filter = "data.amount > 1000"
		Expect(k8sClient.Update(ctx, sub)).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
	})

	It("reports an ordering key that does not compile, as Stalled, and recovers when it is fixed", func() {
		Expect(k8sClient.Create(ctx, newEndpoint(ns, "billing"))).To(Succeed())
		sub := newSubscription(ns, "keyed", "billing")
		sub.Spec.Delivery = &hooklinev1.DeliveryPolicy{Ordering: hooklinev1.OrderingOrdered, OrderingKey: "data.amount > 3"}
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonInvalidOrderingKey))
		Expect(readyOf(sub)(Default).Message).To(And(ContainSubstring("spec.delivery.orderingKey does not compile"),
			ContainSubstring("must evaluate to a string"), ContainSubstring("string(data.accountId)")))
		Expect(meta.IsStatusConditionTrue(sub.Status.Conditions, hooklinev1.ConditionStalled)).To(BeTrue(), "Stalled=True next to Ready=False")

		sub.Spec.Delivery.OrderingKey = "data.customerId"
		Expect(k8sClient.Update(ctx, sub)).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
	})

	It("follows spec changes with observedGeneration", func() {
		Expect(k8sClient.Create(ctx, newEndpoint(ns, "billing"))).To(Succeed())
		sub := newSubscription(ns, "gen", "billing")
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
		Expect(sub.Status.ObservedGeneration).To(Equal(sub.Generation))

		sub.Spec.EventTypes = []string{"order.*"}
		Expect(k8sClient.Update(ctx, sub)).To(Succeed())
		Expect(sub.Generation).To(BeNumerically(">", 1))
		Eventually(func(g Gomega) int64 {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sub), sub)).To(Succeed())
			return sub.Status.ObservedGeneration
		}).Should(Equal(sub.Generation))
		Expect(readyOf(sub)(Default).ObservedGeneration).To(Equal(sub.Generation))
	})

	It("is Ready but says so when suspended", func() {
		Expect(k8sClient.Create(ctx, newEndpoint(ns, "billing"))).To(Succeed())
		sub := newSubscription(ns, "paused", "billing")
		sub.Spec.Suspend = true
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonSuspended))
	})
})
