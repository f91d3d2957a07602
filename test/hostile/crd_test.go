package hostile

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

func newNamespace(prefix string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func hostileObject(kind, ns, specYAML string) *unstructured.Unstructured {
	var spec map[string]any
	Expect(yaml.Unmarshal([]byte(specYAML), &spec)).To(Succeed())
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "hookline.io/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": "hostile", "namespace": ns},
		"spec":     spec,
	}}
}

// stored counts the objects of kind in ns.
func stored(kind, ns string) int {
	l := &unstructured.UnstructuredList{}
	l.SetAPIVersion("hookline.io/v1alpha1")
	l.SetKind(kind + "List")
	Expect(k8sClient.List(ctx, l, client.InNamespace(ns))).To(Succeed())
	return len(l.Items)
}

var _ = Describe("Hostile CRDs", func() {
	DescribeTable("the API server refuses the object (422, naming the field) and stores nothing",
		func(kind, spec, field string) {
			ns := newNamespace("hostile-crd-")
			err := k8sClient.Create(ctx, hostileObject(kind, ns, spec))
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(field))
			Expect(stored(kind, ns)).To(BeZero())
		},
		Entry("credentials in the URL", "WebhookEndpoint", `url: https://admin:hunter2@example.com/hook`, "spec.url"),
		Entry("plain http without opting in", "WebhookEndpoint", `url: http://example.com/hook`, "spec.url"),
		Entry("a file: URL", "WebhookEndpoint", `url: file:///etc/passwd`, "spec.url"),
		Entry("a gopher: URL", "WebhookEndpoint", `url: gopher://127.0.0.1:6379/_FLUSHALL`, "spec.url"),
		Entry("a javascript: URL", "WebhookEndpoint", `url: "javascript:alert(1)"`, "spec.url"),
		Entry("a URL without a host", "WebhookEndpoint", `url: "https:///latest/meta-data"`, "spec.url"),
		Entry("a URL of 2049 characters", "WebhookEndpoint", "url: https://example.com/"+strings.Repeat("a", 2049), "spec.url"),
		Entry("forging the signature header", "WebhookEndpoint", "url: https://example.com\nheaders: [{name: webhook-signature, value: v1,forged}]", "spec.headers[0]"),
		Entry("forging the event id header", "WebhookEndpoint", "url: https://example.com\nheaders: [{name: Webhook-Id, value: msg_other}]", "spec.headers[0]"),
		Entry("overriding Content-Type", "WebhookEndpoint", "url: https://example.com\nheaders: [{name: Content-Type, value: text/html}]", "spec.headers[0]"),
		Entry("a header name smuggling a CRLF", "WebhookEndpoint", "url: https://example.com\nheaders: [{name: \"X-A\\r\\nHost: evil\", value: x}]", "spec.headers[0].name"),
		Entry("a Secret of another namespace in a header", "WebhookEndpoint", "url: https://example.com\nheaders: [{name: X-A, valueFrom: {name: kube-system/token, key: k}}]", "spec.headers[0].valueFrom.name"),
		Entry("33 headers", "WebhookEndpoint", "url: https://example.com\nheaders: ["+headers(33)+"]", "spec.headers"),
		Entry("a header value of 4097 characters", "WebhookEndpoint", "url: https://example.com\nheaders: [{name: X-A, value: \""+strings.Repeat("v", 4097)+"\"}]", "spec.headers[0].value"),
		Entry("two auth methods at once", "WebhookEndpoint", "url: https://example.com\nauth: {bearer: {name: s, key: t}, basic: {name: s}}", "spec.auth"),
		Entry("a client certificate over plain http", "WebhookEndpoint", "url: http://example.com\nallowInsecureHTTP: true\nauth: {mtls: {name: client-cert}}", "spec.auth"),
		Entry("a Secret key that walks a path", "WebhookEndpoint", "url: https://example.com\nauth: {bearer: {name: s, key: ../../token}}", "spec.auth.bearer.key"),
		Entry("a Secret of another namespace as CA", "WebhookEndpoint", "url: https://example.com\ntls: {ca: {name: kube-system/ca, key: ca.crt}}", "spec.tls.ca.name"),
		Entry("5000 requests in flight", "WebhookEndpoint", "url: https://example.com\nlimits: {maxInFlight: 5000}", "spec.limits.maxInFlight"),
		Entry("an endpoint in another namespace", "Subscription", "endpointRef: {name: kube-system/billing}\neventTypes: [\"*\"]", "spec.endpointRef.name"),
		Entry("a filter of 4097 characters", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\nfilter: \""+strings.Repeat("a", 4097)+"\"", "spec.filter"),
		Entry("65 event types", "Subscription", "endpointRef: {name: b}\neventTypes: ["+types(65)+"]", "spec.eventTypes"),
		Entry("an event type pattern of 257 characters", "Subscription", "endpointRef: {name: b}\neventTypes: ["+strings.Repeat("a", 257)+"]", "spec.eventTypes[0]"),
		Entry("101 attempts", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {maxAttempts: 101}", "spec.delivery.maxAttempts"),
		Entry("an unknown payload format", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\npayload: {format: XML}", "spec.payload.format"),
	)
})

func headers(n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = "{name: X-H" + strings.Repeat("a", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ", value: v}"
	}
	return strings.Join(out, ", ")
}

func types(n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = "t" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	return strings.Join(out, ", ")
}
