package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookline/hookline/internal/ssrf"
)

var (
	testKey = []byte("0123456789abcdef0123456789abcdef")
	// t0 is a fixed attempt time: nothing in these tests reads the real
	// clock to decide an outcome.
	t0 = time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
)

// hmacSigner signs as Standard Webhooks does, so the receiver can check the
// signature against exactly the bytes and headers it got.
func hmacSigner(msgID string, ts time.Time, body []byte) string {
	return "v1," + sign(msgID, strconv.FormatInt(ts.Unix(), 10), body)
}

func sign(id, ts string, body []byte) string {
	m := hmac.New(sha256.New, testKey)
	fmt.Fprintf(m, "%s.%s.", id, ts)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// loopback allows the test servers' addresses, which the default policy
// refuses like any other loopback address.
func loopback(t testing.TB) ssrf.Policy {
	t.Helper()
	p, err := ssrf.ParsePolicy([]string{"127.0.0.0/8", "::1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testMessage() Message {
	return Message{
		ID:           "inv_2041-paid",
		WebhookID:    "msg_2Qe7mXbK1",
		Type:         "invoice.paid",
		Time:         time.Date(2026, 11, 26, 19, 59, 58, 123000000, time.UTC),
		Data:         []byte(`{"invoice":"in_1","amount":4200,"lines":[{"sku":"a"}]}`),
		Namespace:    "billing",
		Subscription: "invoices-to-erp",
	}
}

type captured struct {
	Header http.Header
	Body   []byte
	Query  string
	Proto  int
	TLS    bool
	Peer   string // client certificate subject CN under mTLS
}

// receiver is a loopback webhook receiver that records every request and
// answers with whatever respond says.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []captured
	conns    atomic.Int64
	respond  func(w http.ResponseWriter, r *http.Request, n int)
	requests atomic.Int64
}

func newReceiver(t testing.TB, respond func(w http.ResponseWriter, r *http.Request, n int)) *receiver {
	rc := &receiver{respond: respond}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(rc.handle))
	rc.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.conns.Add(1)
		}
	}
	// Server-side errors (refused handshakes, mostly) are expected in these
	// tests; they go to the test log instead of stderr.
	rc.Config.ErrorLog = log.New(testLogWriter{t}, "receiver: ", 0)
	t.Cleanup(rc.Close)
	return rc
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (rc *receiver) handle(w http.ResponseWriter, r *http.Request) {
	n := int(rc.requests.Add(1))
	body, _ := io.ReadAll(r.Body)
	c := captured{Header: r.Header.Clone(), Body: body, Query: r.URL.RawQuery, Proto: r.ProtoMajor, TLS: r.TLS != nil}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		c.Peer = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	rc.mu.Lock()
	rc.got = append(rc.got, c)
	rc.mu.Unlock()
	if rc.respond == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.respond(w, r, n)
}

func (rc *receiver) last(t testing.TB) captured {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) == 0 {
		t.Fatal("receiver got no request")
	}
	return rc.got[len(rc.got)-1]
}

func newTestPool(t testing.TB) (*Pool, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(t0)
	p := NewPool(PoolOptions{Clock: clk})
	t.Cleanup(p.CloseIdleConnections)
	return p, clk
}

func newTestTarget(t testing.TB, p *Pool, cfg TargetConfig) *Target {
	t.Helper()
	if cfg.Sign == nil {
		cfg.Sign = hmacSigner
	}
	if cfg.SSRF.Allow == nil {
		cfg.SSRF = loopback(t)
	}
	tg, err := p.NewTarget(cfg)
	if err != nil {
		t.Fatalf("NewTarget: %v", err)
	}
	t.Cleanup(tg.Close)
	return tg
}
