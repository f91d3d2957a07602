package queue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// The deliveries stream's de-duplication window holds every id it recognises
// in the server's memory, so it is as short as the republishes it must catch
// allow: a repeated fan-out (the event's lease, its NAK's delay, the publish
// timeout) and a retry published again after its delivery's lease ran out
// (within 2×AckWait). Never longer than the events' window.
func TestDeliveryDedupeWindow(t *testing.T) {
	fanoutRepeat := fanoutAckWait + maxNakBackoff + publishTimeout
	for _, c := range []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		// The dispatcher's defaults: --max-request-timeout 1m, so AckWait 2m.
		{"dispatcher defaults", Config{MaxRequestTimeout: time.Minute}, 4 * time.Minute},
		{"a short lease: the fan-out's repeat bounds it", Config{AckWait: 10 * time.Second, MaxRequestTimeout: 5 * time.Second}, 2 * time.Minute},
		{"a long lease", Config{MaxRequestTimeout: 3 * time.Minute}, 10 * time.Minute},
		{"capped by the events' window", Config{MaxRequestTimeout: 5 * time.Minute, DedupeWindow: 7 * time.Minute}, 7 * time.Minute},
	} {
		q := &Queue{cfg: c.cfg.withDefaults()}
		got := q.deliveryDedupeWindow()
		if got != c.want {
			t.Errorf("%s: window %s, want %s", c.name, got, c.want)
		}
		if got < q.cfg.DedupeWindow && (got < fanoutRepeat || got < q.cfg.AckWait+q.cfg.MaxRequestTimeout) {
			t.Errorf("%s: window %s does not cover a repeated fan-out (%s) or a retry after a lease (%s)",
				c.name, got, fanoutRepeat, q.cfg.AckWait+q.cfg.MaxRequestTimeout)
		}
	}
}

// The retained copies' ids only have to catch a repeated fan-out, as the
// deliveries' do: their window is the deliveries', within the retention, not
// the events' (the producers' promise, 10 minutes by default).
func TestRetainedDedupeWindow(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"dispatcher defaults", Config{MaxRequestTimeout: time.Minute, Retention: DefaultRetention}, 4 * time.Minute},
		{"a retention shorter than that", Config{MaxRequestTimeout: time.Minute, Retention: time.Minute}, time.Minute},
	} {
		q := &Queue{cfg: c.cfg.withDefaults()}
		if got := q.retainedStreamConfig().Duplicates; got != c.want || got >= q.cfg.DedupeWindow {
			t.Errorf("%s: window %s, want %s (events' %s)", c.name, got, c.want, q.cfg.DedupeWindow)
		}
	}
}

// A retry is stored, then the delivery's acknowledgement is lost: the
// delivery comes back after its lease, fails again and publishes the same
// retry. The retry's id makes the second publish a no-op, so attempt 2 is
// stored once, though the first copy was already handed out and acknowledged
// (its id outlives the message in the window).
func TestRetryRepublishedAfterLeaseIsStoredOnce(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	publish(t, q, testEvent("team-a", "e1"))
	run(t, func(ctx context.Context) error { return runFanout(ctx, q, toEndpoint("billing", "erp")) })

	var firsts, seconds atomic.Int64
	retried := make(chan struct{})
	run(t, func(ctx context.Context) error {
		return runDeliveries(ctx, q, 4, func(ctx context.Context, j *Job) {
			d := j.Delivery()
			switch {
			case d.Attempt == 1 && firsts.Add(1) == 1:
				// Store the retry as RetryAt does, and lose the ack: the
				// job is left for its lease (AckWait) to run out.
				next := d
				next.Attempt++
				if err := q.publishAt(ctx, &next, time.Now()); err != nil {
					t.Errorf("publishing the retry: %v", err)
				}
				j.Detach()
			case d.Attempt == 1:
				// Redelivered after the lease: wait until the first copy of
				// attempt 2 is handled and gone, then publish it again.
				<-retried
				if err := j.RetryAt(time.Now()); err != nil {
					t.Errorf("RetryAt: %v", err)
				}
			default:
				if seconds.Add(1) == 1 {
					defer close(retried)
				}
				if err := j.Done(); err != nil {
					t.Errorf("Done: %v", err)
				}
			}
		})
	})
	eventually(t, "the redelivered attempt to be resolved", func() bool { return firsts.Load() == 2 && seconds.Load() >= 1 })
	eventually(t, "the stream to empty", func() bool { return streamMsgs(t, q, streamDeliveries) == 0 })
	// Every message the stream ever stored: the fan-out's delivery and one
	// retry. A second retry would be a third.
	info, err := q.deliveries.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 2 {
		t.Errorf("the deliveries stream stored %d messages, want 2 (the delivery and its retry, once)", info.State.LastSeq)
	}
	if n := seconds.Load(); n != 1 {
		t.Errorf("attempt 2 handed out %d times, want once", n)
	}
}
