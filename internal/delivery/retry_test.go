package delivery

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func fixed(v float64) func() float64 { return func() float64 { return v } }

func TestNext(t *testing.T) {
	first := t0
	failed := func(code int) Result { return Result{StatusCode: code, Verdict: Retry} }
	throttled := func(code int, ra time.Duration) Result {
		return Result{StatusCode: code, Verdict: Retry, Throttled: true, RetryAfter: ra}
	}
	timeout := Result{Err: errors.New("context deadline exceeded"), Verdict: Retry, Throttled: true}
	exp := &Exponential{Initial: 10 * time.Second, Max: 10 * time.Minute, Multiplier: 3}

	tests := []struct {
		name    string
		policy  Policy
		attempt int
		now     time.Time // first+elapsed; zero means first
		res     Result
		rnd     float64
		delay   time.Duration // expected now→at, when ok
		ok      bool
		reason  string
	}{
		// Default schedule, no jitter (rnd 0.5 is the midpoint).
		{name: "first retry is immediate", attempt: 1, res: failed(500), rnd: 0.5, delay: 0, ok: true, reason: "retry 1"},
		{name: "second retry after 5s", attempt: 2, res: failed(500), rnd: 0.5, delay: 5 * time.Second, ok: true},
		{name: "third retry after 5m", attempt: 3, res: failed(502), rnd: 0.5, delay: 5 * time.Minute, ok: true},
		{name: "last retry after 24h", attempt: 10, res: failed(500), rnd: 0.5, delay: 24 * time.Hour, ok: true},
		{name: "dead after 11 attempts", attempt: 11, res: failed(500), rnd: 0.5, reason: "gave up after 11 attempts"},
		{name: "attempt 0 is taken as 1", attempt: 0, res: failed(500), rnd: 0.5, delay: 0, ok: true},

		// Jitter: ±20% of the scheduled delay.
		{name: "jitter low end", attempt: 3, res: failed(500), rnd: 0, delay: 4 * time.Minute, ok: true},
		{name: "jitter high end", attempt: 3, res: failed(500), rnd: 1, delay: 6 * time.Minute, ok: true},
		{name: "jitter 10%", policy: Policy{Jitter: 0.1}, attempt: 3, res: failed(500), rnd: 0, delay: 270 * time.Second, ok: true},

		// Retry-After: honoured, never sooner than scheduled, capped.
		{name: "retry-after later than schedule wins", attempt: 2, res: Result{StatusCode: 500, RetryAfter: 2 * time.Minute}, rnd: 0.5, delay: 2 * time.Minute, ok: true, reason: "Retry-After"},
		{name: "retry-after sooner than schedule loses", attempt: 3, res: Result{StatusCode: 500, RetryAfter: 30 * time.Second}, rnd: 0.5, delay: 5 * time.Minute, ok: true, reason: "scheduled"},
		{name: "retry-after capped at 1h", attempt: 2, res: Result{StatusCode: 500, RetryAfter: 5 * time.Hour}, rnd: 0.5, delay: time.Hour, ok: true, reason: "capped"},
		{name: "retry-after cap configurable", policy: Policy{RetryAfterMax: 10 * time.Minute}, attempt: 2, res: Result{StatusCode: 500, RetryAfter: 5 * time.Hour}, rnd: 0.5, delay: 10 * time.Minute, ok: true},
		{name: "schedule beyond the cap still applies", attempt: 6, res: Result{StatusCode: 500, RetryAfter: 5 * time.Hour}, rnd: 0.5, delay: 5 * time.Hour, ok: true},

		// Throttling and timeouts: at least 60 s.
		{name: "429 waits 60s instead of immediately", attempt: 1, res: throttled(429, 0), rnd: 0.5, delay: time.Minute, ok: true, reason: "throttling"},
		{name: "503 waits 60s instead of 5s", attempt: 2, res: throttled(503, 0), rnd: 0.5, delay: time.Minute, ok: true},
		{name: "timeout waits 60s", attempt: 1, res: timeout, rnd: 0.5, delay: time.Minute, ok: true},
		{name: "429 with short retry-after still 60s", attempt: 1, res: throttled(429, 10*time.Second), rnd: 0.5, delay: time.Minute, ok: true},
		{name: "429 with long retry-after", attempt: 1, res: throttled(429, 3*time.Minute), rnd: 0.5, delay: 3 * time.Minute, ok: true},
		{name: "throttled later step keeps schedule", attempt: 3, res: throttled(503, 0), rnd: 0.5, delay: 5 * time.Minute, ok: true},

		// Verdicts that end retrying.
		{name: "delivered", attempt: 1, res: Result{StatusCode: 200, Verdict: Delivered}, reason: "delivered"},
		{name: "abort", attempt: 1, res: Result{StatusCode: 500, Verdict: Abort}, reason: "abort-message"},
		{name: "410", attempt: 1, res: Result{StatusCode: 410, Verdict: DisableEndpoint}, reason: "410 Gone"},
		{name: "disable header", attempt: 1, res: Result{StatusCode: 500, Verdict: DisableEndpoint}, reason: "webhook-delivery: disable"},
		{name: "failed", attempt: 1, res: Result{Verdict: Failed, Err: errors.New("message has no id")}, reason: "message has no id"},

		// Client errors.
		{name: "404 retried by default", attempt: 1, res: failed(404), rnd: 0.5, delay: 0, ok: true},
		{name: "3xx retried by default", attempt: 1, res: failed(302), rnd: 0.5, delay: 0, ok: true},
		{name: "drop: 404 not retried", policy: Policy{ClientErrors: DropClientErrors}, attempt: 1, res: failed(404), reason: "HTTP 404 is not retried"},
		{name: "drop: 400 not retried", policy: Policy{ClientErrors: DropClientErrors}, attempt: 1, res: failed(400), reason: "HTTP 400"},
		{name: "drop: 408 retried", policy: Policy{ClientErrors: DropClientErrors}, attempt: 1, res: failed(408), rnd: 0.5, delay: 0, ok: true},
		{name: "drop: 429 retried", policy: Policy{ClientErrors: DropClientErrors}, attempt: 1, res: throttled(429, 0), rnd: 0.5, delay: time.Minute, ok: true},
		{name: "drop: 500 retried", policy: Policy{ClientErrors: DropClientErrors}, attempt: 2, res: failed(500), rnd: 0.5, delay: 5 * time.Second, ok: true},
		{name: "drop: 3xx retried", policy: Policy{ClientErrors: DropClientErrors}, attempt: 1, res: failed(301), rnd: 0.5, delay: 0, ok: true},
		{name: "drop: transport error retried", policy: Policy{ClientErrors: DropClientErrors}, attempt: 1, res: Result{Err: errors.New("reset"), Verdict: Retry}, rnd: 0.5, delay: 0, ok: true},

		// Limits.
		{name: "max attempts", policy: Policy{MaxAttempts: 3}, attempt: 3, res: failed(500), reason: "gave up after 3 attempts"},
		{name: "max attempts beyond schedule repeats last step", policy: Policy{Schedule: []time.Duration{time.Second, time.Minute}, MaxAttempts: 5}, attempt: 4, res: failed(500), rnd: 0.5, delay: time.Minute, ok: true},
		{name: "custom schedule ends", policy: Policy{Schedule: []time.Duration{time.Second, time.Minute}}, attempt: 3, res: failed(500), reason: "gave up after 3 attempts"},
		{name: "max age not reached", policy: Policy{MaxAge: time.Hour}, attempt: 3, now: first.Add(50 * time.Minute), res: failed(500), rnd: 0.5, delay: 5 * time.Minute, ok: true},
		{name: "max age exceeded by next attempt", policy: Policy{MaxAge: time.Hour}, attempt: 3, now: first.Add(56 * time.Minute), res: failed(500), rnd: 0.5, reason: "past maxAge 1h0m0s"},
		{name: "max age exceeded by retry-after", policy: Policy{MaxAge: time.Hour}, attempt: 2, now: first.Add(30 * time.Minute), res: Result{StatusCode: 500, RetryAfter: 45 * time.Minute}, rnd: 0.5, reason: "past maxAge"},

		// Exponential.
		{name: "exponential first", policy: Policy{Exponential: exp, MaxAttempts: 20}, attempt: 1, res: failed(500), rnd: 0.5, delay: 10 * time.Second, ok: true},
		{name: "exponential third", policy: Policy{Exponential: exp, MaxAttempts: 20}, attempt: 3, res: failed(500), rnd: 0.5, delay: 90 * time.Second, ok: true},
		{name: "exponential capped", policy: Policy{Exponential: exp, MaxAttempts: 20}, attempt: 10, res: failed(500), rnd: 0.5, delay: 10 * time.Minute, ok: true},
		{name: "exponential huge attempt no overflow", policy: Policy{Exponential: exp, MaxAge: 1000 * time.Hour}, attempt: 5000, res: failed(500), rnd: 0.5, delay: 10 * time.Minute, ok: true},
		{name: "exponential jitter", policy: Policy{Exponential: exp, MaxAttempts: 20}, attempt: 1, res: failed(500), rnd: 1, delay: 12 * time.Second, ok: true},
		{name: "exponential defaults", policy: Policy{Exponential: &Exponential{Initial: time.Second}, MaxAttempts: 50}, attempt: 4, res: failed(500), rnd: 0.5, delay: 8 * time.Second, ok: true},
		{name: "exponential max attempts", policy: Policy{Exponential: exp, MaxAttempts: 4}, attempt: 4, res: failed(500), reason: "gave up after 4"},
		{name: "exponential unbounded falls back to 11 attempts", policy: Policy{Exponential: exp}, attempt: 11, res: failed(500), reason: "gave up after 11"},
		{name: "exponential bounded by age only", policy: Policy{Exponential: exp, MaxAge: 48 * time.Hour}, attempt: 40, now: first.Add(47 * time.Hour), res: failed(500), rnd: 0.5, delay: 10 * time.Minute, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = first
			}
			if tt.res.Verdict == 0 && tt.res.StatusCode != 0 && tt.res.Err == nil {
				tt.res.Verdict = Retry
			}
			at, ok, reason := tt.policy.Next(tt.attempt, first, now, tt.res, fixed(tt.rnd))
			if ok != tt.ok {
				t.Fatalf("ok = %v (%s), want %v", ok, reason, tt.ok)
			}
			if ok && at.Sub(now) != tt.delay {
				t.Errorf("delay = %s, want %s (%s)", at.Sub(now), tt.delay, reason)
			}
			if !ok && !at.IsZero() {
				t.Errorf("at = %v with ok false", at)
			}
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", reason, tt.reason)
			}
		})
	}
}

