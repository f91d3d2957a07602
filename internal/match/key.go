package match

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
)

// ErrKeyCompile is wrapped by every CompileKey error.
var ErrKeyCompile = errors.New("invalid ordering key")

// Key is a compiled ordering key: a CEL expression over the event, in the
// filters' environment and under their cost budget (FilterCostLimit), that
// gives the string deliveries are ordered by. It is safe for concurrent use.
type Key struct {
	expr    string
	program cel.Program
	maxSize uint64
}

// CompileKey parses and checks expr. It must give a string, or a value of
// dynamic type (data.customerId) that is a string at evaluation.
func CompileKey(expr string) (*Key, error) {
	return compileKey(expr, defaultLimits)
}

func compileKey(expr string, lim limits) (*Key, error) {
	prg, _, err := compileBounded(expr, lim, ErrKeyCompile, func(t *cel.Type) error {
		if t.IsExactType(cel.StringType) || t.IsExactType(cel.DynType) {
			return nil
		}
		return fmt.Errorf("the expression must evaluate to a string, but it evaluates to %s; "+
			"convert it, e.g. string(data.accountId)", t)
	})
	if err != nil {
		return nil, err
	}
	return &Key{expr: expr, program: prg, maxSize: lim.eventSize}, nil
}

// String returns the expression the key was compiled from.
func (k *Key) String() string { return k.expr }

// Eval gives the event's key. ok is false, with the key empty, when the
// expression fails on the event (a missing field, an event too large for
// its cost bound, ctx done) or gives something other than a string: such
// events all share the empty key, which is the documented behaviour, so
// they are still delivered, in one order among themselves. err says why,
// for a log or a metric.
func (k *Key) Eval(ctx context.Context, in FilterInput) (key string, ok bool, err error) {
	f := Filter{maxSize: k.maxSize}
	if err := f.fits(&in); err != nil {
		return "", false, err
	}
	out, _, err := k.program.ContextEval(ctx, &activation{in: &in})
	if err != nil {
		return "", false, fmt.Errorf("evaluating ordering key: %w", err)
	}
	s, isString := out.(types.String)
	if !isString {
		return "", false, fmt.Errorf("evaluating ordering key: result is %s, not a string", out.Type())
	}
	return string(s), true, nil
}
