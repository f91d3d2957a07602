package registry_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/signing"
)

// The live registry runs against a real kube-apiserver and etcd. No operator runs: the
// tests write the labelled signing Secrets and the referenced-secrets annotation
// themselves, as the operator would.

var (
	env       *controlplane.Env
	k8sClient client.Client
	reg       *registry.Registry
	stopReg   context.CancelFunc
	regDone   chan error
)

func TestLive(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(10 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "Registry")
}

var _ = BeforeSuite(func() {
	var err error
	env, err = controlplane.Start(controlplane.Options{})
	Expect(err).NotTo(HaveOccurred())
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(hooklinev1.AddToScheme(scheme)).To(Succeed())
	k8sClient, err = client.New(env.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	reg, stopReg, regDone = startRegistry(registry.Options{SSRF: loopback(), Logger: GinkgoLogr})
})

var _ = AfterSuite(func() {
	if stopReg != nil {
		stopReg()
		Expect(<-regDone).To(Succeed())
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

func startRegistry(opts registry.Options) (*registry.Registry, context.CancelFunc, chan error) {
	r, err := registry.New(env.Config, opts)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	Expect(r.WaitForSync(ctx)).To(Succeed())
	return r, cancel, done
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "reg-"}}
	Expect(k8sClient.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

// createEndpoint creates an endpoint with its signing Secret holding keys.
func createEndpoint(ep hooklinev1.WebhookEndpoint, keys signing.KeySet) {
	ctx := context.Background()
	ep.UID, ep.Generation = "", 0
	Expect(k8sClient.Create(ctx, &ep)).To(Succeed())
	s := registry.SigningSecret(ep.Namespace, ep.Name, keys)
	Expect(k8sClient.Create(ctx, &s)).To(Succeed())
}

func createSubscription(s hooklinev1.Subscription) {
	s.UID, s.Generation = "", 0
	Expect(k8sClient.Create(context.Background(), &s)).To(Succeed())
}

func matchingNames(r *registry.Registry, ns, eventType string) func() string {
	return func() string { return names(r.Matching(ns, eventType)) }
}

func send(e *registry.Endpoint) delivery.Result {
	return delivery.Send(context.Background(), e.Target, delivery.Message{ID: "msg_1", WebhookID: "msg_1", Type: "a.b", Time: t0, Data: []byte(`{}`)}, time.Now())
}

var _ = Describe("the live registry", func() {
	var ns string
	var keys signing.KeySet
	BeforeEach(func() {
		ns = newNamespace()
		keys = signing.KeySet{Current: newKey("k1", t0)}
	})

	It("shows a new endpoint and subscription, and follows pattern changes and deletion", func() {
		ctx := context.Background()
		createEndpoint(endpointObj(ns, "ep", "https://example.com/hook"), keys)
		createSubscription(subscriptionObj(ns, "invoices", "ep", "invoice.*"))

		Eventually(matchingNames(reg, ns, "invoice.paid")).Should(Equal("invoices"))
		Eventually(func() bool { return reg.Endpoint(ns, "ep").Ready }).Should(BeTrue())
		e := reg.Endpoint(ns, "ep")
		Expect(e.UID).NotTo(BeEmpty())
		Expect(e.KeyIDs()).To(Equal([]string{"k1"}))

		var sub hooklinev1.Subscription
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "invoices"}, &sub)).To(Succeed())
		sub.Spec.EventTypes = []string{"order.*"}
		Expect(k8sClient.Update(ctx, &sub)).To(Succeed())
		Eventually(matchingNames(reg, ns, "order.created")).Should(Equal("invoices"))
		Expect(reg.Matching(ns, "invoice.paid")).To(BeEmpty())
		Expect(reg.Subscription(ns, "invoices").Generation).To(Equal(sub.Generation))

		Expect(reg.Gone(sub.UID)).To(BeFalse())
		Expect(k8sClient.Delete(ctx, &sub)).To(Succeed())
		Eventually(func() *registry.Subscription { return reg.Subscription(ns, "invoices") }).Should(BeNil())
		Expect(reg.Matching(ns, "order.created")).To(BeEmpty())
		// Remembered as deleted, so its queued deliveries are dropped at once.
		Expect(reg.Gone(sub.UID)).To(BeTrue())

		Expect(k8sClient.Delete(ctx, &hooklinev1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ep"}})).To(Succeed())
		Eventually(func() *registry.Endpoint { return reg.Endpoint(ns, "ep") }).Should(BeNil())
	})

	It("signs with new keys after the signing Secret changes", func() {
		ctx := context.Background()
		createEndpoint(endpointObj(ns, "ep", "https://example.com/hook"), keys)
		Eventually(func() bool { e := reg.Endpoint(ns, "ep"); return e != nil && e.Ready }).Should(BeTrue())
		e := reg.Endpoint(ns, "ep")
		before := e.Sign("msg_1", t0, []byte("{}"))

		prev := keys.Current
		prev.ExpiresAt = time.Now().Add(time.Hour)
		rotated := signing.KeySet{Current: newKey("k2", t0), Previous: &prev}
		var s corev1.Secret
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.SecretName("ep")}, &s)).To(Succeed())
		s.Data = rotated.ToSecretData()
		Expect(k8sClient.Update(ctx, &s)).To(Succeed())

		// A rotation swaps the keys of the entry in place.
		Eventually(e.KeyIDs).Should(Equal([]string{"k2", "k1"}))
		Expect(reg.Endpoint(ns, "ep")).To(BeIdenticalTo(e))
		after := e.Sign("msg_1", t0, []byte("{}"))
		Expect(after).NotTo(Equal(before))
		Expect(after).To(HaveSuffix(" " + before)) // the previous key still signs
	})

	It("re-reads referenced Secrets when the signing Secret's annotation changes", func() {
		ctx := context.Background()
		rcv := newReceiver(nil)
		defer rcv.Close()
		ep := endpointObj(ns, "ep", rcv.URL+"/hook")
		ep.Spec.Auth = &hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: "token", Key: "token"}}
		createEndpoint(ep, keys)

		// The token Secret does not exist yet.
		Eventually(func() string {
			if e := reg.Endpoint(ns, "ep"); e != nil {
				return e.Reason
			}
			return ""
		}).Should(Equal(hooklinev1.ReasonSecretNotFound))

		token := secretObj(ns, "token", map[string]string{"token": "first"})
		Expect(k8sClient.Create(ctx, &token)).To(Succeed())
		bumpReferencedSecrets(ns, "ep", token)
		Eventually(func() bool { return reg.Endpoint(ns, "ep").Ready }).Should(BeTrue())
		first := reg.Endpoint(ns, "ep")
		Expect(send(first).Verdict).To(Equal(delivery.Delivered))
		req, _ := rcv.last()
		Expect(req.Header.Get("Authorization")).To(Equal("Bearer first"))

		token.Data["token"] = []byte("second")
		Expect(k8sClient.Update(ctx, &token)).To(Succeed())
		bumpReferencedSecrets(ns, "ep", token)
		Eventually(func() *registry.Endpoint { return reg.Endpoint(ns, "ep") }).ShouldNot(BeIdenticalTo(first))
		Expect(send(reg.Endpoint(ns, "ep")).Verdict).To(Equal(delivery.Delivered))
		req, _ = rcv.last()
		Expect(req.Header.Get("Authorization")).To(Equal("Bearer second"))
	})

	It("honours a namespace restriction", func() {
		other := newNamespace()
		createEndpoint(endpointObj(other, "ep", "https://example.com/hook"), keys)
		createSubscription(subscriptionObj(other, "all", "ep", "*"))
		createEndpoint(endpointObj(ns, "ep", "https://example.com/hook"), keys)
		createSubscription(subscriptionObj(ns, "all", "ep", "*"))

		restricted, stop, done := startRegistry(registry.Options{Namespaces: []string{ns}, Logger: GinkgoLogr})
		defer func() { stop(); Expect(<-done).To(Succeed()) }()

		// Everything that existed at start is visible once synced.
		Expect(names(restricted.Matching(ns, "a.b"))).To(Equal("all"))
		Expect(restricted.Namespaces()).To(Equal([]string{ns}))
		Expect(restricted.Endpoint(other, "ep")).To(BeNil())
		Expect(restricted.Matching(other, "a.b")).To(BeEmpty())
		// The unrestricted registry sees both.
		Eventually(matchingNames(reg, other, "a.b")).Should(Equal("all"))
	})
})

// bumpReferencedSecrets does what the operator does when a referenced Secret changes:
// it records the Secrets' versions on the endpoint's signing Secret.
func bumpReferencedSecrets(ns, endpoint string, refs ...corev1.Secret) {
	ctx := context.Background()
	var s corev1.Secret
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.SecretName(endpoint)}, &s)).To(Succeed())
	v := ""
	for i, r := range refs {
		if i > 0 {
			v += ","
		}
		v += r.Name + "@" + r.ResourceVersion
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[hooklinev1.AnnotationReferencedSecrets] = v
	Expect(k8sClient.Update(ctx, &s)).To(Succeed())
}
