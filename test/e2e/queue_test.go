package e2e

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// queueHolds lists what the dispatcher's queue keeps that mentions ns: the
// subjects holding messages in every stream and the consumers whose name or
// filter names it. Subject tokens and consumer names carry the namespace
// as is for the names the tests use.
func queueHolds(ns string) []string {
	nc, err := nats.Connect("nats://"+natsAddr, nats.Timeout(5*time.Second))
	Expect(err).NotTo(HaveOccurred())
	defer nc.Close()
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		// Retained events (HL_RETAINED) are the namespace's record of what it published,
		// kept for the retention window whatever happens to its objects; they are not
		// state left behind (docs/publishing.md, "Retained events").
		if name == "HL_RETAINED" {
			continue
		}
		s, err := js.Stream(ctx, name)
		Expect(err).NotTo(HaveOccurred())
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
		Expect(err).NotTo(HaveOccurred())
		for subj := range info.State.Subjects {
			if strings.Contains(subj, "."+ns+".") || strings.HasSuffix(subj, "."+ns) {
				out = append(out, name+" subject "+subj)
			}
		}
		cs := s.ListConsumers(ctx)
		for c := range cs.Info() {
			if strings.Contains(c.Name, "__"+ns+"__") || strings.Contains(c.Config.FilterSubject, "."+ns+".") {
				out = append(out, name+" consumer "+c.Name)
			}
		}
		Expect(cs.Err()).NotTo(HaveOccurred())
	}
	Expect(names.Err()).NotTo(HaveOccurred())
	sort.Strings(out)
	return out
}

// grantAttemptLog lets the namespace's publisher read attempt logs.
func grantAttemptLog(ns string) {
	ctx := context.Background()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "attempt-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"hookline.io"}, Resources: []string{"subscriptions/attempts"},
			Verbs: []string{"get"}}},
	}
	Expect(k8s.Create(ctx, role)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "attempt-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "publisher", Namespace: ns}},
	})).To(Succeed())
}

// adminStatus is the status the admin API answers for a subscription's
// attempt log: 404 once the dispatcher knows the subscription is gone.
func adminStatus(ns, token, sub string) int {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, apiURL+"/v1/namespaces/"+ns+"/subscriptions/"+sub+"/attempts", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
