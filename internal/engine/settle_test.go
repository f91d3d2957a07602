package engine

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	half := func() float64 { return 0.5 } // no jitter
	fixed := delivery.Policy{Schedule: []time.Duration{0, 10 * time.Second}, MaxAttempts: 3}
	drop4xx := fixed
	drop4xx.ClientErrors = delivery.DropClientErrors
	tests := []struct {
		name    string
		res     delivery.Result
		attempt int
		policy  delivery.Policy
		want    outcome
	}{{
		name: "delivered", attempt: 1, policy: fixed,
		res:  delivery.Result{StatusCode: 204, Verdict: delivery.Delivered},
		want: outcome{resolution: resolveDone, delivered: true, health: healthSuccess},
	}, {
		name: "a 503 with attempts left is retried", attempt: 2, policy: fixed,
		res: delivery.Result{StatusCode: 503, Verdict: delivery.Retry},
		want: outcome{resolution: resolveRetry, retryAt: now.Add(10 * time.Second), health: healthFailure,
			what: "HTTP 503 Service Unavailable", attemptError: "HTTP 503 Service Unavailable; retry 2 scheduled in 10s"},
	}, {
		name: "the last attempt's 500 is dead", attempt: 3, policy: fixed,
		res: delivery.Result{StatusCode: 500, Verdict: delivery.Retry},
		want: outcome{resolution: resolveDead, health: healthFailure, what: "HTTP 500 Internal Server Error",
			dead:         &queue.DeadInfo{StatusCode: 500, Reason: "HTTP 500 Internal Server Error; gave up after 3 attempts", Time: now},
			attemptError: "HTTP 500 Internal Server Error; dead: gave up after 3 attempts"},
	}, {
		name: "a dropped client error is dead at once and counts against the breaker", attempt: 1, policy: drop4xx,
		res: delivery.Result{StatusCode: 400, Verdict: delivery.Retry},
		want: outcome{resolution: resolveDead, health: healthFailure, what: "HTTP 400 Bad Request",
			dead:         &queue.DeadInfo{StatusCode: 400, Reason: "HTTP 400 Bad Request; HTTP 400 is not retried: the subscription drops client errors", Time: now},
			attemptError: "HTTP 400 Bad Request; dead: HTTP 400 is not retried: the subscription drops client errors"},
	}, {
		name: "abort is dead and neutral", attempt: 1, policy: fixed,
		res: delivery.Result{StatusCode: 422, Verdict: delivery.Abort},
		want: outcome{resolution: resolveDead, health: healthNeutral, what: "HTTP 422 Unprocessable Entity",
			dead: &queue.DeadInfo{StatusCode: 422, Time: now,
				Reason: "HTTP 422 Unprocessable Entity; the receiver asked not to retry this message (webhook-delivery: abort-message)"},
			attemptError: "HTTP 422 Unprocessable Entity; dead: the receiver asked not to retry this message (webhook-delivery: abort-message)"},
	}, {
		name: "an unsendable message is dead and neutral", attempt: 1, policy: fixed,
		res: delivery.Result{Err: errors.New("bad header"), Verdict: delivery.Failed},
		want: outcome{resolution: resolveDead, health: healthNeutral, what: "bad header",
			dead:         &queue.DeadInfo{Reason: "bad header; the message cannot be sent: bad header", Time: now},
			attemptError: "bad header; dead: the message cannot be sent: bad header"},
	}, {
		name: "410 Gone parks the attempt and disables the endpoint", attempt: 2, policy: fixed,
		res: delivery.Result{StatusCode: http.StatusGone, Verdict: delivery.DisableEndpoint},
		want: outcome{resolution: resolvePark, health: healthNeutral, what: "HTTP 410 Gone",
			disable:      "The receiver answered 410 Gone; deliveries are held until the endpoint is re-enabled.",
			attemptError: "HTTP 410 Gone; held until the endpoint is re-enabled"},
	}, {
		name: "a 2xx asking to disable is delivered and disables", attempt: 1, policy: fixed,
		res: delivery.Result{StatusCode: 200, Verdict: delivery.DisableEndpoint},
		want: outcome{resolution: resolveDone, delivered: true, health: healthSuccess,
			disable:      "The receiver asked to disable the endpoint (webhook-delivery: disable); deliveries are held until it is re-enabled.",
			attemptError: "The receiver asked to disable the endpoint (webhook-delivery: disable); deliveries are held until it is re-enabled."},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := queue.Delivery{Attempt: tt.attempt, FirstAttempt: now.Add(-time.Minute)}
			got := decide(&tt.res, &d, tt.policy, now, half)
			tt.want.failure = Failure{Time: now, StatusCode: tt.res.StatusCode, Reason: tt.want.what}
			if got.resolution != tt.want.resolution || !got.retryAt.Equal(tt.want.retryAt) ||
				got.delivered != tt.want.delivered || got.health != tt.want.health ||
				got.disable != tt.want.disable || got.attemptError != tt.want.attemptError ||
				got.what != tt.want.what || got.failure != tt.want.failure {
				t.Errorf("decide:\n got %+v\nwant %+v", got, tt.want)
			}
			switch {
			case (got.dead == nil) != (tt.want.dead == nil):
				t.Errorf("dead = %+v, want %+v", got.dead, tt.want.dead)
			case got.dead != nil && *got.dead != *tt.want.dead:
				t.Errorf("dead = %+v, want %+v", *got.dead, *tt.want.dead)
			}
		})
	}
}

func TestOutcomeCount(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var c Counts
	fail := outcome{resolution: resolveRetry, failure: Failure{Time: now, StatusCode: 503, Reason: "HTTP 503"}}
	fail.count(&c, now)
	dead := outcome{resolution: resolveDead, dead: &queue.DeadInfo{}, failure: Failure{Time: now.Add(time.Second), StatusCode: 500}}
	dead.count(&c, now.Add(time.Second))
	if c.Failed != 2 || c.Dead != 1 || c.ConsecutiveFailures != 2 || !c.FailingSince.Equal(now) || c.LastFailure.StatusCode != 500 {
		t.Fatalf("after two failures: %+v", c)
	}
	ok := outcome{delivered: true}
	ok.count(&c, now.Add(2*time.Second))
	if c.Delivered != 1 || c.ConsecutiveFailures != 0 || !c.FailingSince.IsZero() || !c.LastDeliveryTime.Equal(now.Add(2*time.Second)) {
		t.Fatalf("after a delivery: %+v", c)
	}
}

func TestCircuitReason(t *testing.T) {
	tests := []struct {
		prev, cur  CircuitState
		want       string
		wantUnpark bool
	}{
		{CircuitHalfOpen, CircuitOpen, "The probe delivery failed (HTTP 503); deliveries are held for 30s.", false},
		{CircuitClosed, CircuitOpen, "5 deliveries in a row failed (last: HTTP 503); deliveries are held for 30s.", false},
		{CircuitHalfOpen, CircuitClosed, "A delivery succeeded; deliveries resume.", true},
		{CircuitClosed, CircuitClosed, "A delivery succeeded; deliveries resume.", false},
	}
	for _, tt := range tests {
		got, unpark := circuitReason(tt.prev, tt.cur, 5, 30*time.Second, "HTTP 503")
		if got != tt.want || unpark != tt.wantUnpark {
			t.Errorf("circuitReason(%s, %s) = %q, %v; want %q, %v", tt.prev, tt.cur, got, unpark, tt.want, tt.wantUnpark)
		}
	}
}
