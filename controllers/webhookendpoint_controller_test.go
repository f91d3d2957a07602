package controllers_test

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/signing"
)

// keysOf reads the endpoint's signing Secret.
func keysOf(g Gomega, ep *hooklinev1.WebhookEndpoint) signing.KeySet {
	var s corev1.Secret
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ep.Namespace, Name: signing.SecretName(ep.Name)}, &s)).To(Succeed())
	ks, err := signing.KeySetFromSecretData(s.Data)
	g.Expect(err).NotTo(HaveOccurred())
	return ks
}

func statusOf(g Gomega, ep *hooklinev1.WebhookEndpoint) hooklinev1.WebhookEndpointStatus {
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(ep), ep)).To(Succeed())
	return ep.Status
}

func rotatingEndpoint(ns, name, every, overlap string) *hooklinev1.WebhookEndpoint {
	ep := newEndpoint(ns, name)
	ep.Spec.Signing = &hooklinev1.Signing{Rotation: &hooklinev1.Rotation{Every: mustDuration(every), Overlap: mustDuration(overlap)}}
	return ep
}

// secretValues collects every key secret seen, to check they never leak.
var secretValues []string

func remember(ks signing.KeySet) signing.KeySet {
	secretValues = append(secretValues, ks.Current.Secret)
	if ks.Previous != nil {
		secretValues = append(secretValues, ks.Previous.Secret)
	}
	return ks
}

