package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
)

func TestSignedDeliveryWithRetries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, true, func(w http.ResponseWriter, r request) {
		if r.n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp", schedule("1s", "2s"))
	f.start(testOptions())
	f.publish("e1")

	eventually(t, "three attempts", func() bool { return rc.count() == 3 })
	reqs := rc.requests()
	for _, r := range reqs {
		rc.verify(t, r)
		if want := delivery.WebhookIDOf(ns, "e1", "uid-sub-invoices"); r.webhookID() != want {
			t.Errorf("request %d has webhook-id %q, want %s on every attempt", r.n, r.webhookID(), want)
		}
	}
	var body struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(reqs[0].body, &body); err != nil || body.ID != "e1" || body.Type != "invoice.paid" || string(body.Data) != `{"id":"e1","amount":42}` {
		t.Errorf("body %s (%v)", reqs[0].body, err)
	}
	// The schedule's delays with their ±20% jitter: a retry may come late,
	// never early.
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 800*time.Millisecond {
		t.Errorf("first retry after %s, want at least 0.8×1s", gap)
	}
	if gap := reqs[2].at.Sub(reqs[1].at); gap < 1600*time.Millisecond {
		t.Errorf("second retry after %s, want at least 0.8×2s", gap)
	}

	eventually(t, "the attempt log", func() bool { return len(f.attempts("invoices")) == 3 })
	as := f.attempts("invoices")
	if got := attemptNumbers(as); got != "3:200 2:500 1:500" {
		t.Errorf("attempt log (newest first) %s, want 3:200 2:500 1:500", got)
	}
	if !strings.Contains(as[1].Error, "HTTP 500") || !strings.Contains(as[1].Error, "retry") {
		t.Errorf("attempt 2 error %q, want the status and the next step", as[1].Error)
	}
	for _, a := range as {
		if a.EventID != "e1" {
			t.Errorf("attempt %d records event %q, want e1", a.Attempt, a.EventID)
		}
	}
	eventually(t, "the figures", func() bool { return f.subscriptionStats("invoices").Delivered == 1 })
	s := f.subscriptionStats("invoices")
	if s.Failed != 2 || s.ConsecutiveFailures != 0 || s.LastFailure == nil || s.LastFailure.StatusCode != 500 || s.LastDeliveryTime.IsZero() {
		t.Errorf("subscription figures %+v", s)
	}
	if got := metricValue(f.eng.m.attempts.WithLabelValues(ns, "invoices", attemptServerError)); got != 2 {
		t.Errorf("server_error attempts %v, want 2", got)
	}
	if got := metricValue(f.eng.m.deliveries.WithLabelValues(ns, "invoices", outcomeDelivered)); got != 1 {
		t.Errorf("delivered %v, want 1", got)
	}
}

func TestRetryAfterHonouredAndCapped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		if r.n == 1 {
			// An hour, which the subscription caps at 2s.
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp", schedule("1s"), policy(func(p *hooklinev1.DeliveryPolicy) { p.RetryAfterMax = dur("2s") }))
	f.start(testOptions())
	f.publish("e1")

	eventually(t, "the retry", func() bool { return rc.count() == 2 })
	reqs := rc.requests()
	// Retry-After wins over the 1s schedule, capped at 2s.
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 2*time.Second {
		t.Errorf("retry after %s, want at least the capped Retry-After of 2s", gap)
	}
	eventually(t, "the attempt log", func() bool { return len(f.attempts("invoices")) == 2 })
	if e := f.attempts("invoices")[1].Error; !strings.Contains(e, "Retry-After") || !strings.Contains(e, "retryAfterMax") {
		t.Errorf("attempt 1 error %q, want it to say Retry-After was capped", e)
	}
}

