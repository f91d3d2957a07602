package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Verdict is what an attempt means for the message and its endpoint.
type Verdict uint8

const (
	// Retry: the attempt failed; Policy.Next says whether and when to try
	// again.
	Retry Verdict = iota
	// Delivered: the receiver answered 2xx.
	Delivered
	// Failed: the message can never be sent as it is (it is malformed);
	// retrying cannot help.
	Failed
	// Abort: the receiver answered webhook-delivery: abort-message on a
	// failure; stop retrying this message.
	Abort
	// DisableEndpoint: the receiver answered 410 Gone or
	// webhook-delivery: disable; stop sending to the endpoint until a
	// person re-enables it. If StatusCode is 2xx this message itself was
	// delivered.
	DisableEndpoint
)

func (v Verdict) String() string {
	switch v {
	case Retry:
		return "Retry"
	case Delivered:
		return "Delivered"
	case Failed:
		return "Failed"
	case Abort:
		return "Abort"
	case DisableEndpoint:
		return "DisableEndpoint"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Result is the outcome of one attempt.
type Result struct {
	// StatusCode is 0 when no response arrived.
	StatusCode int
	// Latency runs from sending the request to receiving the response
	// headers or the error.
	Latency time.Duration
	// Err is the transport error, if any. It names the endpoint by scheme
	// and host only, never with path, query or credentials.
	Err error
	// Body is the start of the response body, at most MaxResponseBody
	// bytes, with the endpoint's auth values and the attempt's signatures
	// blanked out.
	Body          []byte
	BodyTruncated bool
	// Headers are the request's headers as the attempt log may keep them:
	// "Name: value" lines, with every credential and the signatures masked
	// (see shown.go). Empty when no request was made.
	Headers string
	// RetryAfter is the receiver's Retry-After, relative to when the
	// response arrived; zero when absent or unparsable.
	RetryAfter time.Duration
	// Throttled marks a 429, a 503 or a timeout: the receiver is
	// overloaded, so the next attempt waits at least ThrottleMinDelay.
	Throttled bool
	Verdict   Verdict
}

const (
	// MaxResponseBody is how much of a response is kept for the attempt log.
	MaxResponseBody = 20 << 10
	// maxDrain bounds how much more is read, only so that the connection
	// can be reused; a receiver sending more costs a new connection rather
	// than unbounded reading.
	maxDrain = 256 << 10
)

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, MaxResponseBody+1); return &b }}

// Send makes one delivery attempt of msg to t. attemptTime is the
// webhook-timestamp and the time signed.
//
// If ctx is cancelled (the dispatcher is shutting down) the Result carries
// ctx's error and Verdict Retry; the caller should not count the attempt.
func Send(ctx context.Context, t *Target, msg Message, attemptTime time.Time) Result {
	return SendTimeout(ctx, t, msg, attemptTime, 0)
}

// SendTimeout is Send with the attempt timeout overridden, for a subscription
// whose delivery timeout differs from its endpoint's; zero keeps the
// target's. It can lengthen the timeout as well as shorten it, which a
// deadline on ctx could not.
func SendTimeout(ctx context.Context, t *Target, msg Message, attemptTime time.Time, timeout time.Duration) Result {
	if err := msg.validate(); err != nil {
		return Result{Err: err, Verdict: Failed}
	}
	body := AppendBody(make([]byte, 0, msg.bodySize()), &msg)

	if timeout <= 0 {
		timeout = t.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	header := t.requestHeader(&msg, attemptTime, body)
	var token string
	if t.oauth != nil {
		var err error
		if token, err = t.oauth.token(ctx, ""); err != nil {
			return Result{Err: err, Throttled: isTimeout(err), Verdict: Retry}
		}
		header["Authorization"] = []string{"Bearer " + token}
	}

	start := t.clock.Now()
	resp, err := t.roundTrip(ctx, header, body)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && t.oauth != nil {
		// The receiver refused the token (revoked, or expired early): fetch a new
		// one, once, and send again.
		_, _ = readBody(resp)
		var terr error
		if token, terr = t.oauth.token(ctx, token); terr != nil {
			return Result{Err: terr, Latency: t.clock.Since(start), Throttled: isTimeout(terr), Verdict: Retry}
		}
		header = maps.Clone(header)
		header["Authorization"] = []string{"Bearer " + token}
		start = t.clock.Now()
		resp, err = t.roundTrip(ctx, header, body) //nolint:bodyclose // closed by readBody below, like the first response
	}
	res := Result{Latency: t.clock.Since(start)}
	if err != nil {
		res.Headers = t.shownHeaders(header, token != "", 0)
		res.Err = fmt.Errorf("POST %s: %w", t.display, redactURLError(err))
		res.Throttled = isTimeout(err)
		res.Verdict = Retry
		return res
	}
	res.StatusCode = resp.StatusCode
	res.Headers = t.shownHeaders(header, token != "", resp.ProtoMajor)
	res.Body, res.BodyTruncated = readBody(resp)
	res.Body = t.scrub(res.Body)
	res.Body = scrubSignatures(res.Body, header)
	if token != "" && bytes.Contains(res.Body, []byte(token)) {
		res.Body = bytes.ReplaceAll(res.Body, []byte(token), []byte("[redacted]"))
	}

	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	instruction := strings.ToLower(strings.TrimSpace(resp.Header.Get("Webhook-Delivery")))
	switch {
	case instruction == "disable" || resp.StatusCode == http.StatusGone:
		res.Verdict = DisableEndpoint
	case ok:
		res.Verdict = Delivered
	case instruction == "abort-message":
		res.Verdict = Abort
	default:
		res.Verdict = Retry
	}
	if !ok {
		res.Throttled = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable
		res.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), start.Add(res.Latency))
	}
	return res
}

