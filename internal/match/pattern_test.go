package match

import (
	"fmt"
	"strings"
	"testing"
)

func TestValidatePattern(t *testing.T) {
	tests := []struct {
		pattern string
		wantMsg string // "" means valid
	}{
		{pattern: "*"},
		{pattern: "invoice.paid"},
		{pattern: "invoice.*"},
		{pattern: "*.paid"},
		{pattern: "a.*.c.*"},
		{pattern: "Order_v2.created-late"},
		{pattern: "", wantMsg: "is empty"},
		{pattern: ".invoice", wantMsg: "segment 1 is empty"},
		{pattern: "invoice.", wantMsg: "segment 2 is empty"},
		{pattern: "invoice..paid", wantMsg: "segment 2 is empty"},
		{pattern: "inv*", wantMsg: `"*" must be a whole segment`},
		{pattern: "invoice.**", wantMsg: `"*" must be a whole segment`},
		{pattern: "invoice paid", wantMsg: `contains ' '`},
		{pattern: "invoice/paid", wantMsg: `contains '/'`},
		{pattern: "rechnung.bezahlt.ü", wantMsg: `segment 3 "ü" contains 'ü'`},
		{pattern: "invoice.#", wantMsg: `contains '#'`},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			err := ValidatePattern(tt.pattern)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantMsg)
			}
		})
	}
}

func TestValidateEventType(t *testing.T) {
	for _, valid := range []string{"invoice.paid", "a", "A-1_b.c"} {
		if err := ValidateEventType(valid); err != nil {
			t.Errorf("%q: %v", valid, err)
		}
	}
	for typ, msg := range map[string]string{"": "is empty", "invoice.*": "only patterns may use", "*": "only patterns may use", "a..b": "segment 2 is empty"} {
		if err := ValidateEventType(typ); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: error %v, want one saying %q", typ, err, msg)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		patterns []string
		yes, no  []string
	}{
		{patterns: []string{"*"}, yes: []string{"a", "invoice.paid", "a.b.c.d"}, no: []string{""}},
		{patterns: []string{"invoice.paid"}, yes: []string{"invoice.paid"}, no: []string{"invoice", "invoice.paid.late", "Invoice.paid", "invoice.pai", "xinvoice.paid"}},
		{patterns: []string{"invoice.*"}, yes: []string{"invoice.paid", "invoice.paid.late"}, no: []string{"invoice", "invoice.", "invoices.paid", "order.invoice.paid"}},
		{patterns: []string{"*.paid"}, yes: []string{"invoice.paid", "order.paid"}, no: []string{"paid", "eu.invoice.paid", "invoice.paid.late", "invoice.paid.", ".paid"}},
		{patterns: []string{"a.*.c"}, yes: []string{"a.b.c", "a.x.c"}, no: []string{"a.c", "a.b.b.c", "a..c", "a.b.c.d"}},
		{patterns: []string{"a.*.c.*"}, yes: []string{"a.b.c.d", "a.b.c.d.e"}, no: []string{"a.b.c", "a.b.d.e"}},
		{patterns: []string{"*.*"}, yes: []string{"a.b", "a.b.c"}, no: []string{"a"}},
		{patterns: []string{"order.created", "invoice.*"}, yes: []string{"order.created", "invoice.x"}, no: []string{"order.updated"}},
		{patterns: nil, no: []string{"a", "invoice.paid"}},
		{patterns: []string{"a.b", "a.b", "*"}, yes: []string{"z"}},
		{
			patterns: []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "x.*"},
			yes:      []string{"e0", "e8", "x.y"},
			no:       []string{"e9", "x"},
		},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.patterns, ","), func(t *testing.T) {
			m, err := Compile(tt.patterns)
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range tt.yes {
				if !m.Match(typ) {
					t.Errorf("%q should match", typ)
				}
			}
			for _, typ := range tt.no {
				if m.Match(typ) {
					t.Errorf("%q should not match", typ)
				}
			}
		})
	}
}

func TestZeroMatcherMatchesNothing(t *testing.T) {
	var m Matcher
	if m.Match("invoice.paid") {
		t.Fatal("zero Matcher matched")
	}
}

func TestCompileReportsEveryInvalidPattern(t *testing.T) {
	_, err := Compile([]string{"ok.*", "bad..one", "fine", "in*valid"})
	if err == nil {
		t.Fatal("expected an error")
	}
	for _, want := range []string{`[1]: event type pattern "bad..one"`, `[3]: event type pattern "in*valid"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestMatchAllocations(t *testing.T) {
	m, err := Compile([]string{"order.created", "invoice.*", "*.refunded", "a.*.c"})
	if err != nil {
		t.Fatal(err)
	}
	types := []string{"order.created", "invoice.paid.late", "charge.refunded", "a.b.c", "nothing.here.at.all"}
	n := testing.AllocsPerRun(100, func() {
		for _, typ := range types {
			m.Match(typ)
		}
	})
	if n != 0 {
		t.Fatalf("Match allocates %v times per run", n)
	}
}

func BenchmarkMatch(b *testing.B) {
	cases := []struct {
		name     string
		patterns []string
		typ      string
	}{
		{name: "all", patterns: []string{"*"}, typ: "invoice.paid"},
		{name: "exact/hit", patterns: []string{"order.created", "invoice.paid"}, typ: "invoice.paid"},
		{name: "exact/miss", patterns: []string{"order.created", "invoice.paid"}, typ: "invoice.voided"},
		{name: "trailing/hit", patterns: []string{"invoice.*"}, typ: "invoice.paid.late"},
		{name: "middle/miss", patterns: []string{"*.refunded"}, typ: "invoice.paid"},
		{name: "mixed10/miss", patterns: mixed(10), typ: "zzz.none.of.these"},
		{name: "exact50/hit", patterns: exact(50), typ: "event49.created"},
	}
	for _, c := range cases {
		m, err := Compile(c.patterns)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Match(c.typ)
			}
		})
	}
}

func exact(n int) []string {
	p := make([]string, n)
	for i := range p {
		p[i] = fmt.Sprintf("event%d.created", i)
	}
	return p
}

func mixed(n int) []string {
	p := make([]string, n)
	for i := range p {
		switch i % 3 {
		case 0:
			p[i] = fmt.Sprintf("event%d.created", i)
		case 1:
			p[i] = fmt.Sprintf("event%d.*", i)
		default:
			p[i] = fmt.Sprintf("*.kind%d", i)
		}
	}
	return p
}
