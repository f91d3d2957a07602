package dispatcher

import (
	"context"
	"fmt"
	"time"

	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/queue"
)

// recoverer hands recoveries to the engine, which is built after the API.
type recoverer struct{ d *dispatcher }

func (r recoverer) Recover(ctx context.Context, sub queue.SubscriptionID, id string, since time.Time) (queue.Recovery, error) {
	eng := r.d.eng.Load()
	if eng == nil {
		return queue.Recovery{}, fmt.Errorf("recovering %s: %w", sub, engine.ErrNotRunning)
	}
	return eng.Recover(ctx, sub, id, since)
}