// roundTrip sends one request of an attempt.
func (t *Target) roundTrip(ctx context.Context, header http.Header, body []byte) (*http.Response, error) {
	req := (&http.Request{
		Method:        http.MethodPost,
		URL:           t.reqURL, // shared by every request; net/http only reads it
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
		Host:          t.reqURL.Host,
	}).WithContext(ctx)
	// The transport, not an http.Client: a RoundTripper never follows a
	// redirect, and skipping the client's redirect bookkeeping saves a
	// copy of the headers on every attempt.
	return t.entry.transport.RoundTrip(req)
}

// requestHeader builds the headers of one attempt. hookline's own headers
// are written after the configured ones, so no configuration can replace
// them even if validation missed one.
func (t *Target) requestHeader(msg *Message, attemptTime time.Time, body []byte) http.Header {
	ts := attemptTime.Unix()
	n := len(t.header) + 5
	if msg.Format == CloudEventsBinary {
		n += 5
	}
	h := make(http.Header, n)
	for k, v := range t.header {
		h[k] = v
	}
	// One backing array for every value: a header map of single-value
	// slices is otherwise one allocation per header on the hot path.
	vals := make([]string, 0, 9)
	set := func(key, value string) {
		vals = append(vals, value)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set("Content-Type", msg.contentType())
	set("Webhook-Id", msg.WebhookID)
	set("Webhook-Timestamp", strconv.FormatInt(ts, 10))
	set("Webhook-Signature", t.sign(msg.WebhookID, time.Unix(ts, 0), body))
	if msg.Format == CloudEventsBinary {
		set("Ce-Specversion", ceSpecVersion)
		set("Ce-Id", ceHeaderValue(msg.ID))
		set("Ce-Source", ceHeaderValue(msg.Source()))
		set("Ce-Type", ceHeaderValue(msg.Type))
		set("Ce-Time", string(msg.Time.UTC().AppendFormat(make([]byte, 0, rfc3339Len), time.RFC3339Nano)))
	}
	if msg.TraceParent != "" {
		set("Traceparent", msg.TraceParent)
	}
	// Present but empty: net/http then treats the POST as idempotent and
	// may resend it on a fresh connection when a reused keep-alive
	// connection turns out to be closed, instead of failing the attempt.
	// The receiver de-duplicates on webhook-id anyway.
	h["X-Idempotency-Key"] = nil
	return h
}

// readBody keeps up to MaxResponseBody bytes and drains a bounded amount
// more so that the connection goes back to the pool.
func readBody(resp *http.Response) ([]byte, bool) {
	defer resp.Body.Close()
	if cl := resp.ContentLength; cl == 0 {
		return nil, false
	} else if cl > 0 && cl <= MaxResponseBody {
		b := make([]byte, cl)
		n, _ := io.ReadFull(resp.Body, b)
		return b[:n], false
	}
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	n, _ := io.ReadFull(resp.Body, *bp)
	truncated := n > MaxResponseBody
	if truncated {
		n = MaxResponseBody
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	}
	if n == 0 {
		return nil, false
	}
	return bytes.Clone((*bp)[:n]), truncated
}

func (t *Target) scrub(b []byte) []byte {
	for _, s := range t.secrets {
		if bytes.Contains(b, s) {
			b = bytes.ReplaceAll(b, s, []byte("[redacted]"))
		}
	}
	return b
}

// redactURLError drops the URL that net/http puts in its errors: it is the
// request URL, query string and API key included.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseRetryAfter reads delay-seconds or an HTTP-date. A date is measured
// from when the response arrived, by our clock: the receiver's clock may
// differ, but the receiver chose the date knowing only that.
func parseRetryAfter(v string, received time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	secs, err := strconv.ParseUint(v, 10, 64)
	if err == nil && secs > uint64(math.MaxInt64/int64(time.Second)) || errors.Is(err, strconv.ErrRange) {
		// Absurd, but a number: the policy's cap will bring it down.
		return time.Duration(math.MaxInt64)
	}
	if err == nil {
		return time.Duration(secs) * time.Second //nolint:gosec // G115: secs <= MaxInt64/time.Second, checked above
	}
	if at, err := http.ParseTime(v); err == nil {
		if d := at.Sub(received); d > 0 {
			return d
		}
	}
	return 0
}