// TestDefaultScheduleSpansAboutThreeDays pins the schedule to the design: a
// message that always fails is given up about three days after it started.
func TestDefaultScheduleSpansAboutThreeDays(t *testing.T) {
	p := Policy{}
	now, attempts := t0, 1
	for {
		at, ok, _ := p.Next(attempts, t0, now, Result{StatusCode: 500}, fixed(0.5))
		if !ok {
			break
		}
		now, attempts = at, attempts+1
	}
	if attempts != 11 {
		t.Errorf("made %d attempts, want 11", attempts)
	}
	if span := now.Sub(t0); span < 72*time.Hour || span > 80*time.Hour {
		t.Errorf("last attempt %s after the first, want about 3 days", span)
	}
}

func TestNextJitterStaysInBounds(t *testing.T) {
	p := DefaultPolicy()
	for i := 0; i <= 100; i++ {
		r := float64(i) / 100
		at, ok, _ := p.Next(4, t0, t0, Result{StatusCode: 500}, fixed(r))
		d := at.Sub(t0)
		if !ok || d < 24*time.Minute || d > 36*time.Minute {
			t.Fatalf("rnd %.2f: delay %s outside 30m ±20%%", r, d)
		}
	}
	// nil rnd uses the real generator; only the bounds are checked.
	at, ok, _ := p.Next(4, t0, t0, Result{StatusCode: 500}, nil)
	if d := at.Sub(t0); !ok || d < 24*time.Minute || d > 36*time.Minute {
		t.Errorf("nil rnd: delay %s", d)
	}
}

