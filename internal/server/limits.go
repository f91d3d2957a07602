package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Defaults of Limits: what one client may cost the dispatcher before it is
// cut off or turned away.
const (
	DefaultReadHeaderTimeout  = 10 * time.Second
	DefaultBodyReadTimeout    = 30 * time.Second
	DefaultMinBodyRate        = 4 << 10 // bytes per second, after bodyGrace
	DefaultWriteTimeout       = time.Minute
	DefaultIdleTimeout        = 2 * time.Minute
	DefaultMaxHeaderBytes     = 64 << 10
	DefaultMaxConcurrent      = 1024
	DefaultMaxConnsPerClient  = 256
	DefaultMaxJSONDepth       = 64
	excessConnRetryAfter      = "1"
	excessConnWriteDeadline   = time.Second
	excessConnDrainBytes      = 64 << 10
	bodyGrace                 = 2 * time.Second
	initialBodyBufferCapacity = 4 << 10
)

// Limits bound what the dispatcher's listeners give one connection, one
// client address and all requests together, so that slow or hostile clients
// cannot hold memory, sockets or goroutines for as long as they like. Zero
// values take the defaults.
type Limits struct {
	// ReadHeaderTimeout is how long a client has to send a request's headers.
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout bounds reading a request's body, however fast it comes.
	BodyReadTimeout time.Duration
	// MinBodyRate, in bytes per second, is the slowest a body may arrive,
	// averaged from bodyGrace after the handler starts reading it.
	MinBodyRate int64
	// WriteTimeout bounds the time from the end of the headers to the end of
	// the response.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int
	// MaxConcurrent bounds the requests served at once; past it a request
	// gets 503 with Retry-After. /healthz and /readyz are not counted, so
	// probes see the process, not its load.
	MaxConcurrent int
	// MaxConnsPerClient bounds the open connections from one IP address; a
	// connection past it gets 429 with Retry-After and is closed.
	MaxConnsPerClient int
}

// WithDefaults returns l with every zero value replaced by its default.
func (l Limits) WithDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.BodyReadTimeout, DefaultBodyReadTimeout)
	def(&l.WriteTimeout, DefaultWriteTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MinBodyRate <= 0 {
		l.MinBodyRate = DefaultMinBodyRate
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxConcurrent <= 0 {
		l.MaxConcurrent = DefaultMaxConcurrent
	}
	if l.MaxConnsPerClient <= 0 {
		l.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	return l
}

// NewHTTPServer returns the http.Server every dispatcher listener uses: h
// behind the concurrency bound, with the timeouts and header limit of l. The
// body deadlines are the handler's (readBody); ReadTimeout is only the
// backstop for handlers that read bodies otherwise.
func NewHTTPServer(h http.Handler, l Limits) *http.Server {
	l = l.WithDefaults()
	return &http.Server{
		Handler:           concurrencyLimit(h, l.MaxConcurrent),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadHeaderTimeout + l.BodyReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}

// concurrencyLimit answers 503 past max requests in flight, rather than
// queueing them: a producer retries, and a queue would only hold memory.
func concurrencyLimit(h http.Handler, max int) http.Handler {
	slots := make(chan struct{}, max)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			h.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			h.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", retryAfter)
			writeError(w, &fieldError{status: http.StatusServiceUnavailable, message: "the dispatcher is serving as many requests as it allows at once; retry shortly"})
		}
	})
}

// LimitListener bounds the open connections per client IP address on ln. A
// connection past the bound is answered 429 with Retry-After and closed by
// the listener itself, before any request is read, so it costs no handler
// goroutine. Wrap a TLS listener (not the TCP one under it) so that the
// answer is sent over TLS.
func LimitListener(ln net.Listener, maxPerClient int) net.Listener {
	if maxPerClient <= 0 {
		maxPerClient = DefaultMaxConnsPerClient
	}
	return &limitListener{Listener: ln, max: maxPerClient, open: map[string]int{}}
}

type limitListener struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[string]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientIP(c.RemoteAddr())
		l.mu.Lock()
		n := l.open[client]
		if n >= l.max {
			l.mu.Unlock()
			go refuseExcess(c, l.max)
			continue
		}
		l.open[client] = n + 1
		l.mu.Unlock()
		return &countedConn{Conn: c, release: func() { l.release(client) }}, nil
	}
}

func (l *limitListener) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[client] <= 1 {
		delete(l.open, client)
		return
	}
	l.open[client]--
}

// clientIP is the address part of a remote address: one client may use many
// ports.
func clientIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// refuseExcess answers 429 on a connection over its client's bound. It reads
// what the client sent (briefly, and a bounded amount) after answering, so
// that closing does not reset the connection before the client has read the
// answer.
func refuseExcess(c net.Conn, max int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(excessConnWriteDeadline))
	body := `{"error":{"status":429,"reason":"TooManyRequests","message":"this client address has ` + strconv.Itoa(max) + ` connections open to the dispatcher, as many as it allows; reuse them (keep-alive) or retry shortly"}}` + "\n"
	resp := "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: " + excessConnRetryAfter +
		"\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	w := bufio.NewWriterSize(c, len(resp))
	if _, err := w.WriteString(resp); err != nil || w.Flush() != nil {
		return
	}
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, excessConnDrainBytes))
}

// bodyReader reads a request body with a deadline that moves with what has
// arrived: byte n must arrive within bodyGrace + n/MinBodyRate of the start,
// and the whole body within BodyReadTimeout. A body that trickles or stalls
// fails with a timeout instead of holding the connection.
type bodyReader struct {
	body     io.Reader
	rc       *http.ResponseController
	start    time.Time
	hardStop time.Time
	rate     int64
	read     int64
}

func (b *bodyReader) Read(p []byte) (int, error) {
	d := b.start.Add(bodyGrace + time.Duration(float64(b.read)/float64(b.rate)*float64(time.Second)))
	if d.After(b.hardStop) {
		d = b.hardStop
	}
	// A ResponseWriter without deadlines (a test recorder) is read without them.
	_ = b.rc.SetReadDeadline(d)
	n, err := b.body.Read(p)
	b.read += int64(n)
	return n, err
}

// readAll reads up to limit+1 bytes of r, growing its buffer only as bytes
// arrive: an announced length (size, the Content-Length; -1 when unknown) is
// never trusted with an allocation larger than initialBodyBufferCapacity,
// but a smaller one is the buffer's size. A single ~1 KiB event then costs
// 1 KiB, not 4 (make bench's latency phase: readAll was the largest
// allocation in the dispatcher, 4.6 KB of the ~54 KB a published event
// cost).
func readAll(r io.Reader, limit, size int64) ([]byte, error) {
	first := min(initialBodyBufferCapacity, limit+1)
	if size >= 0 && size < first {
		// One byte more, to read the end without growing.
		first = size + 1
	}
	buf := make([]byte, 0, first)
	for int64(len(buf)) <= limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		room := buf[len(buf):min(int64(cap(buf)), limit+1)]
		n, err := r.Read(room)
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// isTimeout reports a read that failed on its deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
