package registry_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/signing"
	"github.com/hookline/hookline/internal/ssrf"
)

// t0 is the fixed time of the tests that use a fake clock.
var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func loopback() ssrf.Policy {
	p, err := ssrf.ParsePolicy([]string{"127.0.0.0/8", "::1"}, nil)
	if err != nil {
		panic(err)
	}
	return p
}

func newKey(id string, created time.Time) signing.Key {
	s, err := signing.GenerateSecret()
	if err != nil {
		panic(err)
	}
	return signing.Key{ID: id, Secret: s, CreatedAt: created}
}

func endpointObj(ns, name, url string) hooklinev1.WebhookEndpoint {
	return hooklinev1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name), Generation: 1},
		Spec:       hooklinev1.WebhookEndpointSpec{URL: url, AllowInsecureHTTP: true},
	}
}

func subscriptionObj(ns, name, endpoint string, patterns ...string) hooklinev1.Subscription {
	return hooklinev1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name), Generation: 1},
		Spec: hooklinev1.SubscriptionSpec{
			EndpointRef: hooklinev1.EndpointRef{Name: endpoint},
			EventTypes:  patterns,
		},
	}
}

// secretObj is a Secret that endpoints may use (it opts in).
func secretObj(ns, name string, data map[string]string) corev1.Secret {
	s := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{hooklinev1.LabelEndpointSecret: "true"}}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

// receiver is a loopback HTTP server that records the requests it gets.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []*http.Request
	bodies [][]byte
}

type corev1Secret = corev1.Secret

func newReceiver(t testing.TB) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, req)
		r.bodies = append(r.bodies, body)
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	if t != nil {
		t.Cleanup(r.Close)
	}
	return r
}

func (r *receiver) last() (*http.Request, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		return nil, nil
	}
	return r.reqs[len(r.reqs)-1], r.bodies[len(r.bodies)-1]
}
