package controllers_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/controllers"
	"github.com/hookline/hookline/internal/signing"
)

// publicOf derives the whpk_ public key of a whsk_ seed with crypto/ed25519 directly, not
// with the operator's code.
func publicOf(secret string) string {
	GinkgoHelper()
	Expect(secret).To(HavePrefix("whsk_"))
	seed, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsk_"))
	Expect(err).NotTo(HaveOccurred())
	Expect(seed).To(HaveLen(ed25519.SeedSize))
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	return "whpk_" + base64.StdEncoding.EncodeToString(pub)
}

func publicKeysConfigMap(g Gomega, ep *hooklinev1.WebhookEndpoint) *corev1.ConfigMap {
	var cm corev1.ConfigMap
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ep.Namespace, Name: controllers.PublicKeysConfigMapName(ep.Name)}, &cm)).To(Succeed())
	return &cm
}

func publishedKeys(st *hooklinev1.SigningStatus) []string {
	var out []string
	for _, p := range st.PublicKeys {
		out = append(out, p.PublicKey)
	}
	return out
}

var _ = Describe("WebhookEndpoint with ed25519 signing", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("keeps the private key in the Secret, publishes the public keys in status and a ConfigMap, and rotates with overlap", func() {
		ep := rotatingEndpoint(ns, "asym", "2h", "30m")
		ep.Spec.Signing.Algorithm = "ed25519"
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))

		By("generating a whsk_ private key in the signing Secret")
		first := remember(keysOf(Default, ep))
		Expect(first.Current.Secret).To(HavePrefix("whsk_"))
		pub1 := publicOf(first.Current.Secret)

		By("publishing its public key in status.signing")
		var st *hooklinev1.SigningStatus
		Eventually(func(g Gomega) []hooklinev1.SigningPublicKey {
			st = statusOf(g, ep).Signing
			return st.PublicKeys
		}).Should(HaveLen(1))
		Expect(st.Algorithm).To(Equal("ed25519"))
		Expect(st.PublicKeys[0]).To(Equal(hooklinev1.SigningPublicKey{KeyID: first.Current.ID, PublicKey: pub1}))
		Expect(st.PublicKeysConfigMap).To(Equal(controllers.PublicKeysConfigMapName("asym")))

		By("publishing it in a ConfigMap the endpoint owns")
		cm := publicKeysConfigMap(Default, ep)
		Expect(metav1.IsControlledBy(cm, ep)).To(BeTrue())
		Expect(cm.Data).To(Equal(map[string]string{
			"algorithm": "ed25519", "current": pub1, "current.id": first.Current.ID, "keys": pub1 + "\n",
		}))

		By("publishing both public keys during a rotation's overlap")
		fakeClock.SetTime(first.Current.CreatedAt.Add(2 * time.Hour))
		var second signing.KeySet
		Eventually(func(g Gomega) {
			second = keysOf(g, ep)
			g.Expect(second.Current.ID).NotTo(Equal(first.Current.ID))
		}).Should(Succeed())
		remember(second)
		pub2 := publicOf(second.Current.Secret)
		Expect(second.Previous.Secret).To(Equal(first.Current.Secret))
		Eventually(func(g Gomega) []string { return publishedKeys(statusOf(g, ep).Signing) }).Should(Equal([]string{pub2, pub1}))
		st = statusOf(Default, ep).Signing
		Expect(st.PublicKeys[1].ExpiresAt.Time).To(BeTemporally("==", second.Previous.ExpiresAt))
		Eventually(func(g Gomega) map[string]string { return publicKeysConfigMap(g, ep).Data }).Should(Equal(map[string]string{
			"algorithm": "ed25519", "current": pub2, "current.id": second.Current.ID, "keys": pub2 + "\n" + pub1 + "\n",
		}))

		By("dropping the old public key when the overlap ends")
		fakeClock.Step(30 * time.Minute)
		Eventually(func(g Gomega) []string { return publishedKeys(statusOf(g, ep).Signing) }).Should(Equal([]string{pub2}))
		Eventually(func(g Gomega) string { return publicKeysConfigMap(g, ep).Data["keys"] }).Should(Equal(pub2 + "\n"))

		By("rotating to an HMAC key, with overlap, when the algorithm changes back")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ep), ep)).To(Succeed())
			ep.Spec.Signing.Algorithm = "hmac-sha256"
			g.Expect(k8sClient.Update(ctx, ep)).To(Succeed())
		}).Should(Succeed())
		var third signing.KeySet
		Eventually(func(g Gomega) string {
			third = keysOf(g, ep)
			return third.Current.Secret
		}).Should(HavePrefix("whsec_"))
		remember(third)
		Expect(third.Previous).NotTo(BeNil())
		Expect(third.Previous.Secret).To(Equal(second.Current.Secret))
		Eventually(func(g Gomega) string { return statusOf(g, ep).Signing.Algorithm }).Should(Equal("hmac-sha256"))
		Expect(publishedKeys(statusOf(Default, ep).Signing)).To(Equal([]string{pub2}), "the ed25519 key still signs during the overlap")
		Eventually(func(g Gomega) map[string]string { return publicKeysConfigMap(g, ep).Data }).Should(Equal(map[string]string{
			"algorithm": "hmac-sha256", "keys": pub2 + "\n",
		}))

		By("removing the ConfigMap once no ed25519 key signs")
		fakeClock.Step(30 * time.Minute)
		Eventually(func(g Gomega) bool {
			var cm corev1.ConfigMap
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.PublicKeysConfigMapName("asym")}, &cm)
			return apierrors.IsNotFound(err)
		}).Should(BeTrue())
		st = statusOf(Default, ep).Signing
		Expect(st.PublicKeys).To(BeEmpty())
		Expect(st.PublicKeysConfigMap).To(BeEmpty())
	})

	It("rotates an existing HMAC endpoint to ed25519 with overlap", func() {
		ep := rotatingEndpoint(ns, "switch", "720h", "1h")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
		hmacKeys := remember(keysOf(Default, ep))
		Expect(hmacKeys.Current.Secret).To(HavePrefix("whsec_"))

		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ep), ep)).To(Succeed())
			ep.Spec.Signing.Algorithm = "ed25519"
			g.Expect(k8sClient.Update(ctx, ep)).To(Succeed())
		}).Should(Succeed())
		var ks signing.KeySet
		Eventually(func(g Gomega) string {
			ks = keysOf(g, ep)
			return ks.Current.Secret
		}).Should(HavePrefix("whsk_"))
		remember(ks)
		Expect(ks.Previous.Secret).To(Equal(hmacKeys.Current.Secret))
		Expect(ks.Previous.ExpiresAt).To(BeTemporally("==", ks.Current.CreatedAt.Add(time.Hour)))
		Eventually(func(g Gomega) []string { return publishedKeys(statusOf(g, ep).Signing) }).Should(Equal([]string{publicOf(ks.Current.Secret)}))
		Eventually(func(g Gomega) []string { return eventReasons(g, ns, "switch") }).Should(ContainElement("SigningKeyRotated"))
	})

	It("refuses an unknown algorithm and ed25519 with a user-provided key, naming the field", func() {
		ep := newEndpoint(ns, "bad-alg")
		ep.Spec.Signing = &hooklinev1.Signing{Algorithm: "rsa"}
		err := k8sClient.Create(ctx, ep)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("signing.algorithm must be hmac-sha256 or ed25519"))

		ep = newEndpoint(ns, "bad-ref")
		ep.Spec.Signing = &hooklinev1.Signing{Algorithm: "ed25519", SecretRef: &hooklinev1.SecretKeyRef{Name: "k", Key: "secret"}}
		err = k8sClient.Create(ctx, ep)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("signing.algorithm: ed25519 keys are generated and rotated by hookline"))
	})
})
