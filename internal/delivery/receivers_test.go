package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Receivers that misbehave: redirect, stall, reset, flood, throttle.
func TestRedirectNotFollowed(t *testing.T) {
	elsewhere := newReceiver(t, nil)
	elsewhere.Start()
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		http.Redirect(w, r, elsewhere.URL+"/stolen", http.StatusTemporaryRedirect)
	})
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
	res := Send(context.Background(), tg, testMessage(), t0)
	if res.StatusCode != 307 || res.Verdict != Retry || res.Err != nil {
		t.Errorf("Send = %+v, want a 307 failure", res)
	}
	if n := elsewhere.requests.Load(); n != 0 {
		t.Errorf("redirect followed: target of the redirect got %d requests", n)
	}
}

func TestSlowReceiverTimesOut(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	rc.Start()
	defer close(release) // runs before rc.Close, so the handler never outlives the test
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, Timeout: 200 * time.Millisecond})
	res := Send(context.Background(), tg, testMessage(), t0)
	if res.Err == nil || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("Send = %+v, want a deadline error", res)
	}
	if !res.Throttled || res.Verdict != Retry {
		t.Errorf("timeout: throttled %v verdict %s", res.Throttled, res.Verdict)
	}
	if at, ok, _ := DefaultPolicy().Next(1, t0, t0, res, fixed(0.5)); !ok || at.Sub(t0) != ThrottleMinDelay {
		t.Errorf("after a timeout next attempt in %s", at.Sub(t0))
	}
}

func TestCallerCancellationIsNotATimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) { cancel(); <-r.Context().Done() })
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
	res := Send(ctx, tg, testMessage(), t0)
	if !errors.Is(res.Err, context.Canceled) || res.Throttled {
		t.Errorf("Send = %+v, want a cancellation that is not throttling", res)
	}
}

func hijackReset(t testing.TB, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	// SO_LINGER 0 makes Close send RST instead of FIN.
	_ = conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
}

func TestConnectionReset(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) { hijackReset(t, w) })
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
	res := Send(context.Background(), tg, testMessage(), t0)
	t.Logf("reset: %v", res.Err)
	if res.Err == nil || res.StatusCode != 0 || res.Verdict != Retry || res.Throttled {
		t.Errorf("Send = %+v, want a retryable transport error", res)
	}
}

// TestStaleKeepAliveIsResent: a receiver that drops a reused keep-alive
// connection does not cost the message an attempt, because Send marks the
// request idempotent and net/http resends it on a new connection.
func TestStaleKeepAliveIsResent(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 2 {
			hijackReset(t, w)
			return
		}
		w.WriteHeader(200)
	})
	rc.Start()
	p, _ := newTestPool(t)
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
	for i := range 2 {
		if res := Send(context.Background(), tg, testMessage(), t0); res.Verdict != Delivered {
			t.Fatalf("send %d: %+v", i, res)
		}
	}
	if n := rc.requests.Load(); n != 3 {
		t.Errorf("receiver saw %d requests, want 3 (one resent)", n)
	}
}

func TestResponseBody(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch r.URL.Path {
		case "/small":
			w.WriteHeader(500)
			fmt.Fprint(w, "database down")
		case "/exact":
			w.Header().Set("Content-Length", strconv.Itoa(MaxResponseBody))
			fmt.Fprint(w, big[:MaxResponseBody])
		case "/big":
			fmt.Fprint(w, big)
		case "/big-length":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			fmt.Fprint(w, big)
		}
	})
	rc.Start()
	p, _ := newTestPool(t)
	for _, tt := range []struct {
		path      string
		n         int
		truncated bool
	}{
		{"/small", len("database down"), false},
		{"/exact", MaxResponseBody, false},
		{"/big", MaxResponseBody, true},
		{"/big-length", MaxResponseBody, true},
	} {
		tg := newTestTarget(t, p, TargetConfig{URL: rc.URL + tt.path})
		res := Send(context.Background(), tg, testMessage(), t0)
		if len(res.Body) != tt.n || res.BodyTruncated != tt.truncated {
			t.Errorf("%s: body %d bytes truncated %v, want %d %v", tt.path, len(res.Body), res.BodyTruncated, tt.n, tt.truncated)
		}
	}
}