var _ = Describe("WebhookEndpoint", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("is SecretNotFound until a referenced Secret exists, SecretNotOptedIn until it is labelled, then Ready", func() {
		ep := newEndpoint(ns, "billing")
		ep.Spec.Auth = &hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: "billing-token", Key: "token"}}
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonSecretNotFound))
		Expect(readyOf(ep)(Default).Message).To(ContainSubstring(`spec.auth.bearer refers to Secret "billing-token", which does not exist`))

		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing-token"}, Data: map[string][]byte{"wrong": []byte("x")}}
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonSecretInvalid))
		Expect(readyOf(ep)(Default).Message).To(ContainSubstring(`Secret "billing-token" has no key "token"`))

		secret.Data = map[string][]byte{"token": []byte("t0ken")}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonSecretNotOptedIn))
		msg := readyOf(ep)(Default).Message
		Expect(msg).To(ContainSubstring(`spec.auth.bearer refers to Secret "billing-token", which is not labelled hookline.io/endpoint-secret: "true"`))
		Expect(msg).To(ContainSubstring("kubectl label secret billing-token hookline.io/endpoint-secret=true"))
		Expect(msg).NotTo(ContainSubstring("t0ken"))
		var signingSecret corev1.Secret
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.SecretName("billing")}, &signingSecret))).To(BeTrue(),
			"nothing is set up for an endpoint whose Secrets did not opt in")

		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
		secret.Labels = map[string]string{hooklinev1.LabelEndpointSecret: "true"}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
	})

	It("generates a signing key in an owned, labelled Secret and reports the schedule", func() {
		ep := rotatingEndpoint(ns, "gen", "720h", "24h")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))

		var s corev1.Secret
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.SecretName("gen")}, &s)).To(Succeed())
		Expect(s.Labels).To(HaveKeyWithValue(hooklinev1.LabelSigningSecret, "true"))
		Expect(s.Labels).To(HaveKeyWithValue(hooklinev1.LabelEndpoint, "gen"))
		Expect(metav1.IsControlledBy(&s, ep)).To(BeTrue())
		ks := remember(keysOf(Default, ep))
		Expect(ks.Current.Secret).To(HavePrefix("whsec_"))
		Expect(ks.Previous).To(BeNil())

		st := statusOf(Default, ep)
		Expect(st.Signing).NotTo(BeNil())
		Expect(st.Signing.SecretName).To(Equal(s.Name))
		Expect(st.Signing.CurrentKeyID).To(Equal(ks.Current.ID))
		Expect(st.Signing.LastRotationTime.Time).To(BeTemporally("==", fakeClock.Now().Truncate(time.Second)))
		Expect(st.Signing.NextRotationTime.Time).To(BeTemporally("==", ks.Current.CreatedAt.Add(720*time.Hour)))
	})

	It("rotates at the scheduled moment, keeps the previous key for the overlap, then drops it", func() {
		ep := rotatingEndpoint(ns, "sched", "2h", "30m")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
		first := remember(keysOf(Default, ep))

		By("not rotating a second early")
		fakeClock.SetTime(first.Current.CreatedAt.Add(2*time.Hour - time.Second))
		pokeAndWait(ep)
		Expect(keysOf(Default, ep).Current.ID).To(Equal(first.Current.ID))

		By("rotating when the period ends")
		fakeClock.SetTime(first.Current.CreatedAt.Add(2 * time.Hour))
		var second signing.KeySet
		Eventually(func(g Gomega) {
			second = keysOf(g, ep)
			g.Expect(second.Current.ID).NotTo(Equal(first.Current.ID))
		}).Should(Succeed())
		remember(second)
		Expect(second.Previous).NotTo(BeNil())
		Expect(second.Previous.ID).To(Equal(first.Current.ID))
		Expect(second.Previous.ExpiresAt).To(BeTemporally("==", fakeClock.Now().Add(30*time.Minute)))
		Eventually(func(g Gomega) string { return statusOf(g, ep).Signing.PreviousKeyID }).Should(Equal(first.Current.ID))

		By("announcing the rotation with an Event that holds no key material")
		Eventually(func(g Gomega) []string { return eventReasons(g, ns, "sched") }).Should(ContainElement("SigningKeyRotated"))

		By("dropping the previous key when the overlap ends")
		fakeClock.Step(30 * time.Minute)
		Eventually(func(g Gomega) *signing.Key { return keysOf(g, ep).Previous }).Should(BeNil())
		Eventually(func(g Gomega) string { return statusOf(g, ep).Signing.PreviousKeyID }).Should(BeEmpty())
		Expect(keysOf(Default, ep).Current.ID).To(Equal(second.Current.ID))
	})

	It("carries on after an operator restart in the middle of an overlap", func() {
		ep := rotatingEndpoint(ns, "restart", "3h", "1h")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
		first := remember(keysOf(Default, ep))
		fakeClock.SetTime(first.Current.CreatedAt.Add(3 * time.Hour))
		Eventually(func(g Gomega) *signing.Key { return keysOf(g, ep).Previous }).ShouldNot(BeNil())
		second := remember(keysOf(Default, ep))

		restartManager()
		pokeAndWait(ep)
		Expect(keysOf(Default, ep).Current.ID).To(Equal(second.Current.ID))

		fakeClock.Step(time.Hour)
		Eventually(func(g Gomega) *signing.Key { return keysOf(g, ep).Previous }).Should(BeNil())
		Expect(keysOf(Default, ep).Current.ID).To(Equal(second.Current.ID))
	})

	It("rotates once per manual request value, with or without overlap", func() {
		ep := rotatingEndpoint(ns, "manual", "720h", "24h")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
		first := remember(keysOf(Default, ep))

		annotate := func(key, value string) {
			Eventually(func(g Gomega) {
				g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ep), ep)).To(Succeed())
				if ep.Annotations == nil {
					ep.Annotations = map[string]string{}
				}
				ep.Annotations[key] = value
				g.Expect(k8sClient.Update(ctx, ep)).To(Succeed())
			}).Should(Succeed())
		}

		By("rotating with overlap on a new hookline.io/rotate value")
		annotate(hooklinev1.AnnotationRotate, "ticket-1")
		Eventually(func(g Gomega) string { return keysOf(g, ep).Current.ID }).ShouldNot(Equal(first.Current.ID))
		second := remember(keysOf(Default, ep))
		Expect(second.Previous.ID).To(Equal(first.Current.ID))

		By("not rotating again for the same value, even after a restart")
		restartManager()
		pokeAndWait(ep)
		Expect(keysOf(Default, ep).Current.ID).To(Equal(second.Current.ID))

		By("rotating again during the overlap: the first key keeps its announced expiry")
		fakeClock.Step(time.Hour)
		annotate(hooklinev1.AnnotationRotate, "ticket-2")
		Eventually(func(g Gomega) string { return keysOf(g, ep).Current.ID }).ShouldNot(Equal(second.Current.ID))
		third := remember(keysOf(Default, ep))
		Expect(third.Previous.ID).To(Equal(second.Current.ID))
		Expect(third.Older).To(HaveLen(1))
		Expect(third.Older[0].ID).To(Equal(first.Current.ID))
		Expect(third.Older[0].ExpiresAt).To(BeTemporally("==", second.Previous.ExpiresAt))
		signer, err := signing.NewSigner(third, fakeClock.Now())
		Expect(err).NotTo(HaveOccurred())
		Expect(signer.KeyIDs()).To(Equal([]string{third.Current.ID, second.Current.ID, first.Current.ID}))

		By("dropping the first key exactly when its overlap ends, keeping the second")
		fakeClock.SetTime(second.Previous.ExpiresAt)
		Eventually(func(g Gomega) []signing.Key { return keysOf(g, ep).Older }).Should(BeEmpty())
		Expect(keysOf(Default, ep).Previous.ID).To(Equal(second.Current.ID))

		By("rotating without overlap on hookline.io/rotate-immediately")
		annotate(hooklinev1.AnnotationRotateImmediately, "leak-2026-11")
		Eventually(func(g Gomega) string { return keysOf(g, ep).Current.ID }).ShouldNot(Equal(third.Current.ID))
		fourth := remember(keysOf(Default, ep))
		Expect(fourth.Previous).To(BeNil(), "a leaked key must stop signing at once")
		Expect(fourth.Older).To(BeEmpty(), "every key of the leaked Secret must stop signing at once")
	})

	It("uses a user-provided key as given, follows changes to it, and never rotates it", func() {
		user := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "partner-key"},
			Data: map[string][]byte{"secret": []byte("not-a-key")}}
		Expect(k8sClient.Create(ctx, user)).To(Succeed())
		ep := newEndpoint(ns, "partner")
		ep.Spec.Signing = &hooklinev1.Signing{SecretRef: &hooklinev1.SecretKeyRef{Name: "partner-key", Key: "secret"}}
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())

		By("refusing a malformed key with a reason that says what to fix")
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonSigningKeyInvalid))
		Expect(readyOf(ep)(Default).Message).To(ContainSubstring("spec.signing.secretRef"))

		By("using the key once it is valid")
		key1, err := signing.GenerateSecret()
		Expect(err).NotTo(HaveOccurred())
		secretValues = append(secretValues, key1)
		user.Data = map[string][]byte{"secret": []byte(key1)}
		Expect(k8sClient.Update(ctx, user)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
		Expect(keysOf(Default, ep).Current.Secret).To(Equal(key1))
		Expect(statusOf(Default, ep).Signing.NextRotationTime).To(BeNil())

		By("following the user's change")
		key2, err := signing.GenerateSecret()
		Expect(err).NotTo(HaveOccurred())
		secretValues = append(secretValues, key2)
		user.Data = map[string][]byte{"secret": []byte(key2)}
		Expect(k8sClient.Update(ctx, user)).To(Succeed())
		Eventually(func(g Gomega) string { return keysOf(g, ep).Current.Secret }).Should(Equal(key2))

		By("never rotating it, however much time passes")
		fakeClock.Step(24 * 365 * time.Hour)
		pokeAndWait(ep)
		Expect(keysOf(Default, ep).Current.Secret).To(Equal(key2))
	})

	It("has its signing Secret garbage-collected with it", func() {
		ep := newEndpoint(ns, "short-lived")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
		remember(keysOf(Default, ep))
		Expect(k8sClient.Delete(ctx, ep)).To(Succeed())
		Eventually(func() bool {
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.SecretName("short-lived")}, &corev1.Secret{})
			return apierrors.IsNotFound(err)
		}, "60s").Should(BeTrue(), "kube-controller-manager log: %s", env.ControllerManagerLog())
	})

	It("never puts key material in Events, status or logs", func() {
		Expect(secretValues).NotTo(BeEmpty())
		var evs eventsv1.EventList
		Expect(k8sClient.List(ctx, &evs)).To(Succeed())
		var eps hooklinev1.WebhookEndpointList
		Expect(k8sClient.List(ctx, &eps)).To(Succeed())
		var everything strings.Builder
		for _, e := range evs.Items {
			everything.WriteString(e.Note + e.Reason + "\n")
		}
		for _, ep := range eps.Items {
			status, err := json.Marshal(ep.Status)
			Expect(err).NotTo(HaveOccurred())
			everything.Write(status)
		}
		everything.WriteString(logs.String())
		for _, v := range secretValues {
			raw := strings.TrimPrefix(v, "whsec_")
			Expect(everything.String()).NotTo(ContainSubstring(raw))
		}
	})
})