func TestDefaultPolicyEqualsZeroValue(t *testing.T) {
	for attempt := 1; attempt <= 11; attempt++ {
		a1, ok1, r1 := Policy{}.Next(attempt, t0, t0, Result{StatusCode: 500}, fixed(0.3))
		a2, ok2, r2 := DefaultPolicy().Next(attempt, t0, t0, Result{StatusCode: 500}, fixed(0.3))
		if !a1.Equal(a2) || ok1 != ok2 || r1 != r2 {
			t.Errorf("attempt %d: zero value (%v %v %q) differs from DefaultPolicy (%v %v %q)", attempt, a1, ok1, r1, a2, ok2, r2)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	good := []Policy{
		{},
		DefaultPolicy(),
		{Exponential: &Exponential{Initial: time.Second, Max: time.Hour, Multiplier: 2}, MaxAge: 24 * time.Hour},
		{Schedule: []time.Duration{0, time.Second}, ClientErrors: DropClientErrors},
	}
	for i, p := range good {
		if err := p.Validate(); err != nil {
			t.Errorf("good[%d]: %v", i, err)
		}
	}
	bad := []Policy{
		{Schedule: []time.Duration{}},
		{Schedule: []time.Duration{-time.Second}},
		{Schedule: []time.Duration{time.Second}, Exponential: &Exponential{Initial: time.Second}},
		{Exponential: &Exponential{}},
		{Exponential: &Exponential{Initial: time.Second, Multiplier: 0.5}},
		{MaxAttempts: -1},
		{MaxAge: -time.Second},
		{Jitter: 1.5},
	}
	for i, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("bad[%d] = %+v validated", i, p)
		}
	}
}
