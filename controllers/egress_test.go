package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

var _ = Describe("WebhookEndpoint with OAuth2 and a proxy", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("checks the OAuth2 client secret like any Secret it sends: present, with its key, opted in", func() {
		ep := newEndpoint(ns, "crm")
		ep.Spec.Auth = &hooklinev1.EndpointAuth{OAuth2: &hooklinev1.OAuth2Auth{
			TokenURL: "https://auth.example.com/oauth2/token", ClientID: "hookline",
			ClientSecret: hooklinev1.SecretKeyRef{Name: "crm-client", Key: "client-secret"},
		}}
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonSecretNotFound))
		Expect(readyOf(ep)(Default).Message).To(ContainSubstring(`spec.auth.oauth2.clientSecret refers to Secret "crm-client", which does not exist`))

		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "crm-client"}, Data: map[string][]byte{"client-secret": []byte("s3cr3t")}}
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonSecretNotOptedIn))
		Expect(readyOf(ep)(Default).Message).NotTo(ContainSubstring("s3cr3t"))

		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
		secret.Labels = map[string]string{hooklinev1.LabelEndpointSecret: "true"}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
	})

	It("refuses a proxy URL that is more than scheme://host:port", func() {
		ep := newEndpoint(ns, "proxied")
		ep.Spec.Proxy = &hooklinev1.EndpointProxy{URL: "http://egress.example.net:3128/path"}
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonInvalidConfiguration))
		Expect(readyOf(ep)(Default).Message).To(ContainSubstring("proxy URL must be only scheme://host:port"))

		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ep), ep)).To(Succeed())
		ep.Spec.Proxy.URL = "http://egress.example.net:3128"
		Expect(k8sClient.Update(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
	})
})