func eventReasons(g Gomega, ns, name string) []string {
	var evs eventsv1.EventList
	g.Expect(k8sClient.List(context.Background(), &evs, client.InNamespace(ns))).To(Succeed())
	var reasons []string
	for _, e := range evs.Items {
		if e.Regarding.Name == name {
			reasons = append(reasons, e.Reason)
			g.Expect(e.Note).NotTo(ContainSubstring("whsec_"))
		}
	}
	return reasons
}

func mustDuration(s string) *hooklinev1.Duration {
	d, err := time.ParseDuration(s)
	Expect(err).NotTo(HaveOccurred())
	return hooklinev1.DurationOf(d)
}

// pokeAndWait changes ep's spec harmlessly (limits.maxInFlight) and waits until the
// operator has written status for the new generation: proof that a reconcile ran after
// the test's last step, so a negative check that follows waits on an observable instead
// of a fixed time.
func pokeAndWait(ep *hooklinev1.WebhookEndpoint) {
	GinkgoHelper()
	ctx := context.Background()
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ep), ep)).To(Succeed())
		if ep.Spec.Limits == nil {
			ep.Spec.Limits = &hooklinev1.EndpointLimits{}
		}
		ep.Spec.Limits.MaxInFlight = ptr.To(ep.Spec.Limits.GetMaxInFlight()%1000 + 1)
		g.Expect(k8sClient.Update(ctx, ep)).To(Succeed())
	}).Should(Succeed())
	gen := ep.Generation
	Eventually(func(g Gomega) int64 { return statusOf(g, ep).ObservedGeneration }).Should(Equal(gen))
}
