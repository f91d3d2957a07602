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

// sid is the subscription object toEndpoint's deliveries belong to.
func sid(ns, name string) SubscriptionID { return SubscriptionID{ns, name, "uid-" + name} }
