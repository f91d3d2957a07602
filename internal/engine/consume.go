package engine

import (
	"context"
	"sync"

	"github.com/hookline/hookline/internal/queue"
)

// fanOut matches the events the queue hands out until ctx ends, on as many
// goroutines as the queue asks for, and hands the fan-out over when done.
func (e *Engine) fanOut(ctx context.Context, f *queue.Fanout) {
	var wg sync.WaitGroup
	for range f.Workers() {
		wg.Go(func() {
			for b := range f.Batches() {
				if waited := b.AwaitMemory(); waited > 0 {
					e.m.fanoutPaused.Add(waited.Seconds())
				}
				evs := b.Events()
				ms := make([]queue.Matched, len(evs))
				for i := range evs {
					ms[i] = e.matchTraced(ctx, &evs[i])
				}
				b.Store(ms)
				e.parkedAtFanout(evs, ms)
			}
		})
	}
	wg.Wait()
	f.Close()
}

// deliver takes deliveries until ctx ends: unordered ones on the engine's
// workers, each ordered lane's on a goroutine of its own. It returns once
// every worker and lane has stopped.
func (e *Engine) deliver(ctx context.Context, src *queue.Deliveries) {
	var wg sync.WaitGroup
	for range e.opts.Workers {
		wg.Go(func() {
			for job := range src.Jobs() {
				e.take(ctx, job)
			}
		})
	}
	for {
		select {
		case lane := <-src.Lanes():
			wg.Go(func() {
				defer e.m.blockedKeys.running(lane)()
				for job := range lane.Jobs() {
					e.take(ctx, job)
				}
			})
			continue
		case <-ctx.Done():
		}
		break
	}
	wg.Wait()
}

// take handles one delivery and reports a job left unresolved, which would
// sit until its lease runs out.
func (e *Engine) take(ctx context.Context, job *queue.Job) {
	e.handle(ctx, job)
	if ctx.Err() == nil && job.Unresolved() {
		d := job.Delivery()
		e.log.Error(nil, "A delivery handler returned without resolving its job; it will be redelivered after AckWait",
			"namespace", d.Event.Namespace, "subscription", d.Subscription, "event", d.Event.ID)
	}
}
