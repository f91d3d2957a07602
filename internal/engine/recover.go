package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hookline/hookline/internal/match"
	"github.com/hookline/hookline/internal/queue"
)

// Recovery sends a subscription's retained events since a time through the
// normal delivery path again (those delivered before included), under the
// same webhook-id as the first delivery: the way to backfill a new
// subscription or to help a receiver that lost data. The deliveries are
// stored on the subscription's lane as attempt 1 and go out at the
// endpoint's rate limit and concurrency, with its retries; the recovery
// itself only reads and stores, a chunk at a time, saving its progress
// after each so the same request resumes instead of starting over.

// recoveryChunk is the most retained events read before progress is saved.
const recoveryChunk = 256

// recoveryStale is how long a running recovery may go without saving
// progress before a request with its id takes it over: its process is
// presumed gone.
const recoveryStale = time.Minute

// Errors of Recover.
var (
	ErrNoSubscription = errors.New("no such subscription")
	ErrNotRunning     = errors.New("the engine is not running")
	ErrUnusable       = errors.New("the subscription cannot deliver")
)

// RecoveryProgress is a recovery as the subscription's status shows it.
type RecoveryProgress struct {
	ID         string    `json:"id"`
	Phase      string    `json:"phase"`
	Since      time.Time `json:"since,omitzero"`
	Scanned    uint64    `json:"scanned"`
	Queued     uint64    `json:"queued"`
	Message    string    `json:"message,omitempty"`
	UpdatedAt  time.Time `json:"updatedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// Recover starts (or finds) the recovery with request id of the
// subscription object sub and returns its progress as it is now. A request
// with an id seen before returns that recovery, and resumes it if it failed
// or was interrupted (its process stopped) rather than starting a second
// one.
func (e *Engine) Recover(ctx context.Context, sub queue.SubscriptionID, id string, since time.Time) (queue.Recovery, error) {
	s := e.routes.Subscription(sub.Namespace, sub.Name)
	if s == nil || string(s.UID) != sub.UID {
		return queue.Recovery{}, fmt.Errorf("recovering %s: %w", sub, ErrNoSubscription)
	}
	r, found, err := e.q.LoadRecovery(ctx, sub, id)
	if err != nil {
		return queue.Recovery{}, err
	}
	now := e.clock.Now()
	switch {
	case found && (r.Phase == queue.RecoveryComplete || r.Phase == queue.RecoveryRunning && now.Sub(r.UpdatedAt) < recoveryStale):
		return r, nil
	case !found:
		if !s.Usable {
			return queue.Recovery{}, fmt.Errorf("recovering %s: %w: %s", sub, ErrUnusable, s.Message)
		}
		upTo, err := e.q.LastRetained(ctx)
		if err != nil {
			return queue.Recovery{}, err
		}
		r = queue.Recovery{ID: id, Subscription: sub, Since: since, UpTo: upTo, Phase: queue.RecoveryRunning, StartedAt: now}
	}
	r.Phase, r.Message, r.UpdatedAt = queue.RecoveryRunning, "", now
	if err := e.q.SaveRecovery(ctx, &r); err != nil {
		if errors.Is(err, queue.ErrRecoveryTaken) {
			// Another request or replica got there first; show its record.
			if cur, ok, lerr := e.q.LoadRecovery(ctx, sub, id); lerr == nil && ok {
				return cur, nil
			}
		}
		return queue.Recovery{}, err
	}
	run := r
	if !e.goParking(func(ctx context.Context) { e.runRecovery(ctx, &run) }) {
		// Saved as running, it would look taken for recoveryStale: mark it
		// failed so the same request starts it at once on a running engine.
		r.Phase, r.Message = queue.RecoveryFailed, "the dispatcher stopped before the recovery started"
		_ = e.q.SaveRecovery(ctx, &r)
		return queue.Recovery{}, fmt.Errorf("recovering %s: %w", sub, ErrNotRunning)
	}
	e.showRecovery(&r)
	return r, nil
}

// runRecovery stores the recovery's deliveries a chunk at a time until it
// is done, fails, or the engine stops (then it stays Running and a request
// with its id resumes it).
func (e *Engine) runRecovery(ctx context.Context, r *queue.Recovery) {
	log := e.log.WithValues("namespace", r.Subscription.Namespace, "subscription", r.Subscription.Name, "recovery", r.ID)
	log.Info("Recovering retained events", "since", r.Since, "upTo", r.UpTo)
	for ctx.Err() == nil {
		done, err := e.recoverChunk(ctx, r)
		now := e.clock.Now()
		r.UpdatedAt = now
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case errors.Is(err, queue.ErrRecoveryTaken):
			log.Info("Another process took the recovery over")
			return
		case err != nil:
			r.Phase, r.Message, r.FinishedAt = queue.RecoveryFailed, err.Error(), now
		case done:
			r.Phase, r.FinishedAt = queue.RecoveryComplete, now
		}
		if serr := e.q.SaveRecovery(ctx, r); serr != nil {
			if ctx.Err() == nil {
				log.Error(serr, "Saving a recovery's progress failed; it stops, and the same request resumes it")
			}
			return
		}
		e.showRecovery(r)
		if r.Phase != queue.RecoveryRunning {
			log.Info("Recovery ended", "phase", r.Phase, "scanned", r.Scanned, "queued", r.Queued, "message", r.Message)
			return
		}
	}
}

// recoverChunk reads up to recoveryChunk retained events after the cursor,
// matches them to the subscription as it is now, and stores the deliveries.
func (e *Engine) recoverChunk(ctx context.Context, r *queue.Recovery) (done bool, err error) {
	sub := r.Subscription
	s := e.routes.Subscription(sub.Namespace, sub.Name)
	if s == nil || string(s.UID) != sub.UID {
		return false, fmt.Errorf("the subscription was deleted during the recovery")
	}
	var (
		evs  []queue.RetainedEvent
		from uint64
	)
	if r.Cursor != 0 {
		from = r.Cursor + 1
	}
	if r.Cursor >= r.UpTo {
		return true, nil
	}
	err = e.q.ScanEvents(ctx, sub.Namespace, from, r.Since, r.UpTo, func(ev queue.RetainedEvent) (bool, error) {
		evs = append(evs, ev)
		return len(evs) < recoveryChunk, nil
	})
	if err != nil {
		return false, err
	}
	var ds []queue.Delivery
	for _, ev := range evs {
		if !s.Matcher.Match(ev.Event.Type) {
			continue
		}
		in, decodeErr := (*match.FilterInput)(nil), error(nil)
		if s.Filter != nil || s.OrderKey != nil {
			in, decodeErr = filterInput(&ev.Event)
		}
		if s.Filter != nil {
			err := decodeErr
			ok := false
			if err == nil {
				ok, err = s.Filter.EvalContext(ctx, *in)
			}
			if err != nil || !ok {
				// A filter that fails on the event made it a dead letter at
				// fan-out; replaying dead letters covers those.
				continue
			}
		}
		d := queue.Delivery{Event: ev.Event, Subscription: s.Name, SubscriptionUID: string(s.UID),
			Endpoint: s.Endpoint, Ordered: s.Ordered}
		if s.OrderKey != nil {
			d.Lane, d.KeyHash = e.keyLane(ctx, s, &ev.Event, in, decodeErr)
		}
		ds = append(ds, d)
	}
	if len(ds) > 0 {
		if err := e.ensureLane(ctx, s); err != nil {
			return false, err
		}
		if err := e.q.StoreRecovered(ctx, r, ds); err != nil {
			return false, err
		}
	}
	r.Scanned += uint64(len(evs))
	r.Queued += uint64(len(ds))
	if len(evs) < recoveryChunk {
		r.Cursor = r.UpTo
		return true, nil
	}
	r.Cursor = evs[len(evs)-1].Seq
	return r.Cursor >= r.UpTo, nil
}

// showRecovery puts the recovery's progress in the subscription's figures,
// for its status.
func (e *Engine) showRecovery(r *queue.Recovery) {
	sub := r.Subscription
	p := &RecoveryProgress{ID: r.ID, Phase: r.Phase, Since: r.Since, Scanned: r.Scanned, Queued: r.Queued,
		Message: r.Message, UpdatedAt: r.UpdatedAt, FinishedAt: r.FinishedAt}
	e.subscriptionState(sub.Namespace, sub.Name, sub.UID).update(sub.UID, func(c *Counts) { c.Recovery = p })
}
