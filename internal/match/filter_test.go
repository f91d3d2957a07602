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
		{name: "nested loops", expr: `data.items.all(i, data.items.exists(j, i == j))`, wantMsg: []string{"worst-case cost", "above the limit"}},
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

// lowLimits make the cost limits reachable with a small event.
var lowLimits = limits{runtime: 1_000, estimated: 100_000, eventSize: 1_000}

func TestFilterRuntimeCostLimit(t *testing.T) {
	f, err := compileFilter(`data.items.exists(i, i == -1)`, lowLimits)
	if err != nil {
		t.Fatal(err)
	}
	small := FilterInput{Data: map[string]any{"items": []any{1.0, 2.0, 3.0}}}
	if ok, err := f.Eval(small); ok || err != nil {
		t.Fatalf("small event: got %v, %v; want false, nil", ok, err)
	}
	// Larger than the size the estimate assumed, as a misconfigured size
	// limit or a bug upstream could let through.
	items := make([]any, 5_000)
	for i := range items {
		items[i] = float64(i)
	}
	ok, err := f.Eval(FilterInput{Data: map[string]any{"items": items}})
	if ok || err == nil || !strings.Contains(err.Error(), "cost limit exceeded") {
		t.Fatalf("got %v, %v; want false and a cost limit error", ok, err)
	}
}

func TestFilterDefaultRuntimeCostLimit(t *testing.T) {
	f, err := CompileFilter(`data.items.exists(i, i == -1)`)
	if err != nil {
		t.Fatal(err)
	}
	list := func(n int) FilterInput {
		items := make([]any, n)
		for i := range items {
			items[i] = float64(i)
		}
		return FilterInput{Data: map[string]any{"items": items}}
	}
	// A loop over a thousand items is an ordinary filter and must fit.
	if ok, err := f.Eval(list(1_000)); ok || err != nil {
		t.Fatalf("1,000 items: got %v, %v; want false, nil", ok, err)
	}
	if ok, err := f.Eval(list(5_000)); ok || err == nil || !strings.Contains(err.Error(), "cost limit exceeded") {
		t.Fatalf("5,000 items: got %v, %v; want false and a cost limit error", ok, err)
	}
}

func TestFilterEstimatedCostLimit(t *testing.T) {
	// A single pass is allowed with the default limits, so that ordinary
	// filters over lists compile.
	if _, err := CompileFilter(`data.items.exists(i, i.sku.startsWith("x"))`); err != nil {
		t.Fatalf("single pass rejected: %v", err)
	}
	if _, err := compileFilter(`data.items.exists(i, i == 1)`, lowLimits); err != nil {
		t.Fatalf("single pass rejected under low limits: %v", err)
	}
	if _, err := compileFilter(`data.a.exists(i, data.b.exists(j, i == j))`, lowLimits); err == nil {
		t.Fatal("nested loops accepted")
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
