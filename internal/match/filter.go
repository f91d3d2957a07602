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
	// default. No string, list or map in data can be larger, which is what
	// makes a filter's estimated worst-case cost finite.
	MaxEventSize = 256 << 10

	// MaxEstimatedCost rejects filters at compile time. With data bounded by
	// MaxEventSize, a filter that passes over data a few times is estimated
	// at a few million (a single exists() at about 1.6 million), while one
	// that nests a pass inside another is estimated in the billions; the
	// limit sits between the two.
	MaxEstimatedCost = 10_000_000

	// RuntimeCostLimit stops a single evaluation. A unit is roughly one
	// simple operation: a filter without loops costs tens, one exists() over
	// a thousand items a few thousand.
	//
	// It is far below what the estimate allows because cel-go v0.31.0's cost
	// tracker grows a stack by every loop iteration and scans it on every
	// step, so tracking is quadratic in the iterations: measured on the
	// 2-core machine, a limit of 10,000 is reached in about 20 ms, 100,000
	// in 1-4 s, and 1,000,000 in minutes. A higher limit would turn one
	// large event into a denial of service on the dispatcher.
	RuntimeCostLimit = 10_000

	// MaxFilterLength bounds the expression itself, in code points.
	MaxFilterLength = 4096

	// interruptCheckFrequency is how many comprehension iterations run
	// between checks of the evaluation context.
	interruptCheckFrequency = 100
)

// limits are the cost bounds a Filter is compiled with; tests shrink them.
type limits struct {
	runtime   uint64
	estimated uint64
	eventSize uint64
}

var defaultLimits = limits{runtime: RuntimeCostLimit, estimated: MaxEstimatedCost, eventSize: MaxEventSize}

// FilterInput is the event a filter is evaluated against.
type FilterInput struct {
	Type string
	ID   string
	Time time.Time
	// Data is the event's data as encoding/json decodes it into an any:
	// map[string]any, []any, string, float64, bool or nil.
	Data any
}

// Filter is a compiled CEL filter. It is safe for concurrent use.
type Filter struct {
	expr    string
	program cel.Program
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
	env, err := filterEnv()
	if err != nil {
		return nil, fmt.Errorf("building filter environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%w: %w", ErrFilterCompile, iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("%w: the expression must evaluate to a bool, but it evaluates to %s; "+
			"compare it explicitly, e.g. data.flag == true", ErrFilterCompile, ast.OutputType())
	}
	est, err := env.EstimateCost(ast, sizeEstimator{maxSize: lim.eventSize})
	if err != nil {
		return nil, fmt.Errorf("%w: estimating its cost: %w", ErrFilterCompile, err)
	}
	if est.Max > lim.estimated {
		return nil, fmt.Errorf("%w: its worst-case cost over an event of up to %d bytes is estimated at %d, above the limit of %d; "+
			"avoid nesting loops over data (all, exists, map, filter)", ErrFilterCompile, lim.eventSize, est.Max, lim.estimated)
	}
	prg, err := env.Program(ast,
		cel.CostLimit(lim.runtime),
		cel.InterruptCheckFrequency(interruptCheckFrequency),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFilterCompile, err)
	}
	return &Filter{expr: expr, program: prg}, nil
}

// String returns the expression the filter was compiled from.
func (f *Filter) String() string { return f.expr }

// Eval reports whether the event passes the filter. An evaluation error
// (a missing field, a type mismatch, the cost limit) is returned with false,
// so the event is not delivered and the caller can count the failure.
func (f *Filter) Eval(in FilterInput) (bool, error) {
	out, _, err := f.program.Eval(&activation{in: &in})
	return result(out, err)
}

// EvalContext is Eval that also stops, within interruptCheckFrequency loop
// iterations, when ctx is done. It costs an extra context per call, so Eval
// is the one to use when there is no deadline to honour.
func (f *Filter) EvalContext(ctx context.Context, in FilterInput) (bool, error) {
	out, _, err := f.program.ContextEval(ctx, &activation{in: &in})
	return result(out, err)
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
