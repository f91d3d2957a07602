package match

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
)

var evTime = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)

func event(t testing.TB, data string) FilterInput {
	t.Helper()
	var d any
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		t.Fatal(err)
	}
	return FilterInput{Type: "invoice.paid", ID: "evt_1", Time: evTime, Data: d}
}

func TestFilterEval(t *testing.T) {
	ev := event(t, `{"amount": 1500, "currency": "EUR", "customer": {"country": "DE", "tier": "gold"},
		"items": [{"sku": "a-1", "qty": 2}, {"sku": "b-2", "qty": 1}], "flag": true, "note": null}`)
	tests := []struct {
		expr string
		want bool
	}{
		{expr: `true`, want: true},
		{expr: `type == "invoice.paid"`, want: true},
		{expr: `type.startsWith("order.")`, want: false},
		{expr: `id == "evt_1"`, want: true},
		{expr: `type(data.amount) == double`, want: true},
		{expr: `time > timestamp("2026-01-01T00:00:00Z")`, want: true},
		{expr: `time.getFullYear() == 2025`, want: false},
		{expr: `data.amount > 1000`, want: true},
		{expr: `data.amount == 1500`, want: true},
		{expr: `data.amount >= 1000.5 && data.currency == "EUR"`, want: true},
		{expr: `data.customer.country in ["DE", "FR"]`, want: true},
		{expr: `data.items.exists(i, i.sku == "b-2")`, want: true},
		{expr: `data.items.all(i, i.qty > 1)`, want: false},
		{expr: `size(data.items) == 2`, want: true},
		{expr: `data.flag == true`, want: true},
		{expr: `data.note == null`, want: true},
		{expr: `has(data.missing)`, want: false},
		{expr: `!has(data.missing) || data.missing == 1`, want: true},
		{expr: `has(data.customer.tier) && data.customer.tier.matches("^g")`, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := CompileFilter(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Eval(ev)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCompileFilterErrors(t *testing.T) {
	tests := []struct {
		name    string
		expr    string
		wantMsg []string
	}{
		{name: "syntax", expr: `type == `, wantMsg: []string{"Syntax error", "1:9"}},
		{name: "reserved word", expr: `namespace == "x"`, wantMsg: []string{"reserved identifier: namespace"}},
		{name: "unknown variable", expr: `kind == "x"`, wantMsg: []string{"undeclared reference to 'kind'", "1:1"}},
		{name: "unknown function", expr: `type.lowerAscii() == "x"`, wantMsg: []string{"lowerAscii"}},
		{name: "type mismatch", expr: `type == 1`, wantMsg: []string{"no matching overload"}},
		{name: "string result", expr: `type`, wantMsg: []string{"must evaluate to a bool", "string"}},
		{name: "int result", expr: `size(data)`, wantMsg: []string{"must evaluate to a bool", "int"}},
		{name: "dyn result", expr: `data.flag`, wantMsg: []string{"must evaluate to a bool", "dyn", "data.flag == true"}},
		{name: "empty", expr: ``, wantMsg: []string{"Syntax error"}},
		{name: "nested loops", expr: `data.items.all(i, data.items.exists(j, i == j))`, wantMsg: []string{"worst-case cost", "above the filter budget"}},
		{name: "too long", expr: strings.Repeat("true && ", 600) + "true", wantMsg: []string{"size exceeds limit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompileFilter(tt.expr)
			if err == nil {
				t.Fatal("expected an error")
			}
			if !errors.Is(err, ErrFilterCompile) {
				t.Errorf("error does not wrap ErrFilterCompile: %v", err)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestFilterEvalErrors(t *testing.T) {
	ev := event(t, `{"amount": 1500, "items": [1, 2, 3], "name": "x"}`)
	tests := []struct {
		name    string
		expr    string
		ev      FilterInput
		wantMsg string
	}{
		{name: "missing field", expr: `data.customer.country == "DE"`, ev: ev, wantMsg: "no such key: customer"},
		{name: "field of a scalar", expr: `data.name.first == "x"`, ev: ev, wantMsg: "evaluating filter"},
		{name: "wrong type at runtime", expr: `data.name > 3`, ev: ev, wantMsg: "no such overload"},
		{name: "no data", expr: `data.amount > 1`, ev: FilterInput{Type: "invoice.paid"}, wantMsg: "evaluating filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := CompileFilter(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Eval(tt.ev)
			if got || err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("got %v, %v; want false and an error saying %q", got, err, tt.wantMsg)
			}
		})
	}
}

// lowLimits make the budget reachable with a small event.
var lowLimits = limits{budget: 100_000, eventSize: 1_000}

// TestFilterEventTooLarge: the estimate bounds the cost of an evaluation
// only for events up to the size it assumed; a larger one fails evaluation,
// naming the size, rather than doing unbounded work.
func TestFilterEventTooLarge(t *testing.T) {
	f, err := compileFilter(`data.items.exists(i, i == -1)`, lowLimits)
	if err != nil {
		t.Fatal(err)
	}
	small := FilterInput{Data: map[string]any{"items": []any{1.0, 2.0, 3.0}}, DataSize: 17}
	if ok, err := f.Eval(small); ok || err != nil {
		t.Fatalf("small event: got %v, %v; want false, nil", ok, err)
	}
	// Larger than the size the estimate assumed, as a --max-body-bytes above
	// MaxEventSize lets through.
	items := make([]any, 5_000)
	for i := range items {
		items[i] = float64(i)
	}
	large := FilterInput{Data: map[string]any{"items": items}, DataSize: 1_001}
	for name, eval := range map[string]func() (bool, error){
		"Eval":        func() (bool, error) { return f.Eval(large) },
		"EvalContext": func() (bool, error) { return f.EvalContext(context.Background(), large) },
		"long type":   func() (bool, error) { return f.Eval(FilterInput{Type: strings.Repeat("t", 1_001), Data: small.Data}) },
	} {
		ok, err := eval()
		if ok || !errors.Is(err, ErrEventTooLarge) || !strings.Contains(err.Error(), "above the 1000 bytes") {
			t.Errorf("%s: got %v, %v; want false and ErrEventTooLarge naming the size", name, ok, err)
		}
	}
	def, err := CompileFilter(`data.items.exists(i, i == -1)`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := def.Eval(FilterInput{Data: small.Data, DataSize: MaxEventSize + 1}); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("default limits, data of MaxEventSize+1 bytes: %v, want ErrEventTooLarge", err)
	}
}

// TestFilterLargeListsEvaluate: a filter accepted at apply time evaluates
// over any event it was accepted for. The old runtime limit (10,000 units)
// failed one pass over 5,000 items although the estimate had accepted it.
func TestFilterLargeListsEvaluate(t *testing.T) {
	f, err := CompileFilter(`data.items.exists(i, i == -1)`)
	if err != nil {
		t.Fatal(err)
	}
	in := maxSizeList(t, "items")
	if ok, err := f.Eval(in); ok || err != nil {
		t.Fatalf("%d items: got %v, %v; want false, nil", len(in.Data.(map[string]any)["items"].([]any)), ok, err)
	}
	g, err := CompileFilter(`data.items.exists(i, i == 0)`)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := g.Eval(in); !ok || err != nil {
		t.Fatalf("got %v, %v; want true, nil", ok, err)
	}
}

// maxSizeList is {"<key>":[0,0,...]} with as many items as fit in
// MaxEventSize bytes: the most iterations a loop over data can make.
func maxSizeList(t testing.TB, key string) FilterInput {
	t.Helper()
	n := (MaxEventSize - len(`{"":[]}`) - len(key) + 1) / 2
	raw := []byte(`{"` + key + `":[` + strings.Repeat("0,", n-1) + `0]}`)
	if len(raw) > MaxEventSize {
		t.Fatalf("built %d bytes", len(raw))
	}
	var d any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return FilterInput{Type: "order.created", ID: "e1", Time: evTime, Data: d, DataSize: len(raw)}
}

// worstAccepted passes over a max-size list as often as the budget allows:
// one more pass is refused (TestFilterBudget).
const worstAccepted = `data.a.map(i, i).exists(p, p == -1) || data.a.map(i, i).exists(p, p == -2)`

// TestFilterBudget: one budget, FilterCostLimit, decides what compiles; the
// refusal names the estimate, the budget and the fix.
func TestFilterBudget(t *testing.T) {
	// A single pass is allowed with the default limits, so that ordinary
	// filters over lists compile.
	if _, err := CompileFilter(`data.items.exists(i, i.sku.startsWith("x"))`); err != nil {
		t.Fatalf("single pass rejected: %v", err)
	}
	f, err := CompileFilter(worstAccepted)
	if err != nil {
		t.Fatalf("worst accepted filter rejected: %v", err)
	}
	if f.EstimatedCost() > FilterCostLimit || f.EstimatedCost() < FilterCostLimit*9/10 {
		t.Errorf("worst accepted filter estimated at %d; want just under %d", f.EstimatedCost(), FilterCostLimit)
	}
	_, err = CompileFilter(worstAccepted + ` || data.a.exists(p, p == -3)`)
	if !errors.Is(err, ErrFilterCompile) || !strings.Contains(err.Error(), fmt.Sprintf("above the filter budget of %d", FilterCostLimit)) ||
		!strings.Contains(err.Error(), "avoid nesting loops") {
		t.Errorf("one pass more: %v; want a refusal naming the budget and the fix", err)
	}
	if _, err := compileFilter(`data.items.exists(i, i == 1)`, lowLimits); err != nil {
		t.Fatalf("single pass rejected under low limits: %v", err)
	}
	if _, err := compileFilter(`data.a.exists(i, data.b.exists(j, i == j))`, lowLimits); err == nil {
		t.Fatal("nested loops accepted")
	}
}

// TestFilterEstimateBoundsRuntimeCost: what makes one budget enough. For
// filters of each kind, cel-go's own tracker, run over events that fill the
// size the estimate assumed, never counts more than the estimate.
func TestFilterEstimateBoundsRuntimeCost(t *testing.T) {
	const size = 2_000
	lim := limits{budget: 1 << 62, eventSize: size}
	env, err := filterEnv()
	if err != nil {
		t.Fatal(err)
	}
	list := `[` + strings.Repeat("0,", (size-20)/2) + `0]`
	objs := `[` + strings.Repeat(`{"p":1},`, (size-20)/8) + `{"p":1}]`
	str := `"` + strings.Repeat("ab", (size-20)/2) + `"`
	events := []string{
		`{"a":` + list + `}`,
		`{"a":` + objs + `}`,
		`{"a":` + str + `}`,
		`{"a":{` + strings.Repeat(`"k":1,`, 0) + `"k":` + list + `}}`,
	}
	exprs := []string{
		`data.a.exists(p, p == -1)`,
		`data.a.all(p, p != -1)`,
		`data.a.map(i, i).exists(p, p == -1) || data.a.map(i, i).exists(p, p == -2)`,
		`data.a.filter(i, i == 0).size() > 2`,
		`data.a.exists(o, has(o.p) && o.p > 5)`,
		`data.a.contains("zz") || data.a.startsWith("b") || data.a.matches("^(ab)+$")`,
		`size(data.a) > 3 && "x" in data.a`,
		`data.a.k.exists(p, p == 1) || type.startsWith("order.")`,
	}
	for _, ev := range events {
		if len(ev) > size {
			t.Fatalf("event of %d bytes, above %d", len(ev), size)
		}
		var d any
		if err := json.Unmarshal([]byte(ev), &d); err != nil {
			t.Fatal(err)
		}
		for _, expr := range exprs {
			f, err := compileFilter(expr, lim)
			if err != nil {
				t.Fatal(err)
			}
			ast, _ := env.Compile(expr)
			prg, err := env.Program(ast, cel.CostTracking(nil))
			if err != nil {
				t.Fatal(err)
			}
			_, det, _ := prg.Eval(&activation{in: &FilterInput{Type: "order.created", ID: "e1", Time: evTime, Data: d, DataSize: len(ev)}})
			if det == nil || det.ActualCost() == nil {
				t.Fatalf("%s: no cost tracked", expr)
			}
			if got := *det.ActualCost(); got > f.EstimatedCost() {
				t.Errorf("%s over %.40s...: cost %d, above the estimate %d", expr, ev, got, f.EstimatedCost())
			}
		}
	}
}

// BenchmarkWorstAcceptedFilter evaluates the costliest filter the budget
// accepts over the largest event: the most CPU one delivery's filter can
// take. It prints figures; it asserts no speed.
func BenchmarkWorstAcceptedFilter(b *testing.B) {
	for _, bc := range []struct{ name, expr string }{
		{"worst", worstAccepted},
		{"one-pass", `data.a.exists(p, p == -1)`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := CompileFilter(bc.expr)
			if err != nil {
				b.Fatal(err)
			}
			in := maxSizeList(b, "a")
			for b.Loop() {
				if ok, err := f.Eval(in); ok || err != nil {
					b.Fatalf("got %v, %v", ok, err)
				}
			}
			b.ReportMetric(float64(f.EstimatedCost()), "estimated-cost")
			b.ReportMetric(float64(len(in.Data.(map[string]any)["a"].([]any))), "items")
		})
	}
}

func TestFilterContextCancel(t *testing.T) {
	f, err := CompileFilter(`data.items.exists(i, i == -1)`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	items := make([]any, 1_000)
	for i := range items {
		items[i] = float64(i)
	}
	ok, err := f.EvalContext(ctx, FilterInput{Data: map[string]any{"items": items}})
	if ok || err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, %v; want false and context.Canceled", ok, err)
	}
}

func TestFilterConcurrentEval(t *testing.T) {
	f, err := CompileFilter(`int(data.n) % 2 == 0 && type == "t" + string(int(data.n) % 3)`)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := w*1000 + i
				ev := FilterInput{Type: fmt.Sprintf("t%d", n%3), Data: map[string]any{"n": float64(n)}}
				got, err := f.Eval(ev)
				if err != nil {
					errs <- err
					return
				}
				if want := n%2 == 0; got != want {
					errs <- fmt.Errorf("n=%d: got %v, want %v", n, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkFilterEval(b *testing.B) {
	ev := event(b, `{"amount": 1500, "currency": "EUR", "customer": {"country": "DE"}, "items": [{"sku": "a"}, {"sku": "b"}]}`)
	for _, expr := range []string{
		`type == "invoice.paid"`,
		`data.amount > 1000 && data.customer.country in ["DE", "FR"]`,
		`data.items.exists(i, i.sku == "b")`,
	} {
		f, err := CompileFilter(expr)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(expr, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Eval(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
