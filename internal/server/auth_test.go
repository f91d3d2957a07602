package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/server"
)

// TokenReview and SubjectAccessReview are answered by a real kube-apiserver, which
// issues ServiceAccount tokens (envtest configures the issuer and signing keys) and
// authorises with RBAC.

var (
	env     *controlplane.Env
	admin   kubernetes.Interface
	reviews atomic.Int64 // TokenReviews and SubjectAccessReviews sent by the authorizer
	// tokenReviews counts the TokenReviews alone.
	tokenReviews atomic.Int64
	authCli      kubernetes.Interface
)

func TestAuth(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "Ingest authorization")
}

var _ = BeforeSuite(func() {
	var err error
	env, err = controlplane.Start(controlplane.Options{})
	Expect(err).NotTo(HaveOccurred())
	admin, err = kubernetes.NewForConfig(env.Config)
	Expect(err).NotTo(HaveOccurred())

	// The authorizer's client counts the reviews it sends, to check the cache.
	counted := rest.CopyConfig(env.Config)
	counted.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasSuffix(r.URL.Path, "/tokenreviews") || strings.HasSuffix(r.URL.Path, "/subjectaccessreviews") {
				reviews.Add(1)
			}
			if strings.HasSuffix(r.URL.Path, "/tokenreviews") {
				tokenReviews.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	authCli, err = kubernetes.NewForConfig(counted)
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func createNamespace(ctx context.Context) string {
	ns, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ingest-"}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return ns.Name
}

// publisherToken creates a ServiceAccount in ns allowed to publish there, and returns a
// token for it from the TokenRequest API.
func publisherToken(ctx context.Context, ns string) string {
	token, err := controlplane.ServiceAccountToken(ctx, admin, ns, "publisher", publisherRule)
	Expect(err).NotTo(HaveOccurred())
	return token
}

func ptr[T any](v T) *T { return &v }

type response struct {
	status int
	body   string
}

func publish(url, token string) response {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(`{"type":"invoice.paid","data":{"n":1}}`))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b)}
}

func errorMessage(body string) string {
	var e errorBody
	Expect(json.Unmarshal([]byte(body), &e)).To(Succeed(), body)
	return e.Error.Message
}

var _ = Describe("KubernetesAuthorizer", func() {
	It("lets a ServiceAccount publish where RBAC allows it, and nowhere else", func() {
		ctx := context.Background()
		allowed, other := createNamespace(ctx), createNamespace(ctx)
		token := publisherToken(ctx, allowed)

		clk := clocktesting.NewFakeClock(time.Now())
		pub := &recorder{}
		h, err := server.NewHandler(server.Options{
			Publisher:  pub,
			Authorizer: server.NewKubernetesAuthorizer(authCli, server.KubernetesAuthorizerOptions{Clock: clk}),
		})
		Expect(err).NotTo(HaveOccurred())
		srv := httptest.NewServer(h)
		defer srv.Close()
		url := func(ns string) string { return srv.URL + "/v1/namespaces/" + ns + "/events" }

		By("publishing where the Role grants it")
		r := publish(url(allowed), token)
		Expect(r.status).To(Equal(http.StatusAccepted), r.body)
		Expect(pub.events).To(HaveLen(1))
		Expect(pub.events[0].Namespace).To(Equal(allowed))

		By("being refused in another namespace, with the rule that would grant it")
		r = publish(url(other), token)
		Expect(r.status).To(Equal(http.StatusForbidden), r.body)
		msg := errorMessage(r.body)
		Expect(msg).To(ContainSubstring("system:serviceaccount:" + allowed + ":publisher may not publish events to namespace \"" + other + "\""))
		Expect(msg).To(ContainSubstring("{apiGroups: [hookline.io], resources: [events], verbs: [create]}"))

		By("answering 401 to a garbage token, a forged one and none")
		r = publish(url(allowed), "not-a-token")
		Expect(r.status).To(Equal(http.StatusUnauthorized), r.body)
		Expect(errorMessage(r.body)).To(ContainSubstring("not a ServiceAccount token"))
		r = publish(url(allowed), forgedToken(""))
		Expect(r.status).To(Equal(http.StatusUnauthorized), r.body)
		Expect(errorMessage(r.body)).To(ContainSubstring("not valid"))
		r = publish(url(allowed), "")
		Expect(r.status).To(Equal(http.StatusUnauthorized), r.body)
		Expect(errorMessage(r.body)).To(ContainSubstring("Authorization: Bearer"))
		Expect(pub.events).To(HaveLen(1))

		By("answering repeated requests from the cache until the TTL passes")
		before := reviews.Load()
		for range 5 {
			Expect(publish(url(allowed), token).status).To(Equal(http.StatusAccepted))
			Expect(publish(url(other), token).status).To(Equal(http.StatusForbidden))
			Expect(publish(url(allowed), "not-a-token").status).To(Equal(http.StatusUnauthorized))
		}
		Expect(reviews.Load()).To(Equal(before))
		clk.Step(server.DefaultAuthCacheTTL)
		Expect(publish(url(allowed), token).status).To(Equal(http.StatusAccepted))
		Expect(reviews.Load()).To(Equal(before + 2)) // a TokenReview and a SubjectAccessReview
	})
})
