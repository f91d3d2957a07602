package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Ordered lanes follow their endpoint's owner. An endpoint's limits (rate,
// in flight) and breaker are counted by the replica that owns its delivery
// partition (partition.go), so its ordered lanes are pulled by that replica
// only: a lane records its endpoint in its consumer's metadata, and a
// replica runs the lanes whose endpoint hashes to a partition it is assigned
// (members.go). Like a partition's, a lane's consumer has a priority group
// whose pin lets one client pull at a time, so two replicas whose views of
// the assignment differ for a moment never both take from the lane; the
// lane's MaxAckPending of 1 keeps one delivery in flight whoever holds it.
//
// A replica that stops running a lane (its partition went to another
// replica, the subscription was re-pointed, or it shuts down) NAKs what it
// had pulled ahead, lets the delivery in flight finish, and then unpins the
// lane if it still holds it, so the next owner is pinned at its next pull
// rather than after PinnedTTL. The lane's stored holds and attempts
// (HL_LANE_HOLDS) go with it.
//
// Replicas learn of lanes created elsewhere (fan-out runs on one replica)
// and of re-pointed ones by listing the lane consumers every memberBeat.

const (
	// laneGroup is the priority group the lanes are pulled with.
	laneGroup = partitionGroup
	// metaEndpoint is the key of a lane consumer's metadata naming the
	// endpoint of its subscription.
	metaEndpoint = "hookline.io/endpoint"
)

// laneConfig is the configuration of an ordered lane's consumer.
func (q *Queue) laneConfig(name, what, filter, endpoint string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "hookline: " + what,
		FilterSubject:  filter,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        q.cfg.AckWait,
		MaxAckPending:  1,
		MaxDeliver:     -1,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{laneGroup},
		PinnedTTL:      PinnedTTL,
		Metadata:       map[string]string{metaEndpoint: endpoint},
	}
}

// lanePartition is the delivery partition whose owner pulls the lane of
// consumer c: its endpoint's. A lane created before lanes recorded their
// endpoint goes by its subscription's name until fan-out ensures it again.
func lanePartition(c *jetstream.ConsumerInfo) (int, error) {
	ns, sub, _, err := splitOrdered(c.Config.FilterSubject)
	if err != nil {
		return 0, err
	}
	if ep := c.Config.Metadata[metaEndpoint]; ep != "" {
		return partitionOf(ns, ep), nil
	}
	return partitionOf(ns, sub), nil
}

// refresh learns the lanes on the server and the partition of each.
// It never forgets one: a lane whose consumer is gone notices it when it
// runs (Lane.Jobs), and a lane added meanwhile may be missing from the list.
func (ls *lanes) refresh(ctx context.Context, q *Queue) error {
	infos := q.deliveries.ListConsumers(ctx)
	found := map[string]int{}
	for c := range infos.Info() {
		if !strings.HasPrefix(c.Name, orderedPrefix) {
			continue
		}
		p, err := lanePartition(c)
		if err != nil {
			q.log.Error(err, "Ignoring an ordered lane with an unexpected subject", "consumer", c.Name)
			continue
		}
		found[c.Name] = p
	}
	if err := infos.Err(); err != nil {
		return fmt.Errorf("listing ordered lanes: %w", err)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for name, p := range found {
		ls.setLocked(name, p)
	}
	return nil
}

// own makes parts the partitions whose lanes this replica runs: it starts
// the lanes of those and stops the others'.
func (ls *lanes) own(parts []int) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var owned [Partitions]bool
	for _, p := range parts {
		owned[p] = true
	}
	ls.owned = owned
	for name, p := range ls.known {
		ls.setLocked(name, p)
	}
}

// setLocked records lane name as one of partition p and runs or stops it
// as this replica owns p or not.
func (ls *lanes) setLocked(name string, p int) {
	ls.known[name] = p
	l, running := ls.running[name]
	switch {
	case ls.ctx == nil || ls.ctx.Err() != nil:
	case ls.owned[p] && !running:
		ls.runLocked(name)
	case !ls.owned[p] && running:
		// Handed to the new owner: the lane finishes its delivery in
		// flight and unpins itself (Lane.Jobs); nothing waits for that.
		delete(ls.running, name)
		l.cancel()
	}
}

// laneConsumer opens a lane's consumer, adding the priority group to one
// created before lanes had it: pulling with a group from a consumer without
// one is refused.
func (q *Queue) laneConsumer(ctx context.Context, name string) (jetstream.Consumer, error) {
	c, err := q.deliveries.Consumer(ctx, name)
	if err != nil {
		return nil, err
	}
	cfg := c.CachedInfo().Config
	if cfg.PriorityPolicy == jetstream.PriorityPolicyPinned {
		return c, nil
	}
	cfg.PriorityPolicy, cfg.PriorityGroups, cfg.PinnedTTL = jetstream.PriorityPolicyPinned, []string{laneGroup}, PinnedTTL
	c, err = q.deliveries.UpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("adding the priority group to ordered lane %s: %w", name, err)
	}
	return c, nil
}

// unpinIf unpins consumer name's priority group if client id holds its pin.
func (q *Queue) unpinIf(ctx context.Context, name, group, id string) error {
	if id == "" {
		return nil
	}
	c, err := q.deliveries.Consumer(ctx, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	for _, g := range info.PriorityGroups {
		if g.Group != group || g.PinnedClientID != id {
			continue
		}
		if err := q.deliveries.UnpinConsumer(ctx, name, group); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("unpinning %s: %w", name, err)
		}
	}
	return nil
}

// LaneOwners reports, per ordered lane consumer, the pin id of the client
// that pulls it ("" when none is pinned), for tests.
func (q *Queue) LaneOwners(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	infos := q.deliveries.ListConsumers(ctx)
	for c := range infos.Info() {
		if !strings.HasPrefix(c.Name, orderedPrefix) {
			continue
		}
		out[c.Name] = ""
		for _, g := range c.PriorityGroups {
			if g.Group == laneGroup {
				out[c.Name] = g.PinnedClientID
			}
		}
	}
	return out, infos.Err()
}
