package queue

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// waitGroupsOn opens the deliveries (which announce this replica as a reader
// of groups) until the fan-out may store groups, and returns their jobs'
// source.
func waitGroupsOn(t *testing.T, ctx context.Context, q *Queue) *Deliveries {
	t.Helper()
	src, err := q.OpenDeliveries(ctx, 256)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "groups readable by every replica", q.groupsOn.Load)
	return src
}

// Events fetched together that go to one subscription are stored as one
// message; each member is handed out as a job of its own, and the message is
// removed only once every member is resolved, whether delivered, retried or
// dead.
func TestGroupedDeliveries(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := waitGroupsOn(t, ctx, q)

	const events = 10
	for i := range events {
		publish(t, q, testEvent("team-a", fmt.Sprintf("e%d", i)))
	}
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })
	eventually(t, "the events fanned out", func() bool { return streamMsgs(t, q, streamEvents) == 0 })

	msgs := storedDeliveries(t, q)
	grouped := 0
	for _, m := range msgs {
		if _, n, ok := splitGroupSubject(m.Subject); ok {
			grouped += n
		}
	}
	if grouped < 2 {
		t.Fatalf("%d messages stored for %d deliveries, %d of them in groups: the fan-out did not group", len(msgs), events, grouped)
	}
	b, err := q.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := b.Endpoints[EndpointKey{"team-a", "erp"}]; n != events {
		t.Errorf("backlog %d, want %d: a group counts its members", n, events)
	}

	// Take every job; resolve all but one, one of them with a retry and one
	// as dead.
	var jobs []*Job
	next, stop := iter.Pull(src.Jobs())
	defer stop()
	for len(jobs) < events {
		j, ok := next()
		if !ok {
			t.Fatal("jobs ended early")
		}
		jobs = append(jobs, j)
	}
	ids := map[string]bool{}
	for i, j := range jobs[:events-1] {
		ids[j.Delivery().Event.ID] = true
		var err error
		switch i {
		case 0:
			err = j.RetryAt(time.Now().Add(time.Hour))
		case 1:
			err = j.Dead(DeadInfo{StatusCode: 500, Reason: "test"})
		default:
			err = j.Done()
		}
		if err != nil {
			t.Fatalf("resolving job %d: %v", i, err)
		}
	}
	last := jobs[events-1]
	ids[last.Delivery().Event.ID] = true
	if len(ids) != events {
		t.Fatalf("jobs for %d distinct events, want %d", len(ids), events)
	}
	// The group whose last member is open is still stored.
	open := 0
	for _, m := range storedDeliveries(t, q) {
		if strings.HasPrefix(m.Subject, subjDeliver+".") {
			open++
		}
	}
	if open == 0 {
		t.Fatal("every delivery message was removed while one job was open")
	}
	if err := last.Done(); err != nil {
		t.Fatal(err)
	}
	if err := last.Done(); err != ErrResolved {
		t.Errorf("a second Done: %v, want ErrResolved", err)
	}
	eventually(t, "every group removed", func() bool {
		for _, m := range storedDeliveries(t, q) {
			if strings.HasPrefix(m.Subject, subjDeliver+".") {
				return false
			}
		}
		return true
	})
	// The retry is scheduled on its own, the dead one stored as a dead letter.
	scheduled := 0
	for _, m := range storedDeliveries(t, q) {
		if strings.HasPrefix(m.Subject, subjSchedules+".") {
			scheduled++
		}
	}
	if scheduled != 1 {
		t.Errorf("%d retries scheduled, want 1", scheduled)
	}
	if n := streamMsgs(t, q, streamDead); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
}

// A group whose members are not all resolved comes back whole after its
// lease, every member included: at least once.
func TestGroupComesBackWholeAfterItsLease(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := waitGroupsOn(t, ctx, q)
	for i := range 4 {
		publish(t, q, testEvent("team-a", fmt.Sprintf("e%d", i)))
	}
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })
	eventually(t, "the events fanned out", func() bool { return streamMsgs(t, q, streamEvents) == 0 })

	next, stop := iter.Pull(src.Jobs())
	defer stop()
	seen := map[string]int{}
	for len(seen) < 4 {
		j, ok := next()
		if !ok {
			t.Fatal("jobs ended early")
		}
		id := j.Delivery().Event.ID
		seen[id]++
		if id != "e3" {
			if err := j.Done(); err != nil {
				t.Fatal(err)
			}
		}
		// e3 is left open: its lease (AckWait, a second) runs out.
	}
	again := map[string]int{}
	for len(again) < 4 {
		j, ok := next()
		if !ok {
			t.Fatal("jobs ended early")
		}
		again[j.Delivery().Event.ID]++
		if err := j.Done(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the group removed", func() bool { return streamMsgs(t, q, streamDeliveries) == 0 })
}

// Groups are stored only while every live replica reads them: with a member
// of an older release (its id has no groupReader prefix) each delivery is
// stored alone again.
func TestNoGroupsWithAnOlderReplica(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waitGroupsOn(t, ctx, q)
	stopBeat := beatAsOlderReplica(t, ctx, q)
	eventually(t, "groups off with an older replica alive", func() bool { return !q.groupsOn.Load() })

	for i := range 10 {
		publish(t, q, testEvent("team-a", fmt.Sprintf("e%d", i)))
	}
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })
	eventually(t, "the events fanned out", func() bool { return streamMsgs(t, q, streamEvents) == 0 })
	for _, m := range storedDeliveries(t, q) {
		if _, _, ok := splitGroupSubject(m.Subject); ok {
			t.Fatalf("a group stored on %s while an older replica was alive", m.Subject)
		}
	}
	stopBeat()
	eventually(t, "groups on again once it is gone", q.groupsOn.Load)
}

