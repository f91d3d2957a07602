package ui

import (
	"context"
	"fmt"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/server"
)

// Permission is what the page knows of one action before the user tries it: whether
// RBAC allows it and, when not, a sentence saying which right is missing.
type Permission struct {
	Allowed bool
	Reason  string
}

// The rights the dashboard's actions take: the dispatcher's (internal/server says what
// each admin request takes, and checks it again) and patching an endpoint's annotations.
var (
	rightPatchEndpoint = server.Access{Verb: "patch", Resource: "webhookendpoints"}
)

// can asks the API server, as the user, for each access on the named object; the
// reviews run in parallel, one page asks a handful.
func (s *Server) can(ctx context.Context, ns, name string, accesses ...server.Access) []Permission {
	out := make([]Permission, len(accesses))
	var wg sync.WaitGroup
	for i, a := range accesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.review(ctx, ns, name, a)
		}()
	}
	wg.Wait()
	return out
}

func (s *Server) review(ctx context.Context, ns, name string, a server.Access) Permission {
	sar := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Name: name, Verb: a.Verb, Group: hooklinev1.GroupVersion.Group,
			Resource: a.Resource, Subresource: a.Subresource,
		},
	}}
	res, err := s.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return Permission{Reason: fmt.Sprintf("The API server could not say whether you may do this: %v.", err)}
	}
	if res.Status.Allowed {
		return Permission{Allowed: true}
	}
	what := a.Resource
	if a.Subresource != "" {
		what += "/" + a.Subresource
	}
	return Permission{Reason: fmt.Sprintf("Your Kubernetes user may not %s %s.%s in namespace %s; ask for a Role with "+
		"{apiGroups: [%s], resources: [%s], verbs: [%s]}.", a.Verb, what, hooklinev1.GroupVersion.Group, ns,
		hooklinev1.GroupVersion.Group, what, a.Verb)}
}
