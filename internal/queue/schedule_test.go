package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMessageScheduleMechanics pins down what nats-server does with a
// message schedule, the behaviour RetryAt and Hold rely on.
func TestMessageScheduleMechanics(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	target := deliverySubject("ns", "probe")

	// A subject of another stream cannot be a target.
	_, err := q.js.Publish(ctx, subjSchedules+".ns.probe.x", []byte("x"),
		jetstream.WithScheduleAt(time.Now().Add(time.Hour)), jetstream.WithScheduleTarget(subjDead+".ns.sub"))
	if !errors.Is(err, jetstream.ErrScheduleTargetInvalid) {
		t.Fatalf("target outside the stream: got %v, want ErrScheduleTargetInvalid", err)
	}

	// The fired copy is stored by the server, not published on core NATS,
	// so it is observed through a consumer.
	cons, err := q.deliveries.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject: target, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	// One schedule per subject: the second publish replaces the first (the
	// server marks schedules as subject roll-ups), so only "second" fires.
	sched := subjSchedules + ".ns.probe.1"
	at := ceilSecond(time.Now().Add(1500 * time.Millisecond))
	for _, body := range []string{"first", "second"} {
		m := &nats.Msg{Subject: sched, Data: []byte(body), Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, "id-"+body)
		// The raw headers, as the client's WithScheduleAt/WithScheduleTarget set them.
		m.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339))
		m.Header.Set("Nats-Schedule-Target", target)
		if _, err := q.js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publishing schedule: %v", err)
		}
	}
	if n := streamMsgs(t, q, streamDeliveries); n != 1 {
		t.Fatalf("stream holds %d schedule messages, want 1 after the roll-up", n)
	}

	fired, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatalf("schedule did not fire: %v", err)
	}
	firedAt := time.Now()
	if firedAt.Before(at) {
		t.Errorf("fired %v before its time", at.Sub(firedAt))
	}
	if string(fired.Data()) != "second" {
		t.Errorf("fired %q, want the replacing schedule", fired.Data())
	}
	// What the fired copy carries: who scheduled it and that the schedule is
	// done; the message id is dropped, so de-duplication applies to the
	// schedule message only.
	if got := fired.Headers().Get("Nats-Scheduler"); got != sched {
		t.Errorf("Nats-Scheduler = %q, want %q", got, sched)
	}
	if got := fired.Headers().Get("Nats-Schedule-Next"); got != "purge" {
		t.Errorf("Nats-Schedule-Next = %q, want purge", got)
	}
	for _, h := range []string{jetstream.MsgIDHeader, "Nats-Schedule", "Nats-Schedule-Target"} {
		if v := fired.Headers().Get(h); v != "" {
			t.Errorf("fired message still has %s: %q", h, v)
		}
	}
	// The schedule message is removed once fired; the fired copy stays on the
	// target until consumed.
	eventually(t, "the schedule message to be purged", func() bool {
		info, err := q.deliveries.Info(ctx, jetstream.WithSubjectFilter(subjSchedules+".>"))
		return err == nil && len(info.State.Subjects) == 0
	})
	if n := streamMsgs(t, q, streamDeliveries); n != 1 {
		t.Errorf("stream holds %d messages, want only the fired copy", n)
	}
	md, err := fired.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if md.Timestamp.Before(at) {
		t.Errorf("fired copy stored at %v, before %v", md.Timestamp, at)
	}
}
