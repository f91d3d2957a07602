package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// The guards in this file stand between a client and the API server: a
// request that cannot be a valid ServiceAccount token, or that comes from an
// address that keeps sending invalid ones, is refused without a TokenReview,
// so that no pod can spend the API server's capacity by sending garbage.

// maxTokenBytes bounds a bearer token; ServiceAccount tokens are about 1 KiB.
const maxTokenBytes = 16 << 10

// checkTokenShape refuses what cannot be a ServiceAccount token: anything but
// a JWT (three base64url parts, a header naming an algorithm, a JSON claims
// set), one whose exp has passed, and, when audience is set, one not issued
// for it. The signature is the API server's to check. It returns the token's
// expiry (zero when it has none: legacy Secret-based tokens) and the reason
// for the caller, or "".
func checkTokenShape(token string, now time.Time, audience string) (time.Time, string) {
	const notJWT = "the bearer token is not a ServiceAccount token (a JWT of three base64url parts); send the pod's token, e.g. /var/run/secrets/kubernetes.io/serviceaccount/token"
	if len(token) > maxTokenBytes {
		return time.Time{}, fmt.Sprintf("the bearer token is %d bytes long; ServiceAccount tokens are far shorter than %d", len(token), maxTokenBytes)
	}
	parts := bytes.Split([]byte(token), []byte{'.'})
	if len(parts) != 3 {
		return time.Time{}, notJWT
	}
	decoded := make([][]byte, 3)
	for i, p := range parts {
		if len(p) == 0 {
			return time.Time{}, notJWT
		}
		b, err := base64.RawURLEncoding.DecodeString(string(p))
		if err != nil {
			return time.Time{}, notJWT
		}
		decoded[i] = b
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(decoded[0], &header) != nil || header.Alg == "" || header.Alg == "none" {
		return time.Time{}, notJWT
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
		Aud audienceList `json:"aud"`
	}
	if json.Unmarshal(decoded[1], &claims) != nil {
		return time.Time{}, notJWT
	}
	var exp time.Time
	if claims.Exp != nil {
		secs, err := claims.Exp.Int64()
		if err != nil {
			return time.Time{}, notJWT
		}
		exp = time.Unix(secs, 0)
		if !now.Before(exp) {
			return exp, "the bearer token expired at " + exp.UTC().Format(time.RFC3339) + "; send a current ServiceAccount token (kubelet refreshes projected tokens: read the file again)"
		}
	}
	if audience != "" && !claims.Aud.has(audience) {
		return exp, fmt.Sprintf("the bearer token is not issued for audience %q, which this dispatcher requires; mount a projected ServiceAccount token with audience %q and send it", audience, audience)
	}
	return exp, ""
}

// audienceList is a JWT aud claim: one string or a list of them.
type audienceList []string

func (a *audienceList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audienceList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

func (a audienceList) has(want string) bool {
	for _, s := range a {
		if s == want {
			return true
		}
	}
	return false
}

// failureBudget is a token bucket of failed authentications per client
// address: burst failures at once, then one per refill. A client without
// budget is answered 429 without any review until its budget refills.
type failureBudget struct {
	burst      float64
	refill     time.Duration
	maxClients int

	mu      sync.Mutex
	clients map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newFailureBudget(burst int, refill time.Duration, maxClients int) *failureBudget {
	return &failureBudget{burst: float64(burst), refill: refill, maxClients: maxClients, clients: map[string]*bucket{}}
}

// level returns the client's budget at now, refilled; called with mu held.
func (f *failureBudget) level(b *bucket, now time.Time) float64 {
	return min(f.burst, b.tokens+float64(now.Sub(b.at))/float64(f.refill))
}

// wait returns how long client must wait before its next attempt may be
// reviewed: zero when it has budget left.
func (f *failureBudget) wait(client string, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.clients[client]
	if !ok {
		return 0
	}
	lvl := f.level(b, now)
	if lvl >= 1 {
		return 0
	}
	return time.Duration((1 - lvl) * float64(f.refill))
}

// fail spends one of client's budget.
func (f *failureBudget) fail(client string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.clients[client]
	if !ok {
		if len(f.clients) >= f.maxClients {
			f.prune(now)
		}
		b = &bucket{tokens: f.burst, at: now}
		f.clients[client] = b
	}
	b.tokens = max(0, f.level(b, now)-1)
	b.at = now
}

// prune forgets clients whose budget has refilled (they are as good as new),
// then, if that is not enough, arbitrary ones: an attacker with many
// addresses can reset budgets, but not grow the map. Called with mu held.
func (f *failureBudget) prune(now time.Time) {
	for c, b := range f.clients {
		if f.level(b, now) >= f.burst {
			delete(f.clients, c)
		}
	}
	for c := range f.clients {
		if len(f.clients) < f.maxClients*9/10 {
			break
		}
		delete(f.clients, c)
	}
}

// expiringMap is a bounded cache whose entries expire. When full, a put
// drops expired entries first, then arbitrary ones (Go's map order is
// random), down to nine tenths.
type expiringMap[K comparable, V any] struct {
	max int
	mu  sync.Mutex
	m   map[K]expiring[V]
}

type expiring[V any] struct {
	v       V
	expires time.Time
}

func newExpiringMap[K comparable, V any](max int) *expiringMap[K, V] {
	return &expiringMap[K, V]{max: max, m: map[K]expiring[V]{}}
}

func (c *expiringMap[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *expiringMap[K, V]) put(k K, v V, expires, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, old)
			}
		}
		for old := range c.m {
			if len(c.m) < c.max*9/10 {
				break
			}
			delete(c.m, old)
		}
	}
	c.m[k] = expiring[V]{v, expires}
}

func (c *expiringMap[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
