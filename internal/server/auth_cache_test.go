package server

import (
	"crypto/sha256"
	"strconv"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// TestAuthCacheIsBounded: producers can send any number of distinct tokens; the cache
// drops expired entries first, then arbitrary ones, and never passes its bound.
func TestAuthCacheIsBounded(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC))
	a := NewKubernetesAuthorizer(nil, KubernetesAuthorizerOptions{MaxEntries: 100, Clock: clk})
	add := func(i int) authKey {
		k := authKey{token: sha256.Sum256([]byte(strconv.Itoa(i))), namespace: "ns"}
		a.store(k, authEntry{expires: clk.Now().Add(a.opts.TTL)}, clk.Now())
		return k
	}
	for i := range 1000 {
		add(i)
		if len(a.cache) > 100 {
			t.Fatalf("%d entries after %d stores", len(a.cache), i+1)
		}
	}
	for i := 1000; len(a.cache) < 100; i++ {
		add(i)
	}
	clk.Step(a.opts.TTL)
	k := add(-1) // the cache is full: this store purges the expired entries
	if len(a.cache) != 1 || a.cache[k].expires.IsZero() {
		t.Errorf("expired entries were kept: %d entries", len(a.cache))
	}
}
