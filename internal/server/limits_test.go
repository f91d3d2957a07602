package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/server"
)

// serveLimited serves h as the dispatcher does (NewHTTPServer behind
// LimitListener) on a loopback port, and returns its address.
func serveLimited(t testing.TB, h http.Handler, l server.Limits) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l = l.WithDefaults()
	srv := server.NewHTTPServer(h, l)
	go func() { _ = srv.Serve(server.LimitListener(ln, l.MaxConnsPerClient)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func newLimitedHandler(t testing.TB, pub server.Publisher, l server.Limits) http.Handler {
	t.Helper()
	h, err := server.NewHandler(server.Options{Publisher: pub, Authorizer: server.AllowAll{}, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// dialFrom connects to addr from a given loopback source address, so that a
// test can be many clients: all of 127.0.0.0/8 is this host.
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing from %s: %v", src, err)
	}
	return c
}

// awaitClosedByServer reads c until the server closes it; a read that runs
// into the test's own deadline means the server kept the connection open.
// It returns what the server sent.
func awaitClosedByServer(c net.Conn, within time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), fmt.Errorf("the server kept the connection open for %s", within)
	}
	return string(b), nil
}

// heapAndStacks is the memory the Go runtime holds for objects and
// goroutine stacks, after a collection: what slow clients would grow.
func heapAndStacks() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

func publishTo(addr, body string) (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+addr+"/v1/namespaces/team-a/events", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestSlowAndStalledClients holds 500 connections that never finish their
// headers and 500 uploads that announce 1 MiB, send 16 KiB and go silent, all
// at once from 100 client addresses. Memory bound: the in-process heap plus
// goroutine stacks (not RSS) grow by less than 64 MiB, where allocating the
// announced lengths alone would take 500 MiB. Healthy publishers keep getting
// 202, and the server closes every slow connection itself.
func TestSlowAndStalledClients(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 1,000 connections")
	}
	const slow, stalled = 500, 500
	const bound = 64 << 20
	pub := &recorder{}
	limits := server.Limits{ReadHeaderTimeout: 3 * time.Second, BodyReadTimeout: 6 * time.Second}
	addr := serveLimited(t, newLimitedHandler(t, pub, limits), limits)

	before := heapAndStacks()
	conns := make([]net.Conn, 0, slow+stalled)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := range slow {
		c := dialFrom(t, fmt.Sprintf("127.0.1.%d", i%50+1), addr)
		conns = append(conns, c)
		if _, err := io.WriteString(c, "POST /v1/namespaces/team-a/events HTTP/1.1\r\nHost: hookline\r\nContent-Type: appl"); err != nil {
			t.Fatal(err)
		}
	}
	chunk := strings.Repeat("x", 16<<10)
	for i := range stalled {
		c := dialFrom(t, fmt.Sprintf("127.0.2.%d", i%50+1), addr)
		conns = append(conns, c)
		if _, err := io.WriteString(c, "POST /v1/namespaces/team-a/events:batch HTTP/1.1\r\nHost: hookline\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"+`{"events":[{"type":"a.b","data":"`+chunk); err != nil {
			t.Fatal(err)
		}
	}

	// Healthy publishers are served while all of them are held.
	for i := range 20 {
		status, err := publishTo(addr, fmt.Sprintf(`{"type":"invoice.paid","data":{"n":%d}}`, i))
		if err != nil || status != http.StatusAccepted {
			t.Fatalf("healthy publish %d during the attack: %d, %v", i, status, err)
		}
	}
	grown := int64(heapAndStacks()) - int64(before)
	t.Logf("heap+stacks grew by %.1f MiB holding %d slow connections and %d stalled uploads (bound %d MiB)", float64(grown)/(1<<20), slow, stalled, bound>>20)
	if grown > bound {
		t.Errorf("heap+stacks grew by %d MiB, more than %d MiB", grown>>20, bound>>20)
	}

	// Every slow connection is closed by the server: headers by the header
	// timeout, bodies by the minimum rate.
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := awaitClosedByServer(c, 20*time.Second)
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
				return
			}
			if i >= slow && !strings.HasPrefix(got, "HTTP/1.1 408") {
				errs <- fmt.Errorf("stalled upload %d: answered %q, want a 408", i, firstLine(got))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.events) != 20 {
		t.Errorf("%d events stored, want the 20 healthy ones only", len(pub.events))
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// TestTricklingBodyIsCutOff sends a body at 100 bytes per second, well under
// the minimum rate: it gets a 408 naming the rate, and nothing is stored.
func TestTricklingBodyIsCutOff(t *testing.T) {
	t.Parallel()
	pub := &recorder{}
	limits := server.Limits{MinBodyRate: 1 << 10, BodyReadTimeout: 20 * time.Second}
	addr := serveLimited(t, newLimitedHandler(t, pub, limits), limits)
	c := dialFrom(t, "127.0.0.1", addr)
	defer c.Close()
	body := `{"type":"invoice.paid","data":"` + strings.Repeat("x", 10_000) + `"}`
	if _, err := fmt.Fprintf(c, "POST /v1/namespaces/team-a/events HTTP/1.1\r\nHost: hookline\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(body); i += 10 {
			if _, err := io.WriteString(c, body[i:i+10]); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	got, err := awaitClosedByServer(c, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "HTTP/1.1 408") || !strings.Contains(got, "1024 bytes per second") {
		t.Fatalf("answered %q", got)
	}
	_ = c.Close()
	<-done
	if len(pub.events) != 0 {
		t.Fatalf("%d events stored", len(pub.events))
	}
}

// TestConnectionsPerClient opens one connection past the bound from one
// address: it gets 429 with Retry-After, while another address is served.
func TestConnectionsPerClient(t *testing.T) {
	t.Parallel()
	pub := &recorder{}
	limits := server.Limits{MaxConnsPerClient: 8}
	addr := serveLimited(t, newLimitedHandler(t, pub, limits), limits)
	var held []net.Conn
	for range 8 {
		held = append(held, dialFrom(t, "127.0.3.1", addr))
	}
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	// The listener counts a connection when it accepts it; wait until the
	// eight are counted by seeing the ninth refused.
	var got string
	for deadline := time.Now().Add(10 * time.Second); ; {
		c := dialFrom(t, "127.0.3.1", addr)
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: hookline\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode == http.StatusTooManyRequests {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = resp.Header.Get("Retry-After") + " " + string(b)
			_ = c.Close()
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the ninth connection from one address was not refused: %v", err)
		}
	}
	if !strings.HasPrefix(got, "1 ") || !strings.Contains(got, "8 connections open") {
		t.Errorf("429 answer %q", got)
	}
	c := dialFrom(t, "127.0.3.2", addr)
	defer c.Close()
	event := `{"type":"invoice.paid","data":{"n":1}}`
	_, _ = fmt.Fprintf(c, "POST /v1/namespaces/team-a/events HTTP/1.1\r\nHost: hookline\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(event), event)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("another address: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestConcurrentRequests holds the only request slots with stalled uploads:
// the next request gets 503 with Retry-After, and probes still answer.
func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	pub := &recorder{}
	limits := server.Limits{MaxConcurrent: 2}
	addr := serveLimited(t, newLimitedHandler(t, pub, limits), limits)
	for range 2 {
		c := dialFrom(t, "127.0.0.1", addr)
		defer c.Close()
		_, _ = io.WriteString(c, "POST /v1/namespaces/team-a/events HTTP/1.1\r\nHost: hookline\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	}
	// Requests made before the server has taken up both slow ones are
	// served; the one answered 503 must store nothing.
	var resp *http.Response
	storedBefore := 0
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		storedBefore = pub.count()
		req, rerr := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/v1/namespaces/team-a/events", strings.NewReader(`{"type":"a.b","data":1}`))
		if rerr != nil {
			t.Fatal(rerr)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := http.DefaultClient.Do(req)
	if err != nil || probe.StatusCode != http.StatusOK {
		t.Fatalf("/healthz under load: %v %v", probe, err)
	}
	probe.Body.Close()
	if n := pub.count(); n != storedBefore {
		t.Fatalf("the request refused with 503 stored an event (%d events, %d before it)", n, storedBefore)
	}
}

// TestHeaderLimit sends 100 KiB of headers: 431, nothing stored.
func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	pub := &recorder{}
	addr := serveLimited(t, newLimitedHandler(t, pub, server.Limits{}), server.Limits{})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/v1/namespaces/team-a/events", strings.NewReader(`{"type":"a.b","data":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Padding", strings.Repeat("p", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("100 KiB of headers: %d", resp.StatusCode)
	}
	if len(pub.events) != 0 {
		t.Fatalf("%d events stored", len(pub.events))
	}
}
