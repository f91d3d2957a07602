package readiness

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/hookline/hookline/internal/secretrefs"
)

// SecretProblems checks refs against the Secrets read for them (by name; a missing
// Secret is absent from the map or nil). The operator and the dispatcher read Secrets
// their own ways and both decide with this.
func SecretProblems(refs []secretrefs.Ref, secrets map[string]*corev1.Secret) []SecretProblem {
	var problems []SecretProblem
	for _, ref := range refs {
		s := secrets[ref.Secret]
		if s == nil {
			problems = append(problems, SecretProblem{Field: ref.Field, Secret: ref.Secret, Missing: true})
			continue
		}
		for _, k := range ref.Keys {
			if _, ok := s.Data[k]; !ok {
				problems = append(problems, SecretProblem{Field: ref.Field, Secret: ref.Secret, Key: k})
			}
		}
	}
	return problems
}
