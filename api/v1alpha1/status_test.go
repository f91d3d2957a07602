package v1alpha1_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/hookline/hookline/config/argocd"
)

// No operator runs in this suite: what a GitOps tool sees when the CRDs are installed but
// the operator is not (yet) running.
var _ = Describe("A new object before any operator has seen it", func() {
	It("has observedGeneration -1 and is neither Current nor Healthy", func() {
		ns := newNamespace()
		for _, obj := range []*unstructured.Unstructured{
			object("WebhookEndpoint", ns, "url: https://example.com/hooks"),
			object("Subscription", ns, "endpointRef: {name: b}\neventTypes: [\"*\"]"),
		} {
			Expect(k8sClient.Create(ctx, obj)).To(Succeed())
			got, found, err := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
			Expect(err).NotTo(HaveOccurred())
			Expect(found).To(BeTrue(), "%s: no status.observedGeneration default", obj.GetKind())
			Expect(got).To(BeEquivalentTo(-1))

			res, err := status.Compute(obj)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Status).To(Equal(status.InProgressStatus), obj.GetKind())
			health, _, err := argocd.Health(obj.GetKind(), obj.Object)
			Expect(err).NotTo(HaveOccurred())
			Expect(health).To(Equal("Progressing"), obj.GetKind())
		}
	})
})