// beatAsOlderReplica announces a replica of a release before groups until the
// returned func is called, which also removes it from the live ones.
func beatAsOlderReplica(t *testing.T, ctx context.Context, q *Queue) (stop func()) {
	t.Helper()
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	subject := subjMembers + ".OLDREPLICA0000000000000"
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_, _ = q.js.Publish(ctx, subject, nil)
			select {
			case <-ctx.Done():
			case <-time.After(memberBeat / 2):
			}
		}
	}()
	return func() {
		cancel()
		<-done
		s, err := q.js.Stream(parent, streamMembers)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Purge(parent, jetstream.WithPurgeSubject(subject)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGroupCodec(t *testing.T) {
	t.Parallel()
	var ds []*Delivery
	for i := range 3 {
		ds = append(ds, &Delivery{Event: testEvent("team-a", fmt.Sprintf("e%d", i)), Subscription: "billing",
			SubscriptionUID: "u1", Endpoint: "erp", Attempt: 1, KeyHash: uint64(i)})
	}
	subject := groupSubject("team-a", "erp", len(ds))
	got, err := DecodeDeliveries(subject, encodeGroup(ds))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ds) {
		t.Fatalf("%d decoded, want %d", len(got), len(ds))
	}
	for i := range got {
		if got[i].Event.ID != ds[i].Event.ID || got[i].KeyHash != ds[i].KeyHash || got[i].Subscription != "billing" {
			t.Errorf("member %d: %+v", i, got[i])
		}
	}
	if single, n, ok := splitGroupSubject(subject); !ok || n != 3 || single != deliverySubject("team-a", "erp") {
		t.Errorf("splitGroupSubject(%q) = %q, %d, %v", subject, single, n, ok)
	}
	if _, _, ok := splitGroupSubject(deliverySubject("team-a", "erp")); ok {
		t.Error("a single delivery's subject taken for a group's")
	}
	if p := partitionOfSubject(subject); p != partitionOf("team-a", "erp") {
		t.Errorf("partition of a group %d, want %d", p, partitionOf("team-a", "erp"))
	}
	if ns, ep, err := splitDeliverySubject(subject); err != nil || ns != "team-a" || ep != "erp" {
		t.Errorf("splitDeliverySubject(group) = %q, %q, %v", ns, ep, err)
	}
	for _, bad := range [][]byte{nil, {codecGroup}, {codecGroup, 2, 1}, {codecV2, 1}} {
		if _, err := decodeGroup(bad); err == nil {
			t.Errorf("decodeGroup(%v) did not fail", bad)
		}
	}
}

// A group holds at most maxGroup deliveries and maxGroupBytes; a delivery
// larger than that goes alone.
func TestGrouperBounds(t *testing.T) {
	t.Parallel()
	delivery := func(i, size int) *Delivery {
		ev := testEvent("team-a", fmt.Sprintf("e%d", i))
		ev.Data = make([]byte, size)
		return &Delivery{Event: ev, Subscription: "billing", SubscriptionUID: "u1", Endpoint: "erp", Attempt: 1}
	}
	sizes := func(g *grouper) []int {
		var out []int
		for _, p := range g.order {
			out = append(out, len(p.ds))
		}
		return out
	}
	var many grouper
	for i := range 2*maxGroup + 1 {
		many.add(i, delivery(i, 10))
	}
	if got := sizes(&many); !slices.Equal(got, []int{maxGroup, maxGroup, 1}) {
		t.Errorf("groups of %v, want %d, %d, 1", got, maxGroup, maxGroup)
	}
	var large grouper
	large.add(0, delivery(0, maxGroupBytes/3))
	large.add(1, delivery(1, maxGroupBytes/3))
	large.add(2, delivery(2, maxGroupBytes/3))
	large.add(3, delivery(3, 2*maxGroupBytes))
	large.add(4, delivery(4, 10))
	if got := sizes(&large); !slices.Equal(got, []int{2, 1, 1, 1}) {
		t.Errorf("groups of %v, want 2, 1, 1, 1", got)
	}
	// Another subscription's deliveries go in a group of their own.
	var two grouper
	for i := range 4 {
		d := delivery(i, 10)
		if i%2 == 1 {
			d.SubscriptionUID = "u2"
		}
		two.add(i, d)
	}
	if got := sizes(&two); !slices.Equal(got, []int{2, 2}) {
		t.Errorf("groups of %v, want 2, 2", got)
	}
	if ev := two.order[0].events; !slices.Equal(ev, []int{0, 2}) {
		t.Errorf("first group's items %v, want 0, 2", ev)
	}
}
