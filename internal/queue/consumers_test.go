package queue

import (
	"context"
	"sync"
)

// The tests drive the queue the way the engine does: they range over the
// fan-out's batches and the deliveries' jobs. These helpers keep each test's
// matching and handling a plain function.

// MatchFunc returns the deliveries of one event.
type MatchFunc func(ctx context.Context, ev Event) ([]Delivery, error)

// Handler attempts one delivery and resolves its Job.
type Handler func(ctx context.Context, job *Job)

// runFanout fans events out with match until ctx ends, as the engine does
// (waiting for memory before each batch).
func runFanout(ctx context.Context, q *Queue, match MatchFunc) error {
	f, err := q.OpenFanout(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range f.Workers() {
		wg.Go(func() {
			for b := range f.Batches() {
				b.AwaitMemory()
				evs := b.Events()
				ms := make([]Matched, len(evs))
				for i, ev := range evs {
					ms[i].Deliveries, ms[i].Err = match(ctx, ev)
				}
				b.Store(ms)
			}
		})
	}
	wg.Wait()
	f.Close()
	return nil
}

// runDeliveries hands deliveries to handler on concurrency goroutines, and
// each ordered lane's on its own, until ctx ends.
func runDeliveries(ctx context.Context, q *Queue, concurrency int, handler Handler) error {
	return runDeliveriesWatched(ctx, q, concurrency, handler, nil)
}

// runDeliveriesWatched is runDeliveries that adds each ordered lane to w
// while it runs, as the engine does for its metrics.
func runDeliveriesWatched(ctx context.Context, q *Queue, concurrency int, handler Handler, w *laneWatch) error {
	src, err := q.OpenDeliveries(ctx, min(max(4*concurrency, 256), 1024))
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for j := range src.Jobs() {
				handler(ctx, j)
			}
		})
	}
	for {
		select {
		case l := <-src.Lanes():
			wg.Go(func() {
				if w != nil {
					w.add(l)
					defer w.remove(l)
				}
				for j := range l.Jobs() {
					handler(ctx, j)
				}
			})
			continue
		case <-ctx.Done():
		}
		break
	}
	wg.Wait()
	return nil
}

// laneWatch holds the ordered lanes a runDeliveriesWatched runs.
type laneWatch struct {
	mu    sync.Mutex
	lanes map[*Lane]bool
}

func (w *laneWatch) add(l *Lane) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lanes == nil {
		w.lanes = map[*Lane]bool{}
	}
	w.lanes[l] = true
}

func (w *laneWatch) remove(l *Lane) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.lanes, l)
}

// blockedKeys sums the blocked keys that sub's running lanes report, and
// says how many lanes report.
func (w *laneWatch) blockedKeys(sub SubscriptionKey) (n, lanes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for l := range w.lanes {
		if s, c, ok := l.BlockedKeys(); ok && s == sub {
			n += c
			lanes++
		}
	}
	return n, lanes
}

// sid is the subscription object toEndpoint's deliveries belong to.
func sid(ns, name string) SubscriptionID { return SubscriptionID{ns, name, "uid-" + name} }
