package engine

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// TestAttemptLogKeepsNoSecret: the attempt log records each attempt's request
// headers, and not one credential: the bearer token, a header value from a
// Secret and the signatures are masked, while the other headers are kept as
// sent. The receiver fails the first attempt and echoes what it got, so the
// response excerpt is checked too.
func TestAttemptLogKeepsNoSecret(t *testing.T) {
	t.Parallel()
	const token, headerSecret = "b34rer-t0ken", "t3nant-s3cret"
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		if r.n == 1 {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = fmt.Fprintf(w, "got %v", r.header)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	f.objs.Secrets = append(f.objs.Secrets, corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds", Labels: map[string]string{hooklinev1.LabelEndpointSecret: "true"}},
		Data:       map[string][]byte{"token": []byte(token), "tenant": []byte(headerSecret)},
	})
	tenant := "shop"
	f.endpoint("erp", rc, func(ep *hooklinev1.WebhookEndpoint) {
		ep.Spec.Auth = &hooklinev1.EndpointAuth{Bearer: &hooklinev1.SecretKeyRef{Name: "creds", Key: "token"}}
		ep.Spec.Headers = []hooklinev1.Header{
			{Name: "X-Tenant", Value: &tenant},
			{Name: "X-Tenant-Key", ValueFrom: &hooklinev1.SecretKeyRef{Name: "creds", Key: "tenant"}},
		}
	})
	f.subscription("invoices", "erp", schedule("1s"))
	f.start(testOptions())
	f.publish("e1")

	eventually(t, "two attempts", func() bool { return len(f.attempts("invoices")) == 2 })
	sent := rc.requests()
	secrets := []string{token, headerSecret, f.secrets["erp"]}
	for _, r := range sent {
		for _, sig := range strings.Fields(r.header.Get("Webhook-Signature")) {
			_, value, _ := strings.Cut(sig, ",")
			secrets = append(secrets, value)
		}
	}
	for _, a := range f.attempts("invoices") {
		entry := fmt.Sprintf("%#v", a)
		for _, s := range secrets {
			if strings.Contains(entry, s) {
				t.Errorf("attempt %d stored the secret %q: %s", a.Attempt, s, entry)
			}
		}
		req := sent[a.Attempt-1]
		for _, want := range []string{
			"Authorization: ****\n", "X-Tenant-Key: ****\n", "X-Tenant: shop\n", "Webhook-Signature: v1,****\n",
			"Webhook-Id: " + req.header.Get("Webhook-Id") + "\n",
			"Webhook-Timestamp: " + req.header.Get("Webhook-Timestamp") + "\n",
			"Content-Type: application/json\n", "User-Agent: " + req.header.Get("User-Agent") + "\n",
		} {
			if !strings.Contains(a.Headers, want) {
				t.Errorf("attempt %d: headers lack %q:\n%s", a.Attempt, want, a.Headers)
			}
		}
	}
	if a := f.attempts("invoices")[1]; !strings.HasPrefix(a.Response, "got ") {
		t.Errorf("first attempt's response %q, want the receiver's echo", a.Response)
	}
}
