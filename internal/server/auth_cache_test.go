package server

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExpiringMapIsBounded: producers can send any number of distinct tokens;
// a cache drops expired entries first, then arbitrary ones, and never passes
// its bound.
func TestExpiringMapIsBounded(t *testing.T) {
	now := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	c := newExpiringMap[string, int](100)
	for i := range 1000 {
		c.put(strconv.Itoa(i), i, now.Add(time.Minute), now)
		if c.len() > 100 {
			t.Fatalf("%d entries after %d puts", c.len(), i+1)
		}
	}
	for i := 1000; c.len() < 100; i++ {
		c.put(strconv.Itoa(i), i, now.Add(time.Minute), now)
	}
	later := now.Add(time.Minute)
	c.put("fresh", 1, later.Add(time.Minute), later) // full: this put purges the expired entries
	if c.len() != 1 {
		t.Errorf("expired entries were kept: %d entries", c.len())
	}
	if v, ok := c.get("fresh", later); !ok || v != 1 {
		t.Errorf("get(fresh) = %v, %v", v, ok)
	}
	if _, ok := c.get("fresh", later.Add(time.Minute)); ok {
		t.Error("an expired entry was returned")
	}
}

func jwt(header, claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(claims)) + "." + enc([]byte("signature"))
}

func TestCheckTokenShape(t *testing.T) {
	now := time.Unix(2_000_000_000, 0)
	const alg = `{"alg":"RS256","kid":"k"}`
	tests := []struct {
		name, token, audience, reason string
	}{
		{name: "service account token", token: jwt(alg, `{"iss":"kubernetes/serviceaccount","exp":2000000100}`)},
		{name: "legacy token without exp", token: jwt(alg, `{"iss":"kubernetes/serviceaccount"}`)},
		{name: "audience as string", token: jwt(alg, `{"aud":"hookline","exp":2000000100}`), audience: "hookline"},
		{name: "audience in list", token: jwt(alg, `{"aud":["api","hookline"]}`), audience: "hookline"},
		{name: "random", token: "c2VjcmV0", reason: "not a ServiceAccount token"},
		{name: "two parts", token: "abcdef.0123456789abcdef", reason: "not a ServiceAccount token"},
		{name: "four parts", token: jwt(alg, `{}`) + ".x", reason: "not a ServiceAccount token"},
		{name: "empty part", token: "a..b", reason: "not a ServiceAccount token"},
		{name: "not base64url", token: "a+b.c/d.e=f", reason: "not a ServiceAccount token"},
		{name: "header not JSON", token: jwt("hello", `{}`), reason: "not a ServiceAccount token"},
		{name: "no alg", token: jwt(`{"typ":"JWT"}`, `{}`), reason: "not a ServiceAccount token"},
		{name: "alg none", token: jwt(`{"alg":"none"}`, `{}`), reason: "not a ServiceAccount token"},
		{name: "claims not JSON", token: jwt(alg, `[1,2`), reason: "not a ServiceAccount token"},
		{name: "exp not a number", token: jwt(alg, `{"exp":"tomorrow"}`), reason: "not a ServiceAccount token"},
		{name: "expired", token: jwt(alg, `{"exp":1999999999}`), reason: "expired at 2033-05-18T03:33:19Z"},
		{name: "expires now", token: jwt(alg, `{"exp":2000000000}`), reason: "expired"},
		{name: "wrong audience", token: jwt(alg, `{"aud":["https://kubernetes.default.svc"]}`), audience: "hookline", reason: `not issued for audience "hookline"`},
		{name: "no audience", token: jwt(alg, `{}`), audience: "hookline", reason: "projected ServiceAccount token"},
		{name: "huge", token: strings.Repeat("a", 20<<10), reason: "far shorter"},
	}
	for _, tt := range tests {
		_, reason := checkTokenShape(tt.token, now, tt.audience)
		if tt.reason == "" && reason != "" || !strings.Contains(reason, tt.reason) {
			t.Errorf("%s: reason %q, want %q", tt.name, reason, tt.reason)
		}
	}
	if exp, _ := checkTokenShape(jwt(alg, `{"exp":2000000100}`), now, ""); !exp.Equal(time.Unix(2000000100, 0)) {
		t.Errorf("exp %v", exp)
	}
}

func TestFailureBudget(t *testing.T) {
	now := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	b := newFailureBudget(3, 10*time.Second, 4)
	for i := range 3 {
		if w := b.wait("a", now); w != 0 {
			t.Fatalf("failure %d: wait %v", i, w)
		}
		b.fail("a", now)
	}
	if w := b.wait("a", now); w != 10*time.Second {
		t.Errorf("after the burst: wait %v, want 10s", w)
	}
	if w := b.wait("b", now); w != 0 {
		t.Errorf("another client waits %v", w)
	}
	if w := b.wait("a", now.Add(4*time.Second)); w != 6*time.Second {
		t.Errorf("4 s later: wait %v, want 6s", w)
	}
	if w := b.wait("a", now.Add(10*time.Second)); w != 0 {
		t.Errorf("after a refill: wait %v", w)
	}
	// Many clients cannot grow the map past its bound.
	for i := range 100 {
		b.fail(strconv.Itoa(i), now)
		if len(b.clients) > 4 {
			t.Fatalf("%d clients tracked", len(b.clients))
		}
	}
}
