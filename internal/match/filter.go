package match

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

const (
	// MaxEventSize is the largest event body the dispatcher accepts by
	// default, and the size filters are bounded for: no string, list or map
	// in data can be larger, which is what makes a filter's estimated
	// worst-case cost finite. Evaluating a filter over larger data fails
	// (a FilterError dead letter) instead of doing unbounded work.
	MaxEventSize = 256 << 10

	// FilterCostLimit is the one cost budget of a filter, in CEL's cost
	// units (roughly one simple operation each). A filter is refused at
	// apply time (the operator's InvalidFilter, the dispatcher's registry)
	// if its estimated worst-case cost over an event of up to MaxEventSize
	// exceeds it; since that estimate bounds what any evaluation over such
	// an event can cost, every evaluation stays within the same budget.
	//
	// A filter that passes over data a few times is estimated at a few
	// million (one exists() at about 1.6 million, map() then exists() at
	// about 5 million); one that nests a pass inside another in the
	// billions. BenchmarkWorstAcceptedFilter measures a filter just under
	// the budget on a max-size event.
	//
	// The budget is not also enforced by cel-go's runtime cost tracker:
	// in cel-go v0.31.0 that tracker grows a stack by every loop iteration
	// and scans it on every step, so tracking alone is quadratic in the
	// iterations (measured: 1.4 s for one exists() over 10,000 items, which
	// takes 16 ms untracked) and a max-size event would cost minutes.
	FilterCostLimit = 10_000_000

	// MaxFilterLength bounds the expression itself, in code points.
	MaxFilterLength = 4096

	// interruptCheckFrequency is how many comprehension iterations run
	// between checks of the evaluation context.
	interruptCheckFrequency = 100
)

// limits are the cost bounds a Filter is compiled with; tests shrink them.
type limits struct {
	budget    uint64
	eventSize uint64
}

var defaultLimits = limits{budget: FilterCostLimit, eventSize: MaxEventSize}

// FilterInput is the event a filter is evaluated against.
type FilterInput struct {
	Type string
	ID   string
	Time time.Time
	// Data is the event's data as encoding/json decodes it into an any:
	// map[string]any, []any, string, float64, bool or nil.
	Data any
	// DataSize is the length of the encoded data Data was decoded from. The
	// filter's cost is bounded for data up to MaxEventSize; over that,
	// evaluation fails with ErrEventTooLarge.
	DataSize int
}

// ErrEventTooLarge is returned by Eval for an event larger than the size
// filters' cost is bounded for.
var ErrEventTooLarge = errors.New("event too large for filters")

// Filter is a compiled CEL filter. It is safe for concurrent use.
type Filter struct {
	expr    string
	program cel.Program
	// maxSize is the event size the cost estimate assumed; estimate is what
	// it came to.
	maxSize  uint64
	estimate uint64
}

// ErrFilterCompile is wrapped by every CompileFilter error.
var ErrFilterCompile = errors.New("invalid filter")

// filterEnv is built once: building a CEL environment costs far more than
// compiling an expression in it, and an Env is safe for concurrent use.
var filterEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("type", cel.StringType),
		cel.Variable("id", cel.StringType),
		cel.Variable("time", cel.TimestampType),
		cel.Variable("data", cel.DynType),
		// JSON numbers decode as doubles; without this, data.amount > 100
		// fails at evaluation with "no such overload".
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxFilterLength),
	)
})

// CompileFilter parses and checks expr and prepares it for evaluation. The
// error says what is wrong and where, as CEL reports it.
func CompileFilter(expr string) (*Filter, error) {
	return compileFilter(expr, defaultLimits)
}

