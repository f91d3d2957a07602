package match

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestKeyEval(t *testing.T) {
	ev := event(t, `{"customerId": "cus_42", "account": 7, "tenant": {"id": "t-1"}, "none": null}`)
	tests := []struct {
		expr string
		want string
		ok   bool
	}{
		{expr: `data.customerId`, want: "cus_42", ok: true},
		{expr: `data.tenant.id + "/" + data.customerId`, want: "t-1/cus_42", ok: true},
		{expr: `string(data.account)`, want: "7", ok: true},
		{expr: `type`, want: "invoice.paid", ok: true},
		// The documented fallback: a missing field, or a value that is not a
		// string, gives the empty key.
		{expr: `data.missing`, want: "", ok: false},
		{expr: `data.account`, want: "", ok: false},
		{expr: `data.none`, want: "", ok: false},
		{expr: `data.tenant`, want: "", ok: false},
	}
	for _, tt := range tests {
		k, err := CompileKey(tt.expr)
		if err != nil {
			t.Fatalf("CompileKey(%q): %v", tt.expr, err)
		}
		got, ok, err := k.Eval(context.Background(), ev)
		if got != tt.want || ok != tt.ok || (err == nil) != tt.ok {
			t.Errorf("%s: got %q, %v, %v; want %q, %v", tt.expr, got, ok, err, tt.want, tt.ok)
		}
	}
}

func TestKeyCompileErrors(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{expr: `data.customerId ==`, want: "Syntax error"},
		{expr: `customerId`, want: "undeclared reference"},
		{expr: `data.amount > 3`, want: "must evaluate to a string, but it evaluates to bool; convert it, e.g. string(data.accountId)"},
		{expr: `size(data.items)`, want: "evaluates to int"},
	}
	for _, tt := range tests {
		_, err := CompileKey(tt.expr)
		if err == nil || !errors.Is(err, ErrKeyCompile) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CompileKey(%q) = %v, want an ErrKeyCompile containing %q", tt.expr, err, tt.want)
		}
	}
}

// A key is held to the filters' cost budget: one that nests passes over data
// is refused before it sees an event.
func TestKeyCostBudget(t *testing.T) {
	expr := `data.items.filter(x, data.items.exists(y, y == x)).size() > 0 ? "a" : "b"`
	if _, err := compileKey(expr, lowLimits); err == nil || !strings.Contains(err.Error(), "above the filter budget") {
		t.Fatalf("compileKey = %v, want a budget error", err)
	}
	// At the real budget too: a loop inside a loop over a 256 KiB event.
	if _, err := CompileKey(`data.a.exists(i, data.b.exists(j, i == j)) ? "x" : "y"`); err == nil || !strings.Contains(err.Error(), "above the filter budget of 10000000") {
		t.Fatalf("CompileKey of a nested loop = %v, want a budget error", err)
	}
	if _, err := compileKey(`data.customerId`, lowLimits); err != nil {
		t.Fatalf("a plain field read is within any budget: %v", err)
	}
}

func TestKeyEventTooLarge(t *testing.T) {
	k, err := compileKey(`data.customerId`, lowLimits)
	if err != nil {
		t.Fatal(err)
	}
	in := event(t, `{"customerId": "a"}`)
	in.DataSize = 2_000
	if _, ok, err := k.Eval(context.Background(), in); ok || !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("Eval over a too large event = %v, %v; want ErrEventTooLarge", ok, err)
	}
}
