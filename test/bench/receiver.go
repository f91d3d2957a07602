package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/internal/signing"
)

// sink is the loopback receiver the healthy endpoints, the fan-out endpoint and the
// baseline all post to. It does what the benchmark needs and no more: it records the
// arrival of every delivery once per webhook-id, files it under the producer's event id
// (from the body or ce-id, not the webhook-id, which is a hash), counts repeats, keeps the
// latency carried in the payload, and verifies the signature of a sample. It stores no
// bodies, so a long run does not grow the benchmark's own memory with payloads.
//
// internal/receiver verifies every request and keeps every body; at tens of thousands
// of deliveries a second that would make the receiver, which shares the two cores with
// the dispatcher, part of what is measured.
type sink struct {
	verifyEvery int64

	mu     sync.Mutex
	routes map[string]*route // by URL path
}

// route is what one endpoint's path received.
type route struct {
	secrets  []string
	requests int64
	verified int
	badSig   int
	sigErr   string
	// seen holds the webhook-ids received (prefixed with Ce-Source when there is one):
	// the dispatcher makes one per (namespace, event, subscription), so a repeat is a
	// duplicate delivery.
	seen       map[string]struct{}
	dups       int
	dupSamples []string
	groups     map[string]*group
}

// group is one phase's deliveries on a route: ids are "<group>-<seq>".
type group struct {
	count       int // unique arrivals
	dups        int
	first, last time.Time
	lat         []latSample
}

// latSample is one delivery's latency: its arrival minus the sent_ns its payload
// carries, kept with the send time so a phase can be looked at second by second.
type latSample struct {
	seq  int // the event's number in its phase, from its id
	sent time.Time
	lat  time.Duration
}

func newSink(verifyEvery int) *sink {
	return &sink{verifyEvery: int64(verifyEvery), routes: map[string]*route{}}
}

