package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/config/argocd"
)

// health is what Flux (kstatus) and Argo CD (the shipped Lua check) make of an object.
type health struct {
	KStatus status.Status
	Argo    string
}

// healthOf reads obj from the API server and computes both verdicts on the same JSON.
func healthOf(obj client.Object, kind string) func(g Gomega) health {
	return func(g Gomega) health {
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		g.Expect(err).NotTo(HaveOccurred())
		u := &unstructured.Unstructured{Object: raw}
		u.SetAPIVersion(hooklinev1.GroupVersion.String())
		u.SetKind(kind)
		res, err := status.Compute(u)
		g.Expect(err).NotTo(HaveOccurred())
		argo, _, err := argocd.Health(kind, u.Object)
		g.Expect(err).NotTo(HaveOccurred())
		return health{res.Status, argo}
	}
}

// applyDisabled writes the Disabled condition as the dispatcher's status writer does
// (internal/status, its own field manager).
func applyDisabled(ep *hooklinev1.WebhookEndpoint, disabled bool) {
	GinkgoHelper()
	c := metav1.Condition{Type: hooklinev1.ConditionDisabled, Status: metav1.ConditionFalse, Reason: hooklinev1.ReasonEnabled,
		Message: "The endpoint is enabled.", LastTransitionTime: metav1.Now()}
	if disabled {
		c.Status, c.Reason = metav1.ConditionTrue, hooklinev1.ReasonEndpointGone
		c.Message = "The receiver answered 410 Gone. To re-enable it: kubectl annotate webhookendpoint x hookline.io/enable=<new value> --overwrite"
	}
	cond, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
	Expect(err).NotTo(HaveOccurred())
	u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": []any{cond}}}}
	u.SetGroupVersionKind(hooklinev1.GroupVersion.WithKind("WebhookEndpoint"))
	u.SetNamespace(ep.Namespace)
	u.SetName(ep.Name)
	Expect(k8sClient.Status().Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner("hookline-dispatcher"), client.ForceOwnership)).To(Succeed())
}

