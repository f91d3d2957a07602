package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func newEventType(ns, name, typ, schema, example string) *hooklinev1.EventType {
	et := &hooklinev1.EventType{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       hooklinev1.EventTypeSpec{Type: typ, Description: "test type"},
	}
	if schema != "" {
		et.Spec.Schema = &apiextensionsv1.JSON{Raw: []byte(schema)}
	}
	if example != "" {
		et.Spec.Example = &apiextensionsv1.JSON{Raw: []byte(example)}
	}
	return et
}

const invoiceSchema = `{"type":"object","required":["invoice","amount"],"properties":{"invoice":{"type":"string"},"amount":{"type":"integer","minimum":0}}}`

func eventTypeReady(et *hooklinev1.EventType) func(g Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(et), et)).To(Succeed())
		c := meta.FindStatusCondition(et.Status.Conditions, hooklinev1.ConditionReady)
		g.Expect(c).NotTo(BeNil(), "no Ready condition yet")
		g.Expect(c.ObservedGeneration).To(Equal(et.Generation))
		return *c
	}
}

func unknownTypesOf(sub *hooklinev1.Subscription) func(g Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(sub), sub)).To(Succeed())
		return meta.FindStatusCondition(sub.Status.Conditions, hooklinev1.ConditionUnknownEventTypes)
	}
}

var _ = Describe("EventType", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("is Ready when its schema compiles and its example matches", func() {
		et := newEventType(ns, "invoice-paid", "invoice.paid", invoiceSchema, `{"invoice":"in_1","amount":5}`)
		et.Spec.Enforce = true
		Expect(k8sClient.Create(ctx, et)).To(Succeed())
		Eventually(eventTypeReady(et)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonValid))
		Expect(et.Status.MatchingSubscriptions).To(HaveValue(BeEquivalentTo(0)))
	})

	It("is Ready=False InvalidSchema, naming spec.schema, for a schema that does not compile", func() {
		et := newEventType(ns, "bad", "invoice.paid", `{"type":"objekt"}`, "")
		Expect(k8sClient.Create(ctx, et)).To(Succeed())
		Eventually(eventTypeReady(et)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonInvalidSchema))
		Expect(eventTypeReady(et)(Default).Message).To(And(ContainSubstring("spec.schema"), ContainSubstring("spec.schema.type")))

		By("becoming Ready once the schema is fixed")
		et.Spec.Schema = &apiextensionsv1.JSON{Raw: []byte(`{"type":"object"}`)}
		Expect(k8sClient.Update(ctx, et)).To(Succeed())
		Eventually(eventTypeReady(et)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonValid))
	})

	It("refuses a schema that refers to another document", func() {
		et := newEventType(ns, "remote", "invoice.paid", `{"$ref":"https://example.com/schema.json"}`, "")
		Expect(k8sClient.Create(ctx, et)).To(Succeed())
		Eventually(eventTypeReady(et)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonInvalidSchema))
		Expect(eventTypeReady(et)(Default).Message).To(ContainSubstring("only references within the schema itself"))
	})

	It("is Ready=False InvalidExample when the example does not match, naming the path and rule", func() {
		et := newEventType(ns, "example", "invoice.paid", invoiceSchema, `{"invoice":"in_1","amount":-3}`)
		Expect(k8sClient.Create(ctx, et)).To(Succeed())
		Eventually(eventTypeReady(et)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonInvalidExample))
		Expect(eventTypeReady(et)(Default).Message).To(And(ContainSubstring("spec.example.amount"), ContainSubstring(`"minimum"`)))
	})

	It("is refused by the API server with enforce and no schema, a wildcard type, or a schema that is not an object", func() {
		et := newEventType(ns, "noschema", "invoice.paid", "", "")
		et.Spec.Enforce = true
		err := k8sClient.Create(ctx, et)
		Expect(err).To(MatchError(ContainSubstring("spec.enforce needs spec.schema")))
		err = k8sClient.Create(ctx, newEventType(ns, "wild", "invoice.*", "", ""))
		Expect(err).To(MatchError(ContainSubstring("spec.type must be an event type")))
		err = k8sClient.Create(ctx, newEventType(ns, "boolean", "invoice.paid", "true", ""))
		Expect(err).To(MatchError(ContainSubstring("spec.schema")))
	})

	It("counts matching Subscriptions, and warns Subscriptions that match no known type", func() {
		et := newEventType(ns, "invoice-paid", "invoice.paid", "", "")
		Expect(k8sClient.Create(ctx, et)).To(Succeed())
		Eventually(eventTypeReady(et)).Should(haveReady(metav1.ConditionTrue, hooklinev1.ReasonValid))

		match := newSubscription(ns, "invoices", "billing") // invoice.*
		typo := newSubscription(ns, "typo", "billing")
		typo.Spec.EventTypes = []string{"invoise.*"}
		Expect(k8sClient.Create(ctx, match)).To(Succeed())
		Expect(k8sClient.Create(ctx, typo)).To(Succeed())

		Eventually(func(g Gomega) *int32 {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(et), et)).To(Succeed())
			return et.Status.MatchingSubscriptions
		}).Should(HaveValue(BeEquivalentTo(1)))

		Eventually(unknownTypesOf(typo)).Should(And(Not(BeNil()),
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", hooklinev1.ReasonNoMatchingEventType),
			HaveField("Message", ContainSubstring("invoice.paid"))))
		Consistently(unknownTypesOf(match), "1s").Should(BeNil())
		By("not affecting Ready, which follows the endpoint as before")
		Expect(readyOf(typo)(Default).Reason).To(Equal(hooklinev1.ReasonEndpointNotFound))

		By("clearing the warning once the catalog lists a type it matches")
		Expect(k8sClient.Create(ctx, newEventType(ns, "invoise", "invoise.sent", "", ""))).To(Succeed())
		Eventually(unknownTypesOf(typo)).Should(BeNil())
		Eventually(func(g Gomega) *int32 {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(et), et)).To(Succeed())
			return et.Status.MatchingSubscriptions
		}).Should(HaveValue(BeEquivalentTo(1)))
	})

	It("leaves Subscriptions of a namespace without a catalog alone", func() {
		sub := newSubscription(ns, "invoices", "billing")
		Expect(k8sClient.Create(ctx, sub)).To(Succeed())
		Eventually(readyOf(sub)).Should(haveReady(metav1.ConditionFalse, hooklinev1.ReasonEndpointNotFound))
		Expect(unknownTypesOf(sub)(Default)).To(BeNil())
	})
})
