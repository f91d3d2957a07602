package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/hookline/hookline/internal/process"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the dashboard.
type Options struct {
	// Kube is the user's kubeconfig: every read and write of the API server goes with
	// it, and so do the SelfSubjectAccessReviews.
	Kube *rest.Config
	// Dispatcher is the dispatcher's admin API, reached with the user's token.
	Dispatcher *Dispatcher
	// Namespaces, when set, are the namespaces shown; otherwise the namespaces the user
	// may list, or DefaultNamespace when they may not.
	Namespaces       []string
	DefaultNamespace string
	Log              logr.Logger
	Clock            clock.PassiveClock
	// Secret, when set, is the session secret (tests); otherwise a random one.
	Secret []byte
	// Proxied serves the dashboard from the dispatcher behind an authenticating proxy
	// (see proxied.go): no login and no session; each request must carry the user's
	// bearer token, and every call is made with it. Kube is then the dispatcher's own
	// configuration, whose credentials are used for API discovery only, and the listen
	// address need not be loopback.
	Proxied bool
}

// Server is the dashboard's HTTP handler.
type Server struct {
	opts   Options
	kube   client.Client
	cs     kubernetes.Interface
	disp   *Dispatcher
	pages  map[string]*template.Template
	mux    *http.ServeMux
	secret []byte
	// addr is the host:port the server listens on; requests naming another Host are
	// refused (DNS rebinding).
	addr string
}

const (
	cookieName = "hookline_ui"
	csrfField  = "csrf"
)

// New builds the dashboard for a server listening on addr (host:port, loopback).
func New(addr string, opts Options) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); !opts.Proxied && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("the dashboard listens on a loopback address only (it acts with your credentials), got %q: use 127.0.0.1:PORT", addr)
	}
	if opts.Kube == nil || opts.Dispatcher == nil {
		return nil, errors.New("the dashboard needs a kubeconfig and the dispatcher's address")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.DefaultNamespace == "" {
		opts.DefaultNamespace = "default"
	}
	kube, copts := opts.Kube, client.Options{Scheme: process.Scheme()}
	if opts.Proxied {
		// Discovery reads no object and runs outside any request, so it goes as the
		// dispatcher; everything else as the request's user.
		hc, err := rest.HTTPClientFor(opts.Kube)
		if err != nil {
			return nil, fmt.Errorf("connecting to the API server: %w", err)
		}
		if copts.Mapper, err = apiutil.NewDynamicRESTMapper(opts.Kube, hc); err != nil {
			return nil, fmt.Errorf("connecting to the API server: %w", err)
		}
		kube = userConfig(opts.Kube)
	}
	kc, err := client.New(kube, copts)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	cs, err := kubernetes.NewForConfig(kube)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	s := &Server{opts: opts, kube: kc, cs: cs, disp: opts.Dispatcher, addr: addr, secret: opts.Secret}
	if len(s.secret) == 0 {
		s.secret = make([]byte, 32)
		if _, err := rand.Read(s.secret); err != nil {
			return nil, err
		}
	}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// LoginURL is the one-time address to open: it sets the session cookie and goes to the
// namespaces page. Whoever has it can act with the user's credentials while the
// dashboard runs, so it is printed to the user's terminal only.
func (s *Server) LoginURL() string {
	return "http://" + s.addr + "/login?token=" + hex.EncodeToString(s.secret)
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.namespacesPage)
	mux.HandleFunc("GET /ns/{ns}", s.namespacePage)
	mux.HandleFunc("GET /ns/{ns}/endpoints/{name}", s.endpointPage)
	mux.HandleFunc("POST /ns/{ns}/endpoints/{name}/test", s.sendTest)
	mux.HandleFunc("POST /ns/{ns}/endpoints/{name}/enable", s.enable)
	mux.HandleFunc("POST /ns/{ns}/endpoints/{name}/rotate", s.rotate)
	mux.HandleFunc("GET /ns/{ns}/subscriptions/{name}", s.subscriptionPage)
	mux.HandleFunc("GET /ns/{ns}/subscriptions/{name}/attempt", s.attemptPage)
	mux.HandleFunc("POST /ns/{ns}/subscriptions/{name}/replay", s.replay)
	mux.HandleFunc("POST /ns/{ns}/subscriptions/{name}/resend", s.resend)
	mux.HandleFunc("GET /ns/{ns}/events", s.eventsPage)
	mux.HandleFunc("GET /ns/{ns}/events/{id}", s.eventPage)
	s.mux = mux
}

// ServeHTTP checks the Host, the session and, for a POST, the origin and the CSRF token,
// then serves the page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // no-referrer would make browsers send Origin: null with forms
	h.Set("Cache-Control", "no-store")
	if s.opts.Proxied {
		s.serveProxied(w, r)
		return
	}
	if !s.hostAllowed(r.Host) {
		http.Error(w, "This dashboard answers only to http://"+s.addr+" (the Host header names another site).", http.StatusMisdirectedRequest)
		return
	}
	if r.URL.Path == "/login" && r.Method == http.MethodGet {
		s.login(w, r)
		return
	}
	if !s.sessionOK(r) {
		http.Error(w, "No session: open the address `hookline ui` printed in your terminal (it carries a one-time token).", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := s.checkPost(r); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// hostAllowed accepts the address the server listens on, and localhost on its port.
func (s *Server) hostAllowed(host string) bool {
	if host == s.addr {
		return true
	}
	_, port, _ := net.SplitHostPort(s.addr)
	return host == "localhost:"+port
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	tok, err := hex.DecodeString(r.URL.Query().Get("token"))
	if err != nil || subtle.ConstantTimeCompare(tok, s.secret) != 1 {
		http.Error(w, "This login address is not this dashboard's: open the one `hookline ui` printed.", http.StatusUnauthorized)
		return
	}
	// Not Secure: the dashboard is plain HTTP on loopback, which never leaves the machine.
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.sessionValue(), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode}) //nolint:gosec // G124: see above
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) mac(purpose string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(purpose))
	return hex.EncodeToString(m.Sum(nil))
}

// sessionValue is the cookie's value: derived from the secret, so the cookie never
// equals the login token.
func (s *Server) sessionValue() string { return s.mac("session") }

func (s *Server) sessionOK(r *http.Request) bool {
	c, err := r.Cookie(cookieName)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.sessionValue())) == 1
}

// checkPost refuses a POST from another origin or without the page's CSRF token.
func (s *Server) checkPost(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		// Browsers send Origin with every POST; a missing one falls back to Referer.
		if ref, err := url.Parse(r.Referer()); err == nil && ref.Host != "" {
			origin = ref.Scheme + "://" + ref.Host
		}
	}
	if !s.sameOrigin(r, origin) {
		return fmt.Errorf("refused: this request comes from %q, not from the dashboard at %s", origin, r.Host)
	}
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("reading the form: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get(csrfField)), []byte(s.csrfToken(r))) != 1 {
		return errors.New("refused: the form's CSRF token is missing or stale; reload the page and try again")
	}
	return nil
}

// HTTPServer is the server with request timeouts that cmd/hookline serves the dashboard with.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second}
}