var _ = Describe("The status contract", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("is Current/Healthy when ready, InProgress/Progressing while waiting, Failed/Degraded when broken", func() {
		By("a ready endpoint and subscription")
		ep := newEndpoint(ns, "billing")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		sub := newSubscription(ns, "invoices", "billing")
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		Eventually(healthOf(ep, "WebhookEndpoint")).Should(Equal(health{status.CurrentStatus, "Healthy"}))
		Eventually(healthOf(sub, "Subscription")).Should(Equal(health{status.CurrentStatus, "Healthy"}))
		Expect(meta.FindStatusCondition(ep.Status.Conditions, hooklinev1.ConditionReconciling)).To(BeNil())
		Expect(meta.FindStatusCondition(ep.Status.Conditions, hooklinev1.ConditionStalled)).To(BeNil())

		By("waiting for a Secret that is not there yet: Reconciling, not Stalled")
		waiting := newEndpoint(ns, "waiting")
		waiting.Spec.Auth = &hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: "later", Key: "token"}}
		Expect(k8sClient.Create(ctx, waiting)).To(Succeed())
		Eventually(readyOf(waiting)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonSecretNotFound))
		Expect(healthOf(waiting, "WebhookEndpoint")(Default)).To(Equal(health{status.InProgressStatus, "Progressing"}))
		Expect(meta.IsStatusConditionTrue(waiting.Status.Conditions, hooklinev1.ConditionReconciling)).To(BeTrue())

		By("a subscription whose endpoint does not exist yet")
		orphan := newSubscription(ns, "orphan", "nowhere")
		Expect(k8sClient.Create(ctx, orphan)).To(Succeed())
		Eventually(readyOf(orphan)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonEndpointNotFound))
		Expect(healthOf(orphan, "Subscription")(Default)).To(Equal(health{status.InProgressStatus, "Progressing"}))

		By("a filter that does not compile: Stalled")
		broken := newSubscription(ns, "broken", "billing")
		broken.Spec.Filter = "data.amount >"
		Expect(k8sClient.Create(ctx, broken)).To(Succeed())
		Eventually(healthOf(broken, "Subscription")).Should(Equal(health{status.FailedStatus, "Degraded"}))
		Expect(readyOf(broken)(Default)).To(haveReady(metav1.ConditionFalse, hooklinev1.ReasonInvalidFilter))

		By("fixing it: Stalled goes away")
		broken.Spec.Filter = "data.amount > 1"
		Expect(k8sClient.Update(ctx, broken)).To(Succeed())
		Eventually(healthOf(broken, "Subscription")).Should(Equal(health{status.CurrentStatus, "Healthy"}))
		Expect(meta.FindStatusCondition(broken.Status.Conditions, hooklinev1.ConditionStalled)).To(BeNil())
	})

	It("says Suspended for a suspended object, and it still counts as current", func() {
		ep := newEndpoint(ns, "paused")
		ep.Spec.Suspend = true
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		sub := newSubscription(ns, "paused", "paused")
		sub.Spec.Suspend = true
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		Eventually(healthOf(ep, "WebhookEndpoint")).Should(Equal(health{status.CurrentStatus, "Suspended"}))
		Eventually(healthOf(sub, "Subscription")).Should(Equal(health{status.CurrentStatus, "Suspended"}))
		Expect(readyOf(ep)(Default)).To(haveReady(metav1.ConditionTrue, hooklinev1.ReasonSuspended))
		Expect(readyOf(sub)(Default)).To(haveReady(metav1.ConditionTrue, hooklinev1.ReasonSuspended))
	})

	It("turns the dispatcher's Disabled into Ready=False and Stalled, and back on re-enable", func() {
		ep := newEndpoint(ns, "gone")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		sub := newSubscription(ns, "to-gone", "gone")
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		Eventually(healthOf(ep, "WebhookEndpoint")).Should(Equal(health{status.CurrentStatus, "Healthy"}))

		applyDisabled(ep, true)
		Eventually(healthOf(ep, "WebhookEndpoint")).Should(Equal(health{status.FailedStatus, "Degraded"}))
		c := readyOf(ep)(Default)
		Expect(c).To(haveReady(metav1.ConditionFalse, hooklinev1.ReasonEndpointDisabled))
		Expect(c.Message).To(ContainSubstring("410 Gone. To re-enable it: kubectl annotate"))
		By("its subscription saying why, stalled with it")
		Eventually(healthOf(sub, "Subscription")).Should(Equal(health{status.FailedStatus, "Degraded"}))
		Expect(readyOf(sub)(Default).Message).To(ContainSubstring("(EndpointDisabled)"))

		applyDisabled(ep, false)
		Eventually(healthOf(ep, "WebhookEndpoint")).Should(Equal(health{status.CurrentStatus, "Healthy"}))
		Eventually(healthOf(sub, "Subscription")).Should(Equal(health{status.CurrentStatus, "Healthy"}))
	})

	It("is InProgress/Progressing after a spec change until the operator has seen it", func() {
		// The operator writes observedGeneration with the verdict; a generation it has not
		// seen is never current. A TLS Secret turned invalid shows the whole arc.
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca", Labels: optedIn},
			StringData: map[string]string{"ca.crt": "not PEM"}})).To(Succeed())
		ep := newEndpoint(ns, "private-pki")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(healthOf(ep, "WebhookEndpoint")).Should(Equal(health{status.CurrentStatus, "Healthy"}))

		stopManager()
		<-managerDone
		ep.Spec.TLS = &hooklinev1.EndpointTLS{CA: &hooklinev1.SecretKeyRef{Name: "ca", Key: "ca.crt"}}
		ep.Spec.Limits = &hooklinev1.EndpointLimits{MaxInFlight: ptr.To[int32](4)}
		Expect(k8sClient.Update(ctx, ep)).To(Succeed())
		Expect(healthOf(ep, "WebhookEndpoint")(Default)).To(Equal(health{status.InProgressStatus, "Progressing"}))
		startManager()
		Eventually(healthOf(ep, "WebhookEndpoint")).Should(Equal(health{status.FailedStatus, "Degraded"}))
		Expect(readyOf(ep)(Default)).To(haveReady(metav1.ConditionFalse, hooklinev1.ReasonTLSInvalid))
	})
})