// addRoute makes path accept deliveries signed with secrets.
func (s *sink) addRoute(path string, secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[path] = &route{secrets: secrets, seen: map[string]struct{}{}, groups: map[string]*group{}}
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	now := time.Now()
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	// webhook-id is a hash of (namespace, event id, subscription): unique per
	// delivery and useless for telling which event arrived. The producer's id is the
	// ce-id header (CloudEvents binary) or the "id" of the body (Standard Webhooks,
	// CloudEvents structured).
	key := r.Header.Get(signing.HeaderID)
	if src := r.Header.Get("Ce-Source"); src != "" {
		key = src + "|" + key
	}
	id := r.Header.Get("Ce-Id")
	if id == "" {
		id = bodyID(body)
	}
	sent := sentNanos(body)

	s.mu.Lock()
	rt := s.routes[r.URL.Path]
	if rt == nil {
		s.mu.Unlock()
		http.Error(w, "no such route", http.StatusNotFound)
		return
	}
	rt.requests++
	verify := s.verifyEvery > 0 && (rt.requests-1)%s.verifyEvery == 0
	secrets := rt.secrets
	s.mu.Unlock()

	if verify {
		// Outside the lock: an HMAC over a kilobyte is the costliest thing done here.
		if err := signing.Verify(secrets, r.Header, body, now, 0); err != nil {
			s.mu.Lock()
			rt.badSig++
			rt.sigErr = err.Error()
			s.mu.Unlock()
			http.Error(w, "signature verification failed: "+err.Error(), http.StatusUnauthorized)
			return
		}
	}

	s.mu.Lock()
	if verify {
		rt.verified++
	}
	g := rt.group(groupOf(id))
	if _, dup := rt.seen[key]; dup {
		rt.dups++
		g.dups++
		if len(rt.dupSamples) < 5 {
			rt.dupSamples = append(rt.dupSamples, key)
		}
	} else {
		rt.seen[key] = struct{}{}
		g.count++
		if g.first.IsZero() {
			g.first = now
		}
		g.last = now
		if sent > 0 {
			at := time.Unix(0, sent)
			g.lat = append(g.lat, latSample{seq: seqOf(id), sent: at, lat: now.Sub(at)})
		}
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rt *route) group(name string) *group {
	g := rt.groups[name]
	if g == nil {
		g = &group{}
		rt.groups[name] = g
	}
	return g
}

// groupOf is the phase an event id belongs to: the part before the first '-'.
func groupOf(id string) string {
	if i := strings.IndexByte(id, '-'); i >= 0 {
		return id[:i]
	}
	return id
}

// seqOf is the number after the group in an event id, or -1.
func seqOf(id string) int {
	_, n, ok := strings.Cut(id, "-")
	if !ok {
		return -1
	}
	seq, err := strconv.Atoi(n)
	if err != nil {
		return -1
	}
	return seq
}

// bodyID reads the first "id" string of a JSON body: the event's top-level id in
// the Standard Webhooks and CloudEvents structured bodies, which put it before the
// data (and the benchmark's data has no "id"). Empty when there is none.
func bodyID(body []byte) string {
	const field = `"id":"`
	i := bytes.Index(body, []byte(field))
	if i < 0 {
		return ""
	}
	rest := body[i+len(field):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// sentNanos reads the "sent_ns" the benchmark's payloads carry, or 0.
func sentNanos(body []byte) int64 {
	const field = `"sent_ns":`
	i := bytes.Index(body, []byte(field))
	if i < 0 {
		return 0
	}
	var n int64
	for _, c := range body[i+len(field):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// groupStats is a copy of a group, safe to read after the lock is released.
type groupStats struct {
	Count, Dups int
	First, Last time.Time
	Lat         []latSample
}

func (s *sink) group(path, name string) groupStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.routes[path]
	if rt == nil {
		return groupStats{}
	}
	g := rt.groups[name]
	if g == nil {
		return groupStats{}
	}
	return groupStats{Count: g.count, Dups: g.dups, First: g.first, Last: g.last, Lat: append([]latSample(nil), g.lat...)}
}

// routeStats is what a route saw in all.
type routeStats struct {
	Requests   int64
	Unique     int
	Dups       int
	DupSamples []string
	Verified   int
	BadSig     int
	SigErr     string
}

func (s *sink) route(path string) routeStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.routes[path]
	if rt == nil {
		return routeStats{}
	}
	return routeStats{
		Requests: rt.requests, Unique: len(rt.seen), Dups: rt.dups, DupSamples: append([]string(nil), rt.dupSamples...),
		Verified: rt.verified, BadSig: rt.badSig, SigErr: rt.sigErr,
	}
}

// await waits until group name on path has want unique arrivals. It gives up after
// timeout, or once nothing new has arrived for stall, and returns what arrived.
func (s *sink) await(ctx context.Context, path, name string, want int, timeout, stall time.Duration) groupStats {
	deadline := time.Now().Add(timeout)
	lastCount, lastChange := -1, time.Now()
	for {
		g := s.group(path, name)
		if g.Count >= want {
			return g
		}
		if g.Count != lastCount {
			lastCount, lastChange = g.Count, time.Now()
		}
		if time.Now().After(deadline) || time.Since(lastChange) > stall || ctx.Err() != nil {
			return g
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// quiet waits until path has received nothing for idle, at most timeout.
func (s *sink) quiet(ctx context.Context, path string, idle, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	last, since := int64(-1), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n := s.route(path).Requests
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= idle {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hanger is the receiver that stopped answering: it reads the start of the body and holds every
// request until the dispatcher gives up on it (or the benchmark ends). Requests to the
// isolation control's endpoint (answeringEndpoint) it answers at once.
type hanger struct {
	release  chan struct{}
	arrivals atomic.Int64

	mu     sync.Mutex
	groups map[string]int
}

func newHanger() *hanger {
	return &hanger{release: make(chan struct{}), groups: map[string]int{}}
}

func (h *hanger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.arrivals.Add(1)
	// The body's first bytes name the event (see bodyID); the rest is left unread.
	head := make([]byte, 256)
	n, _ := io.ReadAtLeast(r.Body, head, len(head))
	id := r.Header.Get("Ce-Id")
	if id == "" {
		id = bodyID(head[:n])
	}
	h.mu.Lock()
	h.groups[groupOf(id)]++
	h.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, "/"+answeringEndpoint) {
		// The isolation control's endpoint: answered at once.
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	select {
	case <-r.Context().Done():
		return
	case <-h.release:
	}
	http.Error(w, "the benchmark is over", http.StatusServiceUnavailable)
}

func (h *hanger) seen(group string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.groups[group]
}

// server is an HTTP server on a loopback port. It counts the connections clients
// open: a client that keeps fewer idle connections than it has requests in flight
// dials again and again, which costs a TCP (and, in production, TLS) handshake each.
type server struct {
	srv   *http.Server
	addr  string
	conns atomic.Int64
}

func serveLoopback(ctx context.Context, h http.Handler) (*server, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on loopback: %w", err)
	}
	s := &server{
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute},
		addr: ln.Addr().String(),
	}
	s.srv.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

func (s *server) close() { _ = s.srv.Close() }
