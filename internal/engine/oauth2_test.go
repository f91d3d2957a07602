package engine

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// TestOAuth2TokenFailureIsAnAttempt: while the token server fails, each attempt fails
// with a reason naming the token URL, recorded in the attempt log and the endpoint's last
// failure, and nothing reaches the receiver; once it answers, the retry delivers with the
// token it issues.
func TestOAuth2TokenFailureIsAnAttempt(t *testing.T) {
	t.Parallel()
	// The token server fails until it is told to come up. (It once was a
	// port reserved and served only later, which a parallel test could
	// take meanwhile.)
	var up atomic.Bool
	var tokenRequests atomic.Int64
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		tokenRequests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "acc3ss", "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(tokens.Close)
	addr := tokens.Listener.Addr().String()

	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		if r.header.Get("Authorization") != "Bearer acc3ss" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	f.objs.Secrets = append(f.objs.Secrets, corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client", Labels: map[string]string{hooklinev1.LabelEndpointSecret: "true"}},
		Data:       map[string][]byte{"secret": []byte("cl13nt")},
	})
	f.endpoint("erp", rc, func(ep *hooklinev1.WebhookEndpoint) {
		ep.Spec.Auth = &hooklinev1.EndpointAuth{OAuth2: &hooklinev1.OAuth2Auth{
			TokenURL: "http://" + addr + "/token", ClientID: "hookline", ClientSecret: hooklinev1.SecretKeyRef{Name: "client", Key: "secret"},
		}}
	})
	f.subscription("invoices", "erp", schedule("1s"))
	f.start(testOptions())
	f.publish("e1")

	eventually(t, "the first attempt", func() bool { return len(f.attempts("invoices")) == 1 })
	a := f.attempts("invoices")[0]
	if !strings.HasPrefix(a.Error, "OAuth2 token from http://"+addr+": ") || !strings.Contains(a.Error, "HTTP 503") || a.StatusCode != 0 {
		t.Errorf("attempt %+v, want a token failure naming the token URL", a)
	}
	eventually(t, "the token failure as the last failure", func() bool {
		lf := f.subscriptionStats("invoices").LastFailure
		return lf != nil && strings.Contains(lf.Reason, "OAuth2 token from http://"+addr)
	})
	if rc.count() != 0 {
		t.Errorf("the receiver got %d requests without a token", rc.count())
	}

	// The token server comes up: the retry fetches a token and delivers.
	up.Store(true)
	eventually(t, "the delivery", func() bool { return f.subscriptionStats("invoices").Delivered == 1 })
	if tokenRequests.Load() != 1 || rc.count() != 1 {
		t.Errorf("%d token requests, %d deliveries; want 1 and 1", tokenRequests.Load(), rc.count())
	}
}
