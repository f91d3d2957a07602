package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookline/hookline/internal/server"
)

// forgedToken is JWT-shaped, unexpired and signed by nobody: only a
// TokenReview can tell it from a real one. aud is its audience, if any.
func forgedToken(aud string) string {
	enc := base64.RawURLEncoding.EncodeToString
	sig := make([]byte, 256)
	_, _ = rand.Read(sig)
	claims := fmt.Sprintf(`{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:x:y","exp":%d`, time.Now().Add(time.Hour).Unix())
	if aud != "" {
		claims += `,"aud":["` + aud + `"]`
	}
	return enc([]byte(`{"alg":"RS256","kid":"forged"}`)) + "." + enc([]byte(claims+"}")) + "." + enc(sig)
}

func garbageToken() string {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// serveFrom serves one publish request from a client address, as the
// dispatcher's server would see it.
func serveFrom(h http.Handler, target, token, client string) *httptest.ResponseRecorder {
	return serveRequest(h, http.MethodPost, target, token, client)
}

// serveRequest serves one request with a token from a client address; a
// POST carries one event.
func serveRequest(h http.Handler, method, target, token, client string) *httptest.ResponseRecorder {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"type":"invoice.paid","data":{"n":1}}`)
	}
	req := httptest.NewRequestWithContext(context.Background(), method, target, body)
	req.RemoteAddr = client + ":40000"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

var _ = Describe("KubernetesAuthorizer under a token flood", func() {
	It("sends a bounded number of TokenReviews for 10,000 random tokens, and a valid publisher is unaffected", func() {
		ctx := context.Background()
		ns := createNamespace(ctx)
		token := publisherToken(ctx, ns)
		pub := &recorder{}
		h, err := server.NewHandler(server.Options{
			Publisher:  pub,
			Authorizer: server.NewKubernetesAuthorizer(authCli, server.KubernetesAuthorizerOptions{}),
		})
		Expect(err).NotTo(HaveOccurred())
		target := "/v1/namespaces/" + ns + "/events"
		Expect(serveFrom(h, target, token, "10.1.0.1").Code).To(Equal(http.StatusAccepted))

		const clients, perClient = 100, 100 // 10,000 tokens
		start := time.Now()
		before := tokenReviews.Load()

		// The valid publisher keeps publishing from its own address all along.
		stop := make(chan struct{})
		var published, refusedValid atomic.Int64
		var publisherDone sync.WaitGroup
		publisherDone.Add(1)
		go func() {
			defer GinkgoRecover()
			defer publisherDone.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if rec := serveFrom(h, target, token, "10.1.0.1"); rec.Code == http.StatusAccepted {
					published.Add(1)
				} else {
					refusedValid.Add(1)
					GinkgoWriter.Printf("valid publisher refused: %d %s\n", rec.Code, rec.Body)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()

		codes := map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				client := fmt.Sprintf("10.2.%d.%d", c/250, c%250+1)
				for i := range perClient {
					tok := garbageToken()
					if i%2 == 1 {
						tok = forgedToken("")
					}
					rec := serveFrom(h, target, tok, client)
					mu.Lock()
					codes[rec.Code]++
					mu.Unlock()
					if rec.Code == http.StatusTooManyRequests {
						Expect(rec.Header().Get("Retry-After")).NotTo(BeEmpty())
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		publisherDone.Wait()
		elapsed := time.Since(start)
		sent := tokenReviews.Load() - before

		// Each address may fail FailureBurst times, then once per FailureRefill.
		bound := int64(clients) * int64(server.DefaultFailureBurst+int(elapsed/server.DefaultFailureRefill)+1)
		GinkgoWriter.Printf("10,000 random tokens in %s: %d TokenReviews (bound %d), answers %v; valid publisher: %d accepted, %d refused\n",
			elapsed.Round(time.Millisecond), sent, bound, codes, published.Load(), refusedValid.Load())
		Expect(sent).To(BeNumerically("<=", bound))
		Expect(codes[http.StatusAccepted]).To(BeZero())
		// Every forged token is refused: 401 once reviewed, 429 past its
		// address's budget, or 503 when the review slots stayed busy (on a
		// loaded machine the API server answers slowly; no decision, no entry).
		Expect(codes[http.StatusUnauthorized] + codes[http.StatusTooManyRequests] + codes[http.StatusServiceUnavailable]).To(Equal(clients * perClient))
		Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">", 0))
		Expect(refusedValid.Load()).To(BeZero())
		Expect(published.Load()).To(BeNumerically(">", 0))
		Expect(pub.events).To(HaveLen(int(published.Load()) + 1))
		for _, ev := range pub.events {
			Expect(ev.Namespace).To(Equal(ns))
		}
	})

	It("refuses garbage without any TokenReview", func() {
		ctx := context.Background()
		ns := createNamespace(ctx)
		h, err := server.NewHandler(server.Options{
			Publisher:  &recorder{},
			Authorizer: server.NewKubernetesAuthorizer(authCli, server.KubernetesAuthorizerOptions{FailureBurst: 1_000_000}),
		})
		Expect(err).NotTo(HaveOccurred())
		before := tokenReviews.Load()
		for range 1000 {
			Expect(serveFrom(h, "/v1/namespaces/"+ns+"/events", garbageToken(), "10.3.0.1").Code).To(Equal(http.StatusUnauthorized))
		}
		Expect(tokenReviews.Load()).To(Equal(before))
	})

	It("binds tokens to the audience hookline when asked", func() {
		ctx := context.Background()
		ns := createNamespace(ctx)
		plain := publisherToken(ctx, ns)
		tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "publisher", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"hookline"}, ExpirationSeconds: ptr(int64(3600))},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		pub := &recorder{}
		h, err := server.NewHandler(server.Options{
			Publisher:  pub,
			Authorizer: server.NewKubernetesAuthorizer(authCli, server.KubernetesAuthorizerOptions{Audience: "hookline"}),
		})
		Expect(err).NotTo(HaveOccurred())
		target := "/v1/namespaces/" + ns + "/events"
		before := tokenReviews.Load()
		rec := serveFrom(h, target, plain, "10.4.0.1")
		Expect(rec.Code).To(Equal(http.StatusUnauthorized), rec.Body.String())
		Expect(rec.Body.String()).To(ContainSubstring(`not issued for audience \"hookline\"`))
		Expect(tokenReviews.Load()).To(Equal(before), "a token for another audience is refused without a review")

		By("a forged token claiming the audience is still reviewed, and refused")
		rec = serveFrom(h, target, forgedToken("hookline"), "10.4.0.1")
		Expect(rec.Code).To(Equal(http.StatusUnauthorized), rec.Body.String())
		Expect(tokenReviews.Load()).To(Equal(before + 1))

		rec = serveFrom(h, target, tr.Status.Token, "10.4.0.1")
		Expect(rec.Code).To(Equal(http.StatusAccepted), rec.Body.String())
		Expect(pub.events).To(HaveLen(1))
	})
})