func TestGoneDisablesEndpointAndKeepsBacklog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	gone := make(chan struct{}) // closed when the receiver is back
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		select {
		case <-gone:
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusGone)
		}
	})
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp")
	eng := f.start(testOptions())
	f.publish("e1", "e2", "e3")

	eventually(t, "the endpoint to be disabled", func() bool { return len(f.signals.of(SignalEndpointDisabled)) == 1 })
	sig := f.signals.of(SignalEndpointDisabled)[0]
	if sig.Endpoint != "erp" || !strings.Contains(sig.Reason, "410") {
		t.Errorf("disable signal %+v", sig)
	}
	if st := f.endpointStats("erp"); !st.Disabled || st.DisabledSince.IsZero() {
		t.Errorf("endpoint figures %+v, want disabled", st)
	}
	if d := eng.Disabled(); len(d) != 1 || d[0].Name != "erp" || d[0].UID != "uid-ep-erp" {
		t.Errorf("Disabled() = %+v", d)
	}
	if got := metricValue(eng.m.disabled.WithLabelValues(ns, "erp")); got != 1 {
		t.Errorf("hookline_endpoints_disabled %v, want 1", got)
	}
	// Deliveries that raced the disable may have been sent too; after that,
	// nothing goes out while disabled (holds of 1-2s come and go).
	time.Sleep(200 * time.Millisecond)
	sent := rc.count()
	time.Sleep(2500 * time.Millisecond)
	if n := rc.count(); n != sent {
		t.Fatalf("%d requests while the endpoint was disabled", n-sent)
	}
	if n := len(f.dead("invoices")); n != 0 {
		t.Fatalf("%d dead deliveries; a disabled endpoint's backlog is kept", n)
	}

	close(gone)
	if !eng.Enable(ns, "erp") {
		t.Fatal("Enable reported the endpoint was not disabled")
	}
	eventually(t, "the backlog after Enable", func() bool {
		ok := 0
		for _, reqs := range rc.byID() {
			if len(reqs) > 0 && reqs[len(reqs)-1].at.After(time.Now().Add(-time.Hour)) {
				ok++
			}
		}
		return ok == 3 && f.subscriptionStats("invoices").Delivered == 3
	})
	if len(f.signals.of(SignalEndpointEnabled)) != 1 || f.endpointStats("erp").Disabled {
		t.Errorf("endpoint still disabled after Enable")
	}
	// A 410 does not spend the attempt: every delivery was attempt 1.
	for _, a := range f.attempts("invoices") {
		if a.Attempt != 1 {
			t.Errorf("attempt log %s, want only attempt 1", attemptNumbers(f.attempts("invoices")))
			break
		}
	}
}

func TestAbortMessageGoesDead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		w.Header().Set("Webhook-Delivery", "abort-message")
		w.WriteHeader(http.StatusUnprocessableEntity)
	})
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp", schedule("1s", "1s"))
	f.start(testOptions())
	f.publish("e1")

	eventually(t, "the dead letter", func() bool { return len(f.dead("invoices")) == 1 })
	d := f.dead("invoices")[0]
	if d.Delivery.Attempt != 1 || d.Last.StatusCode != 422 || !strings.Contains(d.Last.Reason, "abort-message") {
		t.Errorf("dead letter %+v, want attempt 1, 422, abort-message", d)
	}
	eventually(t, "the signal", func() bool { return len(f.signals.of(SignalDeliveryDead)) == 1 })
	if s := f.signals.of(SignalDeliveryDead)[0]; s.Subscription != "invoices" || s.EventID != "e1" || s.StatusCode != 422 {
		t.Errorf("dead signal %+v", s)
	}
	if s := f.subscriptionStats("invoices"); s.Dead != 1 || s.Failed != 1 || s.Delivered != 0 {
		t.Errorf("figures %+v", s)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := rc.count(); n != 1 {
		t.Errorf("%d requests, want 1: abort-message stops retries", n)
	}
}

func TestDropClientErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var rc *receiver
	rc = newReceiver(t, false, func(w http.ResponseWriter, r request) {
		switch r.id() {
		case "e400":
			w.WriteHeader(http.StatusBadRequest)
		case "e429":
			w.WriteHeader(http.StatusTooManyRequests)
		case "e408":
			if len(rc.byID()["e408"]) == 1 {
				w.WriteHeader(http.StatusRequestTimeout)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
	f.endpoint("erp", rc)
	f.subscription("strict", "erp", schedule("1s", "1s"), policy(func(p *hooklinev1.DeliveryPolicy) {
		p.ClientErrors = hooklinev1.ClientErrorsDrop
	}))
	f.start(testOptions())
	f.publish("e400", "e408", "e429")

	eventually(t, "e400 dead and e408 delivered", func() bool {
		return len(f.dead("strict")) == 1 && len(rc.byID()["e408"]) == 2
	})
	d := f.dead("strict")[0]
	if d.Delivery.Event.ID != "e400" || d.Delivery.Attempt != 1 || !strings.Contains(d.Last.Reason, "drops client errors") {
		t.Errorf("dead letter %+v, want e400 after one attempt", d)
	}
	// 429 is retried, after the throttling minimum of a minute: it is
	// scheduled, not dead.
	eventually(t, "the attempt log", func() bool { return len(f.attempts("strict")) == 4 })
	found := false
	for _, a := range f.attempts("strict") {
		if a.StatusCode == 429 {
			found = true
			if !strings.Contains(a.Error, "retry 1 in 1m0s") {
				t.Errorf("429 attempt %q, want a retry scheduled a minute out", a.Error)
			}
		}
	}
	if !found {
		t.Error("no 429 attempt in the log")
	}
	if n := len(rc.byID()["e429"]); n != 1 {
		t.Errorf("e429 got %d requests, want 1 within the minute", n)
	}
}

func TestDeadThenReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	back := make(chan struct{})
	rc := newReceiver(t, false, func(w http.ResponseWriter, r request) {
		select {
		case <-back:
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	f.endpoint("erp", rc)
	f.subscription("invoices", "erp", schedule("1s"))
	f.start(testOptions())
	f.publish("e1")

	eventually(t, "the dead letter", func() bool { return len(f.dead("invoices")) == 1 })
	if d := f.dead("invoices")[0]; d.Delivery.Attempt != 2 || d.Last.StatusCode != 502 {
		t.Errorf("dead letter %+v, want attempt 2 and 502", d)
	}
	close(back)
	n, err := f.q.Replay(context.Background(), f.subscriptionID("invoices"), time.Time{}, time.Time{})
	if err != nil || n != 1 {
		t.Fatalf("replay answered %d, %v, want replayed 1", n, err)
	}
	eventually(t, "the replayed delivery", func() bool { return f.subscriptionStats("invoices").Delivered == 1 })
	eventually(t, "the attempt log", func() bool { return len(f.attempts("invoices")) == 3 })
	if got := attemptNumbers(f.attempts("invoices")); got != "1:204 2:502 1:502" {
		t.Errorf("attempt log %s, want the replay as a fresh attempt 1", got)
	}
	if n := len(f.dead("invoices")); n != 0 {
		t.Errorf("%d dead letters left after replay", n)
	}
}

func TestSuspendedSubscriptionGetsNothingQueued(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	live, paused := newReceiver(t, false, nil), newReceiver(t, false, nil)
	f.endpoint("live", live)
	f.endpoint("paused", paused)
	f.subscription("live", "live")
	f.subscription("paused", "paused", func(s *hooklinev1.Subscription) { s.Spec.Suspend = true })
	eng := f.start(testOptions())

	ds, err := eng.Match(context.Background(), event("x"))
	if err != nil || len(ds) != 1 || ds[0].Subscription != "live" {
		t.Fatalf("Match = %+v, %v; want only the live subscription", ds, err)
	}
	f.publish(ids(20)...)
	eventually(t, "the live deliveries", func() bool { return live.count() == 20 })
	b, err := f.q.Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := paused.count() + int(b.Endpoints[queue.EndpointKey{Namespace: ns, Endpoint: "paused"}]); n != 0 {
		t.Errorf("the suspended subscription got %d deliveries sent or queued", n)
	}
}

func TestFilters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rc := newReceiver(t, false, nil)
	f.endpoint("erp", rc)
	f.subscription("big", "erp", func(s *hooklinev1.Subscription) { s.Spec.Filter = "data.amount > 10" })
	f.subscription("small", "erp", func(s *hooklinev1.Subscription) { s.Spec.Filter = "data.amount <= 10" })
	f.subscription("broken", "erp", func(s *hooklinev1.Subscription) { s.Spec.Filter = "data.missing > 1" })
	f.subscription("ordered", "erp", policy(func(p *hooklinev1.DeliveryPolicy) { p.Ordering = hooklinev1.OrderingOrdered }))
	eng := f.start(testOptions())

	ds, err := eng.Match(context.Background(), event("x")) // amount 42
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.Subscription)
		if d.Endpoint != "erp" || d.SubscriptionUID != "uid-sub-"+d.Subscription || d.Ordered != (d.Subscription == "ordered") {
			t.Errorf("delivery %+v", d)
		}
	}
	if strings.Join(got, ",") != "big,ordered" {
		t.Errorf("Match chose %v, want big,ordered", got)
	}
	if n := metricValue(eng.m.filterErrors.WithLabelValues(ns, "broken")); n != 1 {
		t.Errorf("filter errors %v, want 1", n)
	}
}