func compileFilter(expr string, lim limits) (*Filter, error) {
	prg, est, err := compileBounded(expr, lim, ErrFilterCompile, func(t *cel.Type) error {
		if !t.IsExactType(cel.BoolType) {
			return fmt.Errorf("the expression must evaluate to a bool, but it evaluates to %s; "+
				"compare it explicitly, e.g. data.flag == true", t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Filter{expr: expr, program: prg, maxSize: lim.eventSize, estimate: est}, nil
}

// compileBounded compiles expr in the event environment, checks its output
// type, and refuses it if its worst-case cost over an event of up to
// lim.eventSize exceeds lim.budget. Every error wraps kind.
func compileBounded(expr string, lim limits, kind error, checkType func(*cel.Type) error) (cel.Program, uint64, error) {
	env, err := filterEnv()
	if err != nil {
		return nil, 0, fmt.Errorf("building the event expression environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, 0, fmt.Errorf("%w: %w", kind, iss.Err())
	}
	if err := checkType(ast.OutputType()); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", kind, err)
	}
	est, err := env.EstimateCost(ast, sizeEstimator{maxSize: lim.eventSize})
	if err != nil {
		return nil, 0, fmt.Errorf("%w: estimating its cost: %w", kind, err)
	}
	if est.Max > lim.budget {
		return nil, 0, fmt.Errorf("%w: its worst-case cost over event data of up to %d bytes is estimated at %d, above the filter budget of %d; "+
			"avoid nesting loops over data (all, exists, exists_one, map, filter) and passing over the same list many times", kind, lim.eventSize, est.Max, lim.budget)
	}
	prg, err := env.Program(ast, cel.InterruptCheckFrequency(interruptCheckFrequency))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", kind, err)
	}
	return prg, est.Max, nil
}

// EstimatedCost is the filter's worst-case cost over an event of up to
// MaxEventSize, at most FilterCostLimit.
func (f *Filter) EstimatedCost() uint64 { return f.estimate }

// String returns the expression the filter was compiled from.
func (f *Filter) String() string { return f.expr }

// Eval reports whether the event passes the filter. An evaluation error
// (a missing field, a type mismatch, an event too large) is returned with false,
// so the event is not delivered and the caller can count the failure.
func (f *Filter) Eval(in FilterInput) (bool, error) {
	if err := f.fits(&in); err != nil {
		return false, err
	}
	out, _, err := f.program.Eval(&activation{in: &in})
	return result(out, err)
}

// EvalContext is Eval that also stops, within interruptCheckFrequency loop
// iterations, when ctx is done. It costs an extra context per call, so Eval
// is the one to use when there is no deadline to honour.
func (f *Filter) EvalContext(ctx context.Context, in FilterInput) (bool, error) {
	if err := f.fits(&in); err != nil {
		return false, err
	}
	out, _, err := f.program.ContextEval(ctx, &activation{in: &in})
	return result(out, err)
}

// fits checks the assumption the cost estimate rests on: no value in the
// event is larger than the size it was estimated for.
func (f *Filter) fits(in *FilterInput) error {
	for _, n := range []int{in.DataSize, len(in.Type), len(in.ID)} {
		if uint64(max(n, 0)) > f.maxSize { //nolint:gosec // G115: max(n, 0) is not negative
			return fmt.Errorf("evaluating filter: %w: %d bytes, above the %d bytes its cost is bounded for", ErrEventTooLarge, n, f.maxSize)
		}
	}
	return nil
}

func result(out ref.Val, err error) (bool, error) {
	if err != nil {
		return false, fmt.Errorf("evaluating filter: %w", err)
	}
	b, ok := out.(types.Bool)
	if !ok {
		// CompileFilter only accepts bool expressions; this guards against
		// a CEL upgrade changing that.
		return false, fmt.Errorf("evaluating filter: result is %s, not a bool", out.Type())
	}
	return bool(b), nil
}

// activation hands the event to CEL without building a map per evaluation.
type activation struct{ in *FilterInput }

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "type":
		return a.in.Type, true
	case "id":
		return a.in.ID, true
	case "time":
		return types.Timestamp{Time: a.in.Time}, true
	case "data":
		return a.in.Data, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// sizeEstimator bounds every value whose size CEL cannot see: anything read
// from the event is at most as large as the event.
type sizeEstimator struct{ maxSize uint64 }

func (e sizeEstimator) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: e.maxSize}
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}
