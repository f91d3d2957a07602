package controllers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
)

// The dispatcher's whole refusal list (internal/delivery: buildTarget, tlsConfig), walked
// against the real API server and the operator: each case is either refused at apply time
// with a message naming the field, or accepted and reported Ready=False, Stalled=True with
// the reason the dispatcher would give. No case may show Ready=True.
var _ = Describe("A deliverable endpoint", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	refused := func(ep *hooklinev1.WebhookEndpoint, message string) {
		GinkgoHelper()
		err := k8sClient.Create(ctx, ep)
		Expect(err).To(HaveOccurred(), "the API server accepted an endpoint the dispatcher refuses")
		Expect(err.Error()).To(ContainSubstring(message))
	}
	withHeader := func(name, value string) *hooklinev1.WebhookEndpoint {
		ep := newEndpoint(ns, "")
		ep.GenerateName = "h-"
		ep.Spec.Headers = []hooklinev1.Header{{Name: name, Value: ptr.To(value)}}
		return ep
	}

	It("refuses every reserved header name at apply time", func() {
		names := append([]string(nil), delivery.ReservedHeaders...)
		for _, p := range delivery.ReservedHeaderPrefixes {
			names = append(names, p+"Anything")
		}
		names = append(names, "proxy-authorization", "KEEP-ALIVE", "x-idempotency-key")
		for _, name := range names {
			Expect(delivery.IsReservedHeader(name)).To(BeTrue(), name)
			By(name + " as a header")
			refused(withHeader(name, "v"), "header is set by hookline and cannot be overridden")

			By(name + " as the API key's header")
			ep := newEndpoint(ns, "")
			ep.GenerateName = "k-"
			ep.Spec.Auth = &hooklinev1.EndpointAuth{APIKey: &hooklinev1.APIKeyAuth{Name: name, ValueFrom: hooklinev1.SecretKeyRef{Name: "s", Key: "k"}}}
			refused(ep, "spec.auth.apiKey.name: header is set by hookline and cannot carry an API key")
		}
		By("an ordinary name passing both checks")
		Expect(delivery.IsReservedHeader("X-Tenant")).To(BeFalse())
		Expect(k8sClient.Create(ctx, withHeader("X-Tenant", "acme"))).To(Succeed())
	})

	It("refuses at apply time what the dispatcher refuses in the spec alone", func() {
		refused(withHeader("X-A", "line\nbreak"), "header value must be one line of printable text")
		refused(withHeader("X-A", "nul\x00"), "header value must be one line of printable text")

		ep := withHeader("x-api-key", "v")
		ep.Spec.Auth = &hooklinev1.EndpointAuth{APIKey: &hooklinev1.APIKeyAuth{Name: "X-Api-Key", ValueFrom: hooklinev1.SecretKeyRef{Name: "s", Key: "k"}}}
		refused(ep, "spec.headers sets the header spec.auth.apiKey sends the key in")

		ep = withHeader("authorization", "v")
		ep.Spec.Auth = &hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: "s", Key: "k"}}
		refused(ep, "spec.headers must not set Authorization when spec.auth.basic or spec.auth.bearer sends it")

		ep = withHeader("Authorization", "v")
		ep.Spec.Auth = &hooklinev1.EndpointAuth{Basic: &hooklinev1.SecretRef{Name: "s"}}
		refused(ep, "spec.headers must not set Authorization")

		ep = newEndpoint(ns, "two-auth")
		ep.Spec.Auth = &hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: "s", Key: "k"}, Basic: &hooklinev1.SecretRef{Name: "s"}}
		refused(ep, "auth must set exactly one of apiKey, basic, bearer, mtls and oauth2")

		for url, msg := range map[string]string{
			"ftp://example.com/hook":         "spec.url must use https://",
			"https://user:pw@example.com/":   "url must not contain credentials",
			"https:///path":                  "url must name a host",
			"https://exa mple.com/":          "url must be an absolute URL",
			"http://example.com/plain-http/": "set spec.allowInsecureHTTP: true",
		} {
			ep = newEndpoint(ns, "url")
			ep.Spec.URL = url
			refused(ep, msg)
		}
	})

	It("reports Ready=False and Stalled=True for every Secret value the dispatcher cannot use", func() {
		certPEM, keyPEM, otherKeyPEM := clientCertificate()
		secret := func(name string, data map[string]string) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: optedIn}, StringData: data}
			Expect(k8sClient.Create(ctx, s)).To(Succeed())
		}
		secret("values", map[string]string{
			"multiline": "first\nsecond", "nul": "a\x00b", "empty": "", "newline-only": "\n", "ok": "t0ken\n",
		})
		secret("ca", map[string]string{"no-pem": "not a certificate", "garbage-pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"})
		secret("mismatched", map[string]string{"tls.crt": certPEM, "tls.key": otherKeyPEM})
		secret("matching", map[string]string{"tls.crt": certPEM, "tls.key": keyPEM})

		ref := func(key string) hooklinev1.SecretKeyRef { return hooklinev1.SecretKeyRef{Name: "values", Key: key} }
		cases := []struct {
			name    string
			mutate  func(*hooklinev1.WebhookEndpointSpec)
			reason  string
			message string
		}{
			{"header-multiline", func(s *hooklinev1.WebhookEndpointSpec) {
				s.Headers = []hooklinev1.Header{{Name: "X-Tenant", ValueFrom: ptr.To(ref("multiline"))}}
			}, hooklinev1.ReasonSecretInvalid, "header X-Tenant has a value with control characters"},
			{"header-nul", func(s *hooklinev1.WebhookEndpointSpec) {
				s.Headers = []hooklinev1.Header{{Name: "X-Tenant", ValueFrom: ptr.To(ref("nul"))}}
			}, hooklinev1.ReasonSecretInvalid, "control characters"},
			{"apikey-control", func(s *hooklinev1.WebhookEndpointSpec) {
				s.Auth = &hooklinev1.EndpointAuth{APIKey: &hooklinev1.APIKeyAuth{In: hooklinev1.APIKeyInHeader, Name: "X-Api-Key", ValueFrom: ref("multiline")}}
			}, hooklinev1.ReasonSecretInvalid, "auth value for X-Api-Key has control characters"},
			{"apikey-empty", func(s *hooklinev1.WebhookEndpointSpec) {
				s.Auth = &hooklinev1.EndpointAuth{APIKey: &hooklinev1.APIKeyAuth{In: hooklinev1.APIKeyInQuery, Name: "key", ValueFrom: ref("newline-only")}}
			}, hooklinev1.ReasonSecretInvalid, "an API key needs a non-empty value"},
			{"bearer-control", func(s *hooklinev1.WebhookEndpointSpec) {
				s.Auth = &hooklinev1.EndpointAuth{Bearer: ptr.To(ref("nul"))}
			}, hooklinev1.ReasonSecretInvalid, "auth value for Authorization has control characters"},
			{"bearer-empty", func(s *hooklinev1.WebhookEndpointSpec) {
				s.Auth = &hooklinev1.EndpointAuth{Bearer: ptr.To(ref("empty"))}
			}, hooklinev1.ReasonSecretInvalid, `spec.auth.bearer: key "empty" of Secret "values" is empty`},
			{"ca-no-pem", func(s *hooklinev1.WebhookEndpointSpec) {
				s.TLS = &hooklinev1.EndpointTLS{CA: &hooklinev1.SecretKeyRef{Name: "ca", Key: "no-pem"}}
			}, hooklinev1.ReasonTLSInvalid, "CA bundle holds no PEM certificate"},
			{"ca-garbage-pem", func(s *hooklinev1.WebhookEndpointSpec) {
				s.TLS = &hooklinev1.EndpointTLS{CA: &hooklinev1.SecretKeyRef{Name: "ca", Key: "garbage-pem"}}
			}, hooklinev1.ReasonTLSInvalid, "CA bundle holds no PEM certificate"},
			{"mtls-mismatch", func(s *hooklinev1.WebhookEndpointSpec) {
				s.Auth = &hooklinev1.EndpointAuth{MTLS: &hooklinev1.SecretRef{Name: "mismatched"}}
			}, hooklinev1.ReasonTLSInvalid, "private key does not match public key"},
		}
		for _, tc := range cases {
			ep := newEndpoint(ns, tc.name)
			tc.mutate(&ep.Spec)
			Expect(k8sClient.Create(ctx, ep)).To(Succeed(), tc.name)
		}
		for _, tc := range cases {
			ep := newEndpoint(ns, tc.name)
			Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionFalse, tc.reason), tc.name)
			c := readyOf(ep)(Default)
			Expect(c.Message).To(ContainSubstring(tc.message), tc.name)
			Expect(strings.ToLower(c.Message)).To(ContainSubstring("fix the secret"), tc.name)
			Expect(meta.IsStatusConditionTrue(ep.Status.Conditions, hooklinev1.ConditionStalled)).To(BeTrue(), tc.name)
			for _, v := range []string{"first\nsecond", "t0ken", keyPEM, otherKeyPEM} {
				Expect(c.Message).NotTo(ContainSubstring(v), "a Secret value leaked into status")
			}
		}

		By("the same endpoint with usable values becoming Ready")
		ep := newEndpoint(ns, "fixed")
		ep.Spec.Headers = []hooklinev1.Header{{Name: "X-Tenant", ValueFrom: ptr.To(ref("ok"))}}
		ep.Spec.Auth = &hooklinev1.EndpointAuth{MTLS: &hooklinev1.SecretRef{Name: "matching"}}
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Eventually(readyOf(ep)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonReady))
	})
})

// clientCertificate returns a self-signed certificate, its key, and a key that does not
// match it, all PEM.
func clientCertificate() (certPEM, keyPEM, otherKeyPEM string) {
	key := func() (*ecdsa.PrivateKey, string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		der, err := x509.MarshalECPrivateKey(k)
		Expect(err).NotTo(HaveOccurred())
		return k, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	}
	k, keyPEM := key()
	_, otherKeyPEM = key()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookline-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	Expect(err).NotTo(HaveOccurred())
	certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return certPEM, keyPEM, strings.TrimSpace(otherKeyPEM) + "\n"
}
