package delivery

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"time"
)

// ThrottleMinDelay is the least wait after a 429, a 503 or a timeout: an
// overloaded receiver gets a minute to recover whatever the schedule says.
const ThrottleMinDelay = 60 * time.Second

const (
	DefaultRetryAfterMax = time.Hour
	DefaultJitter        = 0.2
)

// defaultSchedule is the Standard Webhooks recommendation, about three days
// end to end like Stripe and HubSpot.
var defaultSchedule = []time.Duration{
	0,
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	14 * time.Hour,
	20 * time.Hour,
	24 * time.Hour,
}

// ClientErrors says whether 4xx answers are retried.
type ClientErrors uint8

const (
	// RetryClientErrors retries every non-2xx answer (except 410).
	RetryClientErrors ClientErrors = iota
	// DropClientErrors gives up on a 4xx other than 408 and 429 at once,
	// as HubSpot does: the receiver said the request itself is wrong.
	DropClientErrors
)

// Exponential is the alternative to a fixed schedule: the n-th retry waits
// Initial × Multiplier^(n-1), at most Max.
type Exponential struct {
	Initial    time.Duration
	Max        time.Duration // 24h if zero
	Multiplier float64       // 2 if not above 1
}

// Policy is a subscription's retry policy. The zero value is the default
// policy.
type Policy struct {
	// Schedule[i] is the delay after the (i+1)-th failed attempt; nil means
	// the default schedule. Ignored when Exponential is set.
	Schedule    []time.Duration
	Exponential *Exponential
	// MaxAttempts counts every attempt, the first one included. Zero means
	// one more than the schedule has entries; with Exponential it means no
	// limit but MaxAge (or, when that is zero too, the default's count).
	MaxAttempts int
	// MaxAge bounds how long after the first attempt a retry may happen;
	// zero is no bound.
	MaxAge time.Duration
	// RetryAfterMax caps how far a receiver's Retry-After can push the next
	// attempt; DefaultRetryAfterMax if zero.
	RetryAfterMax time.Duration
	// Jitter is the ± fraction applied to each scheduled delay, so that
	// deliveries that failed together do not all return together; zero
	// means DefaultJitter. It cannot be turned off.
	Jitter       float64
	ClientErrors ClientErrors
}

// DefaultPolicy returns the design's default, spelled out.
func DefaultPolicy() Policy {
	return Policy{
		Schedule:      append([]time.Duration(nil), defaultSchedule...),
		MaxAttempts:   len(defaultSchedule) + 1,
		RetryAfterMax: DefaultRetryAfterMax,
		Jitter:        DefaultJitter,
	}
}

// Validate reports settings that Next would otherwise quietly repair.
func (p Policy) Validate() error {
	var errs []error
	if p.Exponential != nil {
		if p.Schedule != nil {
			errs = append(errs, errors.New("set either a schedule or an exponential policy, not both"))
		}
		if p.Exponential.Initial <= 0 {
			errs = append(errs, errors.New("exponential initial delay must be positive"))
		}
		if p.Exponential.Max < 0 {
			errs = append(errs, errors.New("exponential max delay must not be negative"))
		}
		if p.Exponential.Multiplier != 0 && p.Exponential.Multiplier <= 1 {
			errs = append(errs, errors.New("exponential multiplier must be above 1"))
		}
	}
	for _, d := range p.Schedule {
		if d < 0 {
			errs = append(errs, errors.New("schedule delays must not be negative"))
			break
		}
	}
	if p.Schedule != nil && len(p.Schedule) == 0 && p.Exponential == nil {
		errs = append(errs, errors.New("schedule is empty"))
	}
	if p.MaxAttempts < 0 {
		errs = append(errs, errors.New("maxAttempts must not be negative"))
	}
	if p.MaxAge < 0 || p.RetryAfterMax < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if p.Jitter < 0 || p.Jitter >= 1 {
		errs = append(errs, errors.New("jitter must be at least 0 and below 1"))
	}
	return errors.Join(errs...)
}

func (p Policy) schedule() []time.Duration {
	if len(p.Schedule) == 0 {
		return defaultSchedule
	}
	return p.Schedule
}

func (p Policy) maxAttempts() int {
	switch {
	case p.MaxAttempts > 0:
		return p.MaxAttempts
	case p.Exponential != nil && p.MaxAge > 0:
		return math.MaxInt
	case p.Exponential != nil:
		return len(defaultSchedule) + 1
	default:
		return len(p.schedule()) + 1
	}
}

