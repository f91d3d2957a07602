package engine

import (
	"context"

	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/tracing"
)

// matchTraced matches one event inside its fan-out span, when the event carries a trace:
// the event's traceparent becomes the fan-out span's, so the deliveries stored from it,
// and their attempts, continue the trace under the fan-out.
func (e *Engine) matchTraced(ctx context.Context, ev *queue.Event) queue.Matched {
	if ev.TraceParent == "" || !tracing.Enabled() {
		return e.matchEvent(ctx, *ev)
	}
	tp, end := tracing.Fanout(ev.TraceParent, ev.Namespace, ev.ID, ev.Type)
	ev.TraceParent = tp
	m := e.matchEvent(ctx, *ev)
	end(len(m.Deliveries)+len(m.Rejected), m.Err)
	return m
}

// String names a resolution for traces: delivered, retry, parked or dead.
func (r resolution) String() string {
	switch r {
	case resolveDone:
		return "delivered"
	case resolveRetry:
		return "retry"
	case resolvePark:
		return "parked"
	case resolveDead:
		return "dead"
	}
	return "unknown"
}
