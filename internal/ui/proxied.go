package ui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"k8s.io/client-go/rest"
)

// The dispatcher can serve the dashboard itself (hookline dispatcher --ui-listen), behind
// the cluster's authenticating proxy (oauth2-proxy and the like). There is no login token
// and no session then: every request carries the user's bearer token, which the proxy
// passes on in Authorization, and every call the page makes goes with that token — to
// the API server (reads, patches, SelfSubjectAccessReviews) and to the dispatcher's admin
// API (TokenReview and SubjectAccessReview) — so RBAC decides for that user exactly as
// with `hookline ui`. The dispatcher's own ServiceAccount is used for API discovery only,
// which reads no object. A request without a token is refused, never served as the
// dispatcher.

type userKey struct{}

// user is who a proxied request acts as.
type user struct {
	token      string
	remoteAddr string
}

func withUser(ctx context.Context, u user) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

func userOf(ctx context.Context) (user, bool) {
	u, ok := ctx.Value(userKey{}).(user)
	return u, ok && u.token != ""
}

var errNoUser = errors.New("no user's credentials on this request: the dashboard served by the dispatcher acts only as the user the proxy authenticated")

// asUser sends each request with the bearer token of the user its context carries, and
// refuses one without: the configuration it wraps has no credentials of its own.
type asUser struct{ next http.RoundTripper }

func (a asUser) RoundTrip(r *http.Request) (*http.Response, error) {
	u, ok := userOf(r.Context())
	if !ok {
		return nil, errNoUser
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+u.token)
	return a.next.RoundTrip(r)
}

// userConfig is cfg without its credentials, sending the request's user's token instead.
func userConfig(cfg *rest.Config) *rest.Config {
	uc := rest.AnonymousClientConfig(cfg)
	uc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return asUser{rt} })
	// One client serves every user: client-go's default of 5 requests a second would be
	// shared by all of them. The API server's priority and fairness limits each user.
	uc.QPS, uc.Burst = max(cfg.QPS, 50), max(cfg.Burst, 100)
	return uc
}

// proxiedBearer is the token the authenticating proxy passed on.
func proxiedBearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

const noProxiedUser = "This dashboard is served by the hookline dispatcher behind an authenticating proxy, " +
	"and this request carries no user's credentials (an \"Authorization: Bearer <token>\" header the API server accepts). " +
	"Sign in through the proxy, and have the proxy pass the user's token on (oauth2-proxy: --pass-authorization-header); " +
	"or run `hookline ui` on your machine."

// serveProxied serves a request of the dispatcher-served dashboard.
func (s *Server) serveProxied(w http.ResponseWriter, r *http.Request) {
	tok := proxiedBearer(r)
	if tok == "" {
		http.Error(w, noProxiedUser, http.StatusUnauthorized)
		return
	}
	r = r.WithContext(withUser(r.Context(), user{token: tok, remoteAddr: r.RemoteAddr}))
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := s.checkPost(r); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// sameOrigin: behind a proxy the page's scheme is the proxy's, so the Origin's host is
// compared with the Host the proxy passed on (or X-Forwarded-Host, when it rewrites
// Host). A form on another site cannot set either.
func (s *Server) sameOrigin(r *http.Request, origin string) bool {
	if !s.opts.Proxied {
		return origin == "http://"+r.Host
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return false
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
		host = fh
	}
	return u.Host == host
}

// csrfToken goes into every form; a page of another origin cannot read it. Behind the
// proxy it is bound to the user's token, so one user's page cannot post as another.
func (s *Server) csrfToken(r *http.Request) string {
	if u, ok := userOf(r.Context()); ok && s.opts.Proxied {
		h := sha256.Sum256([]byte(u.token))
		return s.mac("csrf\x00" + string(h[:]))
	}
	return s.mac("csrf")
}

// InProcess is an http.RoundTripper that serves each request with Handler in this
// process: the dispatcher's dashboard reaches the dispatcher's own admin API without a
// network hop or its TLS. Its answers are buffered, as the admin API's are small.
type InProcess struct{ Handler http.Handler }

func (t InProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	req := r.Clone(r.Context())
	req.RequestURI = r.URL.RequestURI()
	req.RemoteAddr = "127.0.0.1:0"
	if u, ok := userOf(r.Context()); ok && u.remoteAddr != "" {
		req.RemoteAddr = u.remoteAddr
	}
	if req.Body == nil {
		req.Body = http.NoBody
	}
	rw := &bufferedResponse{header: http.Header{}}
	t.Handler.ServeHTTP(rw, req)
	if rw.code == 0 {
		rw.code = http.StatusOK
	}
	return &http.Response{
		Status: strconv.Itoa(rw.code) + " " + http.StatusText(rw.code), StatusCode: rw.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rw.header, Body: io.NopCloser(&rw.body), ContentLength: int64(rw.body.Len()), Request: r,
	}, nil
}

type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}
