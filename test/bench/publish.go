package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// publisher posts events to the dispatcher's publishing API as a producer in the
// cluster would, with keep-alive connections.
type publisher struct {
	base string // http://host:port/v1/namespaces/
	hc   *http.Client
	// refused counts the requests the dispatcher refused close to its memory
	// limit (a 503 with a long Retry-After) at least once.
	refused atomic.Int64
}

func newPublisher(apiAddr string) *publisher {
	return &publisher{
		base: "http://" + apiAddr + "/v1/namespaces/",
		hc: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 256,
				IdleConnTimeout:     90 * time.Second,
				DisableCompression:  true,
			},
		},
	}
}

func (p *publisher) close() { p.hc.CloseIdleConnections() }

// one publishes a single event (the JSON of one event object).
func (p *publisher) one(ctx context.Context, ns string, event []byte) error {
	return p.post(ctx, p.base+ns+"/events", event)
}

// batch publishes {"events": [...]}.
func (p *publisher) batch(ctx context.Context, ns string, body []byte) error {
	return p.post(ctx, p.base+ns+"/events:batch", body)
}

// post sends body and wants a 202. A 503 (the queue could not store the events right
// now) or a connection error is retried a few times with the same ids, which the
// dispatcher de-duplicates, as its API asks producers to do. A 503 whose Retry-After
// is longer than the usual 2 s (the dispatcher refuses events close to its memory
// limit) is retried after that delay for up to maxRefusedFor, as a producer should.
func (p *publisher) post(ctx context.Context, url string, body []byte) error {
	const (
		attempts      = 5
		maxRefusedFor = 3 * time.Minute
	)
	var (
		last    error
		wait    time.Duration
		refused time.Time
	)
	for i := 0; i < attempts; {
		if wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			last = err
			i++
			wait = time.Duration(i) * 500 * time.Millisecond
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			if bytes.Contains(msg, []byte(`"duplicate":true`)) && i == 0 {
				// A first attempt can only be a duplicate if an id was reused;
				// so can one after refusals only, which store nothing.
				return fmt.Errorf("POST %s: the dispatcher took a new event for a duplicate: %s", url, strings.TrimSpace(string(msg)))
			}
			return nil
		case http.StatusServiceUnavailable:
			last = fmt.Errorf("POST %s: 503 %s", url, strings.TrimSpace(string(msg)))
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra > 2 {
				if refused.IsZero() {
					refused = time.Now()
					p.refused.Add(1)
				}
				if time.Since(refused) < maxRefusedFor {
					wait = time.Duration(ra) * time.Second
					continue
				}
			}
			i++
			wait = time.Duration(i) * 500 * time.Millisecond
		default:
			return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(msg)))
		}
	}
	return fmt.Errorf("after %d attempts: %w", attempts, last)
}

// payload builds events whose data is dataBytes long: {"seq":"…","sent_ns":…,"pad":"…"}.
// sent_ns is when the producer sent it, which the receiver subtracts from the arrival.
type payload struct {
	dataBytes int
	pad       string
}

func newPayload(dataBytes int) payload {
	return payload{dataBytes: dataBytes, pad: strings.Repeat("x", dataBytes)}
}

// data appends the event data to b.
func (p payload) data(b []byte, seq int, sent time.Time) []byte {
	start := len(b)
	b = append(b, `{"seq":"`...)
	b = appendPadded(b, seq, 8)
	b = append(b, `","sent_ns":`...)
	b = strconv.AppendInt(b, sent.UnixNano(), 10)
	b = append(b, `,"pad":"`...)
	if n := p.dataBytes - (len(b) - start) - len(`"}`); n > 0 {
		b = append(b, p.pad[:n]...)
	}
	return append(b, `"}`...)
}

// event appends one event object to b.
func (p payload) event(b []byte, typ, id string, seq int, sent time.Time) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","id":"`...)
	b = append(b, id...)
	b = append(b, `","data":`...)
	b = p.data(b, seq, sent)
	return append(b, '}')
}

func appendPadded(b []byte, n, width int) []byte {
	s := strconv.Itoa(n)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// batch appends to buf[:0] the body of one events:batch request: events lo
// to hi-1 of group, each of the type typeOf gives for its sequence number.
func (p payload) batch(buf []byte, lo, hi int, group string, typeOf func(seq int) string, sent time.Time) []byte {
	buf = append(buf[:0], `{"events":[`...)
	for s := lo; s < hi; s++ {
		if s > lo {
			buf = append(buf, ',')
		}
		buf = p.event(buf, typeOf(s), eventID(group, s), s, sent)
	}
	return append(buf, "]}"...)
}

// eventID is "<group>-<seq>": the receiver files arrivals by group.
func eventID(group string, seq int) string {
	return group + "-" + strconv.Itoa(seq)
}
