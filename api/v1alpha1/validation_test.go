package v1alpha1_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// object builds a hookline object from a kind and a YAML spec.
func object(kind, ns, specYAML string) *unstructured.Unstructured {
	var spec map[string]any
	Expect(yaml.Unmarshal([]byte(specYAML), &spec)).To(Succeed())
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "hookline.io/v1alpha1",
		"kind":       kind,
		"metadata":   map[string]any{"generateName": "v-", "namespace": ns},
		"spec":       spec,
	}}
	return u
}

var _ = Describe("CRD validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("refuses an invalid object with a message that names the field and the fix",
		func(kind, spec, message string) {
			err := k8sClient.Create(ctx, object(kind, ns, spec))
			Expect(err).To(HaveOccurred(), "the API server accepted an invalid %s", kind)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		// WebhookEndpoint: URL
		Entry("plain http without opt-in", "WebhookEndpoint", `url: http://example.com/hook`,
			"spec.url must use https://; to deliver over plain http:// set spec.allowInsecureHTTP: true"),
		Entry("another scheme", "WebhookEndpoint", `url: ftp://example.com/hook`, "spec.url must use https://"),
		Entry("not a URL", "WebhookEndpoint", `url: "https://exa mple.com/ hook"`, "url must be an absolute URL"),
		Entry("no host", "WebhookEndpoint", `url: "https:///path"`, "url must name a host"),
		Entry("credentials in the URL", "WebhookEndpoint", `url: https://user:secret@example.com/hook`,
			"url must not contain credentials (user:password@); put them in spec.auth instead"),
		Entry("a fragment", "WebhookEndpoint", `url: https://example.com/hook#part`, "url must not contain a fragment"),
		Entry("a URL over 2048 characters", "WebhookEndpoint", "url: https://example.com/"+strings.Repeat("a", 2048),
			"spec.url: Too long"),
		Entry("no URL", "WebhookEndpoint", `suspend: true`, "spec.url: Required value"),
		// WebhookEndpoint: headers
		Entry("a reserved webhook-* header", "WebhookEndpoint", "url: https://example.com\nheaders: [{name: webhook-signature, value: x}]",
			"header is set by hookline and cannot be overridden"),
		Entry("a content-type header", "WebhookEndpoint", "url: https://example.com\nheaders: [{name: Content-Type, value: x}]",
			"header is set by hookline and cannot be overridden"),
		Entry("a header with value and valueFrom", "WebhookEndpoint",
			"url: https://example.com\nheaders: [{name: X-A, value: x, valueFrom: {name: s, key: k}}]", "set exactly one of value and valueFrom"),
		Entry("a header with neither value nor valueFrom", "WebhookEndpoint",
			"url: https://example.com\nheaders: [{name: X-A}]", "set exactly one of value and valueFrom"),
		Entry("a header name with a space", "WebhookEndpoint", "url: https://example.com\nheaders: [{name: X Tenant, value: x}]",
			"header name may contain only letters, digits"),
		Entry("33 headers", "WebhookEndpoint", "url: https://example.com\nheaders: ["+manyHeaders(33)+"]",
			"must have at most 32 items"),
		Entry("a header Secret in another namespace's format", "WebhookEndpoint",
			"url: https://example.com\nheaders: [{name: X-A, valueFrom: {name: other/secret, key: k}}]", "name must be a lowercase DNS subdomain"),
		// WebhookEndpoint: auth and TLS
		Entry("two auth methods", "WebhookEndpoint",
			"url: https://example.com\nauth: {bearer: {name: s, key: t}, basic: {name: s}}", "auth must set exactly one of apiKey, basic, bearer, mtls and oauth2"),
		Entry("an empty auth", "WebhookEndpoint", "url: https://example.com\nauth: {}", "auth must set exactly one of apiKey, basic, bearer, mtls and oauth2"),
		Entry("an API key in a cookie", "WebhookEndpoint",
			"url: https://example.com\nauth: {apiKey: {in: Cookie, name: k, valueFrom: {name: s, key: k}}}", `Unsupported value: "Cookie"`),
		Entry("mTLS over plain http", "WebhookEndpoint",
			"url: http://example.com\nallowInsecureHTTP: true\nauth: {mtls: {name: client-cert}}", "spec.auth.mtls needs an https:// URL"),
		// WebhookEndpoint: OAuth2 and proxy
		Entry("oauth2 with another auth method", "WebhookEndpoint",
			"url: https://example.com\nauth: {bearer: {name: s, key: t}, oauth2: {tokenURL: https://auth.example.com/token, clientID: c, clientSecret: {name: s, key: k}}}",
			"auth must set exactly one of apiKey, basic, bearer, mtls and oauth2"),
		Entry("oauth2 without a client secret", "WebhookEndpoint",
			"url: https://example.com\nauth: {oauth2: {tokenURL: https://auth.example.com/token, clientID: c}}", "spec.auth.oauth2.clientSecret: Required value"),
		Entry("oauth2 with a token URL that is not a URL", "WebhookEndpoint",
			"url: https://example.com\nauth: {oauth2: {tokenURL: 'auth example', clientID: c, clientSecret: {name: s, key: k}}}",
			"spec.auth.oauth2.tokenURL must be an absolute http(s) URL"),
		Entry("oauth2 with a plain http token URL", "WebhookEndpoint",
			"url: https://example.com\nauth: {oauth2: {tokenURL: http://auth.example.com/token, clientID: c, clientSecret: {name: s, key: k}}}",
			"spec.auth.oauth2.tokenURL must use https://; to fetch tokens over plain http:// set spec.allowInsecureHTTP: true"),
		Entry("oauth2 with credentials in the token URL", "WebhookEndpoint",
			"url: https://example.com\nauth: {oauth2: {tokenURL: 'https://u:p@auth.example.com/token', clientID: c, clientSecret: {name: s, key: k}}}",
			"spec.auth.oauth2.tokenURL must not contain credentials"),
		Entry("oauth2 params replacing the grant", "WebhookEndpoint",
			"url: https://example.com\nauth: {oauth2: {tokenURL: https://auth.example.com/token, clientID: c, clientSecret: {name: s, key: k}, params: {grant_type: password}}}",
			"spec.auth.oauth2.params cannot set grant_type"),
		Entry("oauth2 and an Authorization header", "WebhookEndpoint",
			"url: https://example.com\nheaders: [{name: authorization, value: x}]\nauth: {oauth2: {tokenURL: https://auth.example.com/token, clientID: c, clientSecret: {name: s, key: k}}}",
			"spec.headers must not set Authorization when spec.auth.oauth2 sends it"),
		Entry("a scope with a space", "WebhookEndpoint",
			"url: https://example.com\nauth: {oauth2: {tokenURL: https://auth.example.com/token, clientID: c, clientSecret: {name: s, key: k}, scopes: ['a b']}}",
			"spec.auth.oauth2.scopes[0]"),
		Entry("a proxy with neither url nor direct", "WebhookEndpoint", "url: https://example.com\nproxy: {}",
			"spec.proxy: set exactly one of url (send through this proxy) and direct: true"),
		Entry("a proxy with url and direct", "WebhookEndpoint", "url: https://example.com\nproxy: {url: 'http://proxy:3128', direct: true}",
			"spec.proxy: set exactly one of url"),
		Entry("a socks proxy", "WebhookEndpoint", "url: https://example.com\nproxy: {url: 'socks5://proxy:1080'}",
			"spec.proxy.url must be an http:// or https:// URL"),
		Entry("a proxy with credentials", "WebhookEndpoint", "url: https://example.com\nproxy: {url: 'http://u:p@proxy:3128'}",
			"spec.proxy.url must not contain credentials"),
		// WebhookEndpoint: signing
		Entry("rotation and a user key", "WebhookEndpoint",
			"url: https://example.com\nsigning: {rotation: {every: 720h}, secretRef: {name: s, key: k}}", "set either signing.rotation"),
		Entry("overlap as long as the period", "WebhookEndpoint",
			"url: https://example.com\nsigning: {rotation: {every: 24h, overlap: 24h}}", "rotation.overlap must be shorter than rotation.every"),
		Entry("a default overlap longer than a short period", "WebhookEndpoint",
			"url: https://example.com\nsigning: {rotation: {every: 2h}}", "rotation.overlap must be shorter than rotation.every"),
		Entry("rotation more often than hourly", "WebhookEndpoint",
			"url: https://example.com\nsigning: {rotation: {every: 30m, overlap: 1m}}", "rotation.every must be between 1h and 8760h"),
		Entry("a rotation period that is not a duration", "WebhookEndpoint",
			"url: https://example.com\nsigning: {rotation: {every: monthly}}", "spec.signing.rotation.every: Invalid value"),
		Entry("an overlap over 30 days", "WebhookEndpoint",
			"url: https://example.com\nsigning: {rotation: {every: 8000h, overlap: 800h}}", "rotation.overlap must be at most 720h"),
		// WebhookEndpoint: limits
		Entry("a timeout under a second", "WebhookEndpoint", "url: https://example.com\nlimits: {timeout: 500ms}", "limits.timeout must be between 1s and 60s"),
		Entry("a zero rate limit", "WebhookEndpoint", "url: https://example.com\nlimits: {rateLimit: 0}", "spec.limits.rateLimit: Invalid value: 0: spec.limits.rateLimit in body should be greater than or equal to 1"),
		Entry("5000 in flight", "WebhookEndpoint", "url: https://example.com\nlimits: {maxInFlight: 5000}", "should be less than or equal to 1000"),
		Entry("disabling after ten minutes", "WebhookEndpoint", "url: https://example.com\nlimits: {disableAfter: 10m}", "limits.disableAfter must be at least 1h"),
		// Subscription
		Entry("no event types", "Subscription", "endpointRef: {name: billing}\neventTypes: []", "spec.eventTypes: Invalid value: 0: spec.eventTypes in body should have at least 1 items"),
		Entry("an empty segment", "Subscription", "endpointRef: {name: billing}\neventTypes: [invoice..paid]", "event type pattern must be dotted segments"),
		Entry("a partial wildcard", "Subscription", "endpointRef: {name: billing}\neventTypes: [inv*]", "event type pattern must be dotted segments"),
		Entry("a repeated event type", "Subscription", "endpointRef: {name: billing}\neventTypes: [a.b, a.b]", "Duplicate value"),
		Entry("no endpoint", "Subscription", "endpointRef: {name: \"\"}\neventTypes: [\"*\"]", "spec.endpointRef.name"),
		Entry("an endpoint in another namespace", "Subscription", "endpointRef: {name: other/billing}\neventTypes: [\"*\"]",
			"endpointRef.name must be the name of a WebhookEndpoint in this namespace"),
		Entry("a filter over 4096 characters", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\nfilter: \""+strings.Repeat("a", 4097)+"\"", "spec.filter: Too long"),
		Entry("a schedule and exponential backoff", "Subscription",
			"endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {schedule: [5s], exponential: {initialInterval: 1s, maxInterval: 1h}}", "set either delivery.schedule or delivery.exponential, not both"),
		Entry("a retry delay over a week", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {schedule: [5s, 200h]}", "each delay in delivery.schedule must be at most 168h"),
		Entry("zero attempts", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {maxAttempts: 0}", "should be greater than or equal to 1"),
		Entry("a max age under a minute", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {maxAge: 30s}", "delivery.maxAge must be between 1m and 720h"),
		Entry("a Retry-After cap over a day", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {retryAfterMax: 48h}", "delivery.retryAfterMax must be between 1s and 24h"),
		Entry("a multiplier of one", "Subscription",
			"endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {exponential: {initialInterval: 1s, maxInterval: 1h, multiplier: 1}}", "should be greater than or equal to 2"),
		Entry("an unknown payload format", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\npayload: {format: XML}", `Unsupported value: "XML"`),
		Entry("an ordering key without ordered delivery", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {orderingKey: data.customerId}",
			"delivery.orderingKey needs delivery.ordering: Ordered"),
		Entry("an ordering key on unordered delivery", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {ordering: Unordered, orderingKey: data.customerId}",
			"delivery.orderingKey needs delivery.ordering: Ordered"),
		Entry("ordering lanes without a key", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {ordering: Ordered, orderingLanes: 8}",
			"delivery.orderingLanes needs delivery.orderingKey"),
		Entry("zero ordering lanes", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {ordering: Ordered, orderingKey: data.k, orderingLanes: 0}",
			"spec.delivery.orderingLanes in body should be greater than or equal to 1"),
		Entry("1000 ordering lanes", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {ordering: Ordered, orderingKey: data.k, orderingLanes: 1000}",
			"spec.delivery.orderingLanes in body should be less than or equal to 256"),
		Entry("an empty ordering key", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {ordering: Ordered, orderingKey: \"\"}",
			"spec.delivery.orderingKey"),
		Entry("an ordering key over 1024 characters", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {ordering: Ordered, orderingKey: \""+strings.Repeat("a", 1025)+"\"}",
			"spec.delivery.orderingKey: Too long"),
		Entry("an unknown ordering", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {ordering: Random}", `Unsupported value: "Random"`),
		Entry("a Secret key with a slash", "WebhookEndpoint",
			"url: https://example.com\nauth: {bearer: {name: s, key: a/b}}", "spec.auth.bearer.key"),
		Entry("an API key name with a colon", "WebhookEndpoint",
			"url: https://example.com\nauth: {apiKey: {name: \"X:Key\", valueFrom: {name: s, key: k}}}", "spec.auth.apiKey.name"),
		Entry("a header value over 4096 characters", "WebhookEndpoint",
			"url: https://example.com\nheaders: [{name: X-A, value: \""+strings.Repeat("v", 4097)+"\"}]", "spec.headers[0].value: Too long"),
		Entry("a zero burst", "WebhookEndpoint", "url: https://example.com\nlimits: {burst: 0}", "spec.limits.burst"),
		Entry("a TLS server name over 253 characters", "WebhookEndpoint",
			"url: https://example.com\ntls: {serverName: "+strings.Repeat("a", 254)+"}", "spec.tls.serverName: Too long"),
		Entry("an empty filter", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\nfilter: \"\"", "spec.filter"),
		Entry("an event type pattern over 256 characters", "Subscription",
			"endpointRef: {name: b}\neventTypes: ["+strings.Repeat("a", 257)+"]", "spec.eventTypes[0]: Too long"),
		Entry("an empty retry schedule", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {schedule: []}", "spec.delivery.schedule"),
		Entry("an attempt timeout over a minute", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {timeout: 90s}", "delivery.timeout must be between 1s and 60s"),
		Entry("an initial interval over an hour", "Subscription",
			"endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {exponential: {initialInterval: 2h, maxInterval: 3h}}", "exponential.initialInterval must be between 1s and 1h"),
		Entry("a max interval over a week", "Subscription",
			"endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {exponential: {initialInterval: 1s, maxInterval: 200h}}", "exponential.maxInterval must be between 1s and 168h"),
		Entry("exponential backoff without its intervals", "Subscription",
			"endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {exponential: {multiplier: 3}}", "spec.delivery.exponential.initialInterval: Required value"),
		Entry("101 attempts", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {maxAttempts: 101}", "should be less than or equal to 100"),
		Entry("65 event types", "Subscription", "endpointRef: {name: b}\neventTypes: ["+manyTypes(65)+"]", "must have at most 64 items"),
		Entry("an unknown client error policy", "Subscription", "endpointRef: {name: b}\neventTypes: [\"*\"]\ndelivery: {clientErrors: Sometimes}", `Unsupported value: "Sometimes"`),
	)

	It("accepts every sample in config/samples", func() {
		files, err := filepath.Glob(filepath.Join(env.RepoRoot, "config", "samples", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		created := 0
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(string(data)), 4096)
			for {
				var u unstructured.Unstructured
				if err := dec.Decode(&u.Object); err != nil {
					break
				}
				if len(u.Object) == 0 {
					continue
				}
				u.SetNamespace(ns)
				Expect(k8sClient.Create(ctx, &u)).To(Succeed(), "%s: %s %s", filepath.Base(f), u.GetKind(), u.GetName())
				created++
			}
		}
		Expect(created).To(BeNumerically(">=", 8))
	})

	It("fills in the documented defaults", func() {
		ep := object("WebhookEndpoint", ns, "url: https://example.com\nsigning: {rotation: {}}\nauth: {apiKey: {name: k, valueFrom: {name: s, key: k}}}")
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		every, _, _ := unstructured.NestedString(ep.Object, "spec", "signing", "rotation", "every")
		overlap, _, _ := unstructured.NestedString(ep.Object, "spec", "signing", "rotation", "overlap")
		in, _, _ := unstructured.NestedString(ep.Object, "spec", "auth", "apiKey", "in")
		Expect([]string{every, overlap, in}).To(Equal([]string{"2160h", "24h", "Header"}))

		limited := object("WebhookEndpoint", ns, "url: https://example.com\nlimits: {}")
		Expect(k8sClient.Create(ctx, limited)).To(Succeed())
		timeout, _, _ := unstructured.NestedString(limited.Object, "spec", "limits", "timeout")
		disableAfter, _, _ := unstructured.NestedString(limited.Object, "spec", "limits", "disableAfter")
		maxInFlight, _, _ := unstructured.NestedInt64(limited.Object, "spec", "limits", "maxInFlight")
		Expect([]string{timeout, disableAfter}).To(Equal([]string{"15s", "120h"}))
		Expect(maxInFlight).To(BeEquivalentTo(32))

		sub := object("Subscription", ns, "endpointRef: {name: b}\neventTypes: [\"*\"]\npayload: {}\ndelivery: {exponential: {initialInterval: 1s, maxInterval: 1m}}")
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		format, _, _ := unstructured.NestedString(sub.Object, "spec", "payload", "format")
		ordering, _, _ := unstructured.NestedString(sub.Object, "spec", "delivery", "ordering")
		clientErrors, _, _ := unstructured.NestedString(sub.Object, "spec", "delivery", "clientErrors")
		retryAfterMax, _, _ := unstructured.NestedString(sub.Object, "spec", "delivery", "retryAfterMax")
		multiplier, _, _ := unstructured.NestedInt64(sub.Object, "spec", "delivery", "exponential", "multiplier")
		Expect([]string{format, ordering, clientErrors, retryAfterMax}).To(Equal([]string{"StandardWebhooks", "Unordered", "Retry", "1h"}))
		Expect(multiplier).To(BeEquivalentTo(2))
	})
})

func manyHeaders(n int) string {
	hs := make([]string, n)
	for i := range hs {
		hs[i] = fmt.Sprintf("{name: X-H%d, value: v}", i)
	}
	return strings.Join(hs, ", ")
}

func manyTypes(n int) string {
	ts := make([]string, n)
	for i := range ts {
		ts[i] = fmt.Sprintf("t%d", i)
	}
	return strings.Join(ts, ", ")
}
