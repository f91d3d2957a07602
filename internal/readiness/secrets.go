package readiness

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/hookline/hookline/internal/secretrefs"
)

// SecretProblems checks refs against the Secrets read for them (by name; a missing
// Secret is absent from the map or nil). The operator and the dispatcher read Secrets
// their own ways and both decide with this. Unless allowUnlabelled, a Secret whose value
// is sent to the endpoint must carry the opt-in label (secretrefs.OptedIn): the
// dispatcher checks again what the operator refused, so a Secret's value reaches an
// endpoint only if the Secret opted in.
func SecretProblems(refs []secretrefs.Ref, secrets map[string]*corev1.Secret, allowUnlabelled bool) []SecretProblem {
	var problems []SecretProblem
	for _, ref := range refs {
		s := secrets[ref.Secret]
		if s == nil {
			problems = append(problems, SecretProblem{Field: ref.Field, Secret: ref.Secret, Missing: true})
			continue
		}
		if ref.SentToEndpoint && !allowUnlabelled && !secretrefs.OptedIn(s.Labels) {
			problems = append(problems, SecretProblem{Field: ref.Field, Secret: ref.Secret, NotOptedIn: true})
		}
		for _, k := range ref.Keys {
			if _, ok := s.Data[k]; !ok {
				problems = append(problems, SecretProblem{Field: ref.Field, Secret: ref.Secret, Key: k})
			}
		}
	}
	return problems
}
