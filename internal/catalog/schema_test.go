package catalog

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

const invoiceSchema = `{"type":"object","required":["invoice","amount"],"properties":{"invoice":{"type":"string"},"amount":{"type":"integer","minimum":0},"lines":{"type":"array","items":{"type":"object","required":["sku"]}}}}`

func TestCompileRefusesInvalidSchemas(t *testing.T) {
	for name, tc := range map[string]struct{ schema, want string }{
		"unknown type":  {`{"type":"objekt"}`, "at spec.schema.type"},
		"not JSON":      {`{"type":`, "spec.schema is not valid JSON"},
		"remote ref":    {`{"$ref":"https://example.com/s.json"}`, "only references within the schema itself"},
		"bad minimum":   {`{"minimum":"zero"}`, "at spec.schema.minimum"},
		"bad local ref": {`{"$ref":"#/$defs/missing"}`, "spec.schema"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Compile([]byte(tc.schema))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile(%s) = %v, want an error containing %q", tc.schema, err, tc.want)
			}
		})
	}
}

func TestValidateNamesPathAndRule(t *testing.T) {
	sch, err := Compile([]byte(invoiceSchema))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ data, path, rule string }{
		"minimum":       {`{"invoice":"in_1","amount":-1}`, ".amount", "minimum"},
		"required":      {`{"invoice":"in_1"}`, "", "required"},
		"type":          {`{"invoice":7,"amount":1}`, ".invoice", "type"},
		"nested":        {`{"invoice":"in_1","amount":1,"lines":[{"sku":"a"},{}]}`, ".lines[1]", "required"},
		"whole wrong":   {`[1]`, "", "type"},
		"integer check": {`{"invoice":"in_1","amount":1.5}`, ".amount", "type"},
	} {
		t.Run(name, func(t *testing.T) {
			v, err := Validate(sch, []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if v == nil {
				t.Fatalf("%s was accepted", tc.data)
			}
			if v.Path != tc.path || v.Rule != tc.rule || v.Message == "" || !strings.HasPrefix(v.KeywordLocation, "#") {
				t.Fatalf("violation = %+v, want path %q rule %q", v, tc.path, tc.rule)
			}
		})
	}
	if v, err := Validate(sch, []byte(`{"invoice":"in_1","amount":10,"lines":[{"sku":"a"}]}`)); v != nil || err != nil {
		t.Fatalf("valid data refused: %+v %v", v, err)
	}
}

func TestStaticCatalogEnforcesOnlyWhenAsked(t *testing.T) {
	et := func(name, typ string, enforce bool) hooklinev1.EventType {
		return hooklinev1.EventType{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Generation: 1},
			Spec: hooklinev1.EventTypeSpec{Type: typ, Enforce: enforce, Schema: &apiextensionsv1.JSON{Raw: []byte(invoiceSchema)},
				Example: &apiextensionsv1.JSON{Raw: []byte(`{"invoice":"in_1","amount":1}`)}},
		}
	}
	c := NewStatic([]hooklinev1.EventType{et("paid", "invoice.paid", true), et("sent", "invoice.sent", false)})
	bad := []byte(`{"invoice":"in_1","amount":-1}`)
	if v, _ := c.Lookup("shop", "invoice.paid").Check(bad); v == nil || v.Rule != "minimum" {
		t.Fatalf("enforced type accepted bad data: %+v", v)
	}
	if v, _ := c.Lookup("shop", "invoice.sent").Check(bad); v != nil {
		t.Fatalf("unenforced type refused data: %+v", v)
	}
	if e := c.Lookup("shop", "order.created"); e != nil {
		t.Fatalf("unknown type found: %+v", e)
	}
	if v, _ := c.Lookup("other", "invoice.paid").Check(bad); v != nil {
		t.Fatal("another namespace's catalog applied")
	}
	if got := string(c.Lookup("shop", "invoice.paid").Example); got != `{"invoice":"in_1","amount":1}` {
		t.Fatalf("example = %s", got)
	}
}