// delay is the un-jittered wait after the n-th attempt (n ≥ 1).
func (p Policy) delay(n int) time.Duration {
	if e := p.Exponential; e != nil {
		initial, maxDelay, mult := e.Initial, e.Max, e.Multiplier
		if initial <= 0 {
			initial = 5 * time.Second
		}
		if maxDelay <= 0 {
			maxDelay = 24 * time.Hour
		}
		if mult <= 1 {
			mult = 2
		}
		d := float64(initial) * math.Pow(mult, float64(n-1))
		if d >= float64(maxDelay) || math.IsInf(d, 0) || math.IsNaN(d) {
			return maxDelay
		}
		return time.Duration(d)
	}
	s := p.schedule()
	if n > len(s) {
		// MaxAttempts beyond the schedule keeps its last step.
		return s[len(s)-1]
	}
	return s[n-1]
}

func (p Policy) jitter() float64 {
	if p.Jitter <= 0 || p.Jitter >= 1 {
		return DefaultJitter
	}
	return p.Jitter
}

func (p Policy) retryAfterMax() time.Duration {
	if p.RetryAfterMax <= 0 {
		return DefaultRetryAfterMax
	}
	return p.RetryAfterMax
}

// Next decides when to make the next attempt after attempt attempts (the
// first one included) have been made, the last of which produced res.
// firstAttempt is when the first attempt was made and now is when res came
// back. rnd returns values in [0, 1); nil means math/rand/v2.
//
// ok is false when no further attempt is to be made: the message was
// delivered, the receiver aborted it or disabled the endpoint (the caller
// parks the endpoint's backlog), the policy does not retry this failure, or
// attempts or age are used up (the message is dead). reason says which in a
// sentence fit for status and logs, and when ok is true it says what set the
// delay.
func (p Policy) Next(attempt int, firstAttempt, now time.Time, res Result, rnd func() float64) (at time.Time, ok bool, reason string) {
	switch res.Verdict {
	case Delivered:
		return time.Time{}, false, "delivered"
	case Abort:
		return time.Time{}, false, "the receiver asked not to retry this message (webhook-delivery: abort-message)"
	case DisableEndpoint:
		if res.StatusCode == http.StatusGone {
			return time.Time{}, false, "the receiver answered 410 Gone; the endpoint is to be disabled"
		}
		return time.Time{}, false, "the receiver asked to disable the endpoint (webhook-delivery: disable)"
	case Failed:
		return time.Time{}, false, fmt.Sprintf("the message cannot be sent: %v", res.Err)
	}
	if p.ClientErrors == DropClientErrors && res.StatusCode >= 400 && res.StatusCode < 500 &&
		res.StatusCode != http.StatusRequestTimeout && res.StatusCode != http.StatusTooManyRequests {
		return time.Time{}, false, fmt.Sprintf("HTTP %d is not retried: the subscription drops client errors", res.StatusCode)
	}
	if attempt < 1 {
		attempt = 1
	}
	if maxAttempts := p.maxAttempts(); attempt >= maxAttempts {
		return time.Time{}, false, fmt.Sprintf("gave up after %d attempts", attempt)
	}

	if rnd == nil {
		rnd = rand.Float64
	}
	scheduled := p.delay(attempt)
	d := time.Duration(float64(scheduled) * (1 + p.jitter()*(2*rnd()-1)))
	reason = fmt.Sprintf("retry %d scheduled in %s", attempt, d.Round(time.Millisecond))
	if ra := min(res.RetryAfter, p.retryAfterMax()); ra > d {
		d = ra
		reason = fmt.Sprintf("retry %d in %s as the receiver's Retry-After asked", attempt, d)
		if res.RetryAfter > ra {
			reason += " (capped by retryAfterMax)"
		}
	}
	if res.Throttled && d < ThrottleMinDelay {
		d = ThrottleMinDelay
		reason = fmt.Sprintf("retry %d in %s: the receiver is throttling or timing out", attempt, d)
	}
	at = now.Add(d)
	if p.MaxAge > 0 && at.Sub(firstAttempt) > p.MaxAge {
		return time.Time{}, false, fmt.Sprintf("gave up after %d attempts: the next would be %s after the first, past maxAge %s",
			attempt, at.Sub(firstAttempt).Round(time.Second), p.MaxAge)
	}
	return at, true, reason
}