// TestConnectionReuse counts the receiver's connections: a body a little
// over the kept 20 KB is drained so the connection is reused, a huge one is
// not read to the end and costs a connection.
func TestConnectionReuse(t *testing.T) {
	for _, tt := range []struct {
		size  int
		conns int64
	}{
		{0, 1},
		{100, 1},
		{30 << 10, 1},
		{4 << 20, 3},
	} {
		body := strings.Repeat("y", tt.size)
		rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) { fmt.Fprint(w, body) })
		rc.Start()
		p, _ := newTestPool(t)
		tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
		for range 3 {
			if res := Send(context.Background(), tg, testMessage(), t0); res.Verdict != Delivered {
				t.Fatalf("%+v", res)
			}
		}
		if got := rc.conns.Load(); got != tt.conns {
			t.Errorf("body of %d bytes: %d connections for 3 sends, want %d", tt.size, got, tt.conns)
		}
	}
}

func TestVerdicts(t *testing.T) {
	tests := []struct {
		status    int
		header    string
		verdict   Verdict
		throttled bool
	}{
		{200, "", Delivered, false},
		{201, "", Delivered, false},
		{204, "", Delivered, false},
		{301, "", Retry, false},
		{400, "", Retry, false},
		{404, "", Retry, false},
		{408, "", Retry, false},
		{410, "", DisableEndpoint, false},
		{429, "", Retry, true},
		{500, "", Retry, false},
		{503, "", Retry, true},
		{500, "abort-message", Abort, false},
		{404, " Abort-Message ", Abort, false},
		{200, "abort-message", Delivered, false}, // nothing to abort
		{500, "disable", DisableEndpoint, false},
		{200, "disable", DisableEndpoint, false},
		{500, "something-else", Retry, false},
	}
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if v := r.URL.Query().Get("h"); v != "" {
			w.Header().Set("Webhook-Delivery", v)
		}
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
	})
	rc.Start()
	p, _ := newTestPool(t)
	for _, tt := range tests {
		tg := newTestTarget(t, p, TargetConfig{URL: fmt.Sprintf("%s/?code=%d&h=%s", rc.URL, tt.status, url.QueryEscape(tt.header))})
		res := Send(context.Background(), tg, testMessage(), t0)
		if res.StatusCode != tt.status || res.Verdict != tt.verdict || res.Throttled != tt.throttled || res.Err != nil {
			t.Errorf("%d %q: status %d verdict %s throttled %v err %v, want verdict %s throttled %v",
				tt.status, tt.header, res.StatusCode, res.Verdict, res.Throttled, res.Err, tt.verdict, tt.throttled)
		}
	}
	if n := p.Transports(); n != 1 {
		t.Errorf("%d targets with the same TLS settings use %d transports, want 1", len(tests), n)
	}
}

func TestRetryAfter(t *testing.T) {
	p, clk := newTestPool(t)
	// The fake clock is what Send reads as "now" when the response arrives.
	now := clk.Now()
	tests := []struct {
		status int
		value  string
		want   time.Duration
	}{
		{429, "120", 2 * time.Minute},
		{503, " 7 ", 7 * time.Second},
		{503, "0", 0},
		{429, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{503, now.Add(2 * time.Hour).Format(time.RFC850), 2 * time.Hour},
		{503, now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{429, "soon", 0},
		{429, "-5", 0},
		{429, "1.5", 0},
		{429, "99999999999999999999", time.Duration(1<<63 - 1)},
		{200, "120", 0}, // only failures are told to wait
	}
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		w.Header().Set("Retry-After", r.Header.Get("X-Retry-After"))
		code, _ := strconv.Atoi(r.Header.Get("X-Code"))
		w.WriteHeader(code)
	})
	rc.Start()
	for _, tt := range tests {
		tg := newTestTarget(t, p, TargetConfig{URL: rc.URL, Headers: http.Header{
			"X-Retry-After": {tt.value}, "X-Code": {strconv.Itoa(tt.status)},
		}})
		res := Send(context.Background(), tg, testMessage(), t0)
		if res.RetryAfter != tt.want {
			t.Errorf("%d Retry-After %q: got %s, want %s", tt.status, tt.value, res.RetryAfter, tt.want)
		}
	}
}

func TestLatencyFromInjectedClock(t *testing.T) {
	p, clk := newTestPool(t)
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		clk.Step(250 * time.Millisecond)
		w.WriteHeader(200)
	})
	rc.Start()
	tg := newTestTarget(t, p, TargetConfig{URL: rc.URL})
	if res := Send(context.Background(), tg, testMessage(), t0); res.Latency != 250*time.Millisecond {
		t.Errorf("latency %s, want 250ms as the clock moved", res.Latency)
	}
}
