package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"k8s.io/utils/clock"
)

// OAuth2 is the OAuth 2.0 client credentials grant of an endpoint, with its client secret
// resolved. The access token it yields is sent as "Authorization: Bearer <token>".
type OAuth2 struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
	Audience     string
	// Params are extra form parameters of the token request.
	Params map[string]string
	// RootCAs verifies the token server's certificate; nil trusts the system roots.
	RootCAs *x509.CertPool
}

// Token refresh timing: a token is replaced tokenRefreshEarly before it expires, or half
// way through its life when that is shorter than 2*tokenRefreshEarly, so a delivery never
// goes out with a token that expires on the way.
const tokenRefreshEarly = 10 * time.Second

// reservedTokenParams are the token request's own parameters, which Params cannot replace.
var reservedTokenParams = []string{"grant_type", "client_id", "client_secret", "scope", "audience"}

// tokenSource fetches and caches one endpoint's access token. Concurrent deliveries that
// need a token share one fetch; a fetch runs on its own deadline, so a delivery that gives
// up waiting does not fail the others'.
type tokenSource struct {
	cfg     clientcredentials.Config
	client  *http.Client
	display string // the token URL's scheme and host
	secret  string // scrubbed from error messages
	timeout time.Duration
	clock   clock.PassiveClock

	mu       sync.Mutex
	tok      string
	refresh  time.Time // when tok is to be replaced; zero: until a 401
	inflight *tokenFetch

	// fetches counts token requests, for tests.
	fetches atomic.Int64
}

type tokenFetch struct {
	// waiters counts the deliveries waiting on this fetch, for tests.
	waiters atomic.Int64
	done    chan struct{}
	tok     string
	err     error
}

// TokenError is a failure to get an access token. It is an attempt's error: the attempt
// is not sent, and is retried like any failed attempt.
type TokenError struct {
	msg string
	// Err is the cause: an *oauth2.RetrieveError when the token server answered with an
	// error, a transport error (SSRF refusal included) otherwise.
	Err error
}

func (e *TokenError) Error() string { return e.msg }
func (e *TokenError) Unwrap() error { return e.Err }

func newTokenSource(o *OAuth2, transport http.RoundTripper, timeout time.Duration, clk clock.PassiveClock) (*tokenSource, error) {
	u, display, err := parseEndpointURL(o.TokenURL)
	if err != nil {
		var te *TargetError
		if errors.As(err, &te) {
			return nil, refuse(te.Refusal, "OAuth2 token URL: %s", strings.TrimPrefix(te.msg, "endpoint "))
		}
		return nil, err
	}
	switch {
	case o.ClientID == "":
		return nil, refuse(RefusedConfig, "OAuth2 token URL %s: client ID is empty", display)
	case o.ClientSecret == "":
		return nil, refuse(RefusedValue, "OAuth2 token URL %s: client secret is empty", display)
	case !validHeaderValue(o.ClientSecret) || !validHeaderValue(o.ClientID):
		return nil, refuse(RefusedValue, "OAuth2 token URL %s: client ID or secret has control characters", display)
	}
	params := url.Values{}
	if o.Audience != "" {
		params.Set("audience", o.Audience)
	}
	for k, v := range o.Params {
		for _, r := range reservedTokenParams {
			if k == r {
				return nil, refuse(RefusedConfig, "OAuth2 token URL %s: parameter %s is set by the grant and cannot be configured", display, k)
			}
		}
		params.Set(k, v)
	}
	return &tokenSource{
		cfg: clientcredentials.Config{
			ClientID: o.ClientID, ClientSecret: o.ClientSecret, TokenURL: u.String(),
			Scopes: o.Scopes, EndpointParams: params,
		},
		client: &http.Client{
			Transport: transport,
			Timeout:   timeout,
			// A redirect is an error: following it would send the client's
			// credentials to a URL nobody configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		display: display,
		secret:  o.ClientSecret,
		timeout: timeout,
		clock:   clk,
	}, nil
}

// token returns a usable access token, fetching one when there is none, it is due for
// refresh, or it is stale: the token a receiver has just refused with 401.
func (s *tokenSource) token(ctx context.Context, stale string) (string, error) {
	s.mu.Lock()
	if s.tok != "" && s.tok != stale && (s.refresh.IsZero() || s.clock.Now().Before(s.refresh)) {
		tok := s.tok
		s.mu.Unlock()
		return tok, nil
	}
	f := s.inflight
	if f == nil {
		f = &tokenFetch{done: make(chan struct{})}
		s.inflight = f
		// The fetch is shared by every caller waiting on it, so no one caller's
		// cancellation may end it; it keeps the caller's values, and its own timeout.
		go s.fetch(context.WithoutCancel(ctx), f)
	}
	f.waiters.Add(1)
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return "", &TokenError{msg: fmt.Sprintf("OAuth2 token from %s: %v", s.display, ctx.Err()), Err: ctx.Err()}
	}
}

func (s *tokenSource) fetch(parent context.Context, f *tokenFetch) {
	defer close(f.done)
	s.fetches.Add(1)
	ctx, cancel := context.WithTimeout(parent, s.timeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.client)
	fetched := s.clock.Now()
	tok, err := s.cfg.Token(ctx)
	if err == nil && tok.AccessToken == "" {
		err = errors.New("the answer holds no access_token")
	}
	if err == nil && !validHeaderValue(tok.AccessToken) {
		err = errors.New("the access token has control characters")
	}
	if err == nil && tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer") {
		err = fmt.Errorf("token_type is %q, not Bearer", cut(tok.TokenType, 32))
	}
	var refresh time.Time
	if err == nil && !tok.Expiry.IsZero() {
		// The library stamps the expiry with the wall clock; the schedule follows ours.
		life := time.Until(tok.Expiry)
		early := tokenRefreshEarly
		if life < 2*early {
			early = life / 2
		}
		refresh = fetched.Add(life - early)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight = nil
	if err != nil {
		f.err = &TokenError{msg: "OAuth2 token from " + s.display + ": " + s.describe(err), Err: err}
		return
	}
	s.tok, s.refresh = tok.AccessToken, refresh
	f.tok = tok.AccessToken
}

// describe words a token failure without the request URL or the client secret, keeping
// the server's RFC 6749 error code and description.
func (s *tokenSource) describe(err error) string {
	var re *oauth2.RetrieveError
	var msg string
	switch {
	case errors.As(err, &re):
		code := 0
		if re.Response != nil {
			code = re.Response.StatusCode
		}
		msg = fmt.Sprintf("token endpoint answered HTTP %d", code)
		if code >= 300 && code < 400 {
			msg += " (a redirect, which is not followed)"
		}
		if re.ErrorCode != "" {
			msg += ": " + cut(re.ErrorCode, 64)
			if re.ErrorDescription != "" {
				msg += " (" + cut(re.ErrorDescription, 256) + ")"
			}
		}
		if re.ErrorCode == "invalid_client" || code == http.StatusUnauthorized {
			msg += "; check spec.auth.oauth2.clientID and the client secret"
		}
	default:
		msg = redactURLError(err).Error()
	}
	if s.secret != "" {
		msg = strings.ReplaceAll(msg, s.secret, "[redacted]")
	}
	return msg
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
