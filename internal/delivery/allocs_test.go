//go:build !race

// The race detector changes allocation counts (sync.Pool drops items under it), so
// these bounds hold only without it; `make test-allocs` (part of `make test`) runs
// them without.

package delivery

import (
	"testing"

	"github.com/hookline/hookline/internal/signing"
)

// TestHotPathAllocations bounds the allocations of what every delivery attempt does
// before the transport takes over: its webhook-id, its body, and its headers with the
// signature. The bounds are today's counts: a change that adds an allocation per
// delivery fails here, without timing anything. Raise a bound only on purpose.
func TestHotPathAllocations(t *testing.T) {
	secret, err := signing.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signing.NewSigner(signing.KeySet{Current: signing.Key{ID: "k1", Secret: secret, CreatedAt: t0}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(PoolOptions{})
	t.Cleanup(p.CloseIdleConnections)
	tg := newTestTarget(t, p, TargetConfig{URL: "http://127.0.0.1:1/hook", SSRF: loopback(t), Sign: signer.Sign})

	for _, f := range []Format{StandardWebhooks, CloudEventsStructured, CloudEventsBinary} {
		m := benchMessage(f)
		body := AppendBody(nil, &m)
		h := tg.requestHeader(&m, t0, body)
		cases := []struct {
			name string
			max  float64
			fn   func()
		}{
			// sha256 state, the digest and the string.
			{"WebhookIDOf", 1, func() { _ = WebhookIDOf(m.Namespace, m.ID, "8d1e4a52-7c1e-4f0e-9a43-0d6a3c1b2e77") }},
			// The body buffer, sized once.
			{"AppendBody", 1, func() { sink = AppendBody(make([]byte, 0, m.bodySize()), &m) }},
			// The header map, one backing array for its values, the timestamp, the
			// signature and its pooled buffer's string; CloudEvents binary adds its
			// attributes (source, time).
			{"requestHeader", headerAllocs(f), func() { _ = tg.requestHeader(&m, t0, body) }},
			// The attempt log's copy of the headers, signature masked: one string.
			{"shownHeaders", 1, func() { _ = tg.shownHeaders(h, false, 1) }},
		}
		for _, c := range cases {
			c.fn() // fill pools
			n := testing.AllocsPerRun(200, c.fn)
			t.Logf("%s %s: %v allocations", f, c.name, n)
			if n > c.max {
				t.Errorf("%s %s allocates %v times per delivery, want at most %v: an allocation was added to the delivery hot path", f, c.name, n, c.max)
			}
		}
	}
}

func headerAllocs(f Format) float64 {
	if f == CloudEventsBinary {
		return 12
	}
	return 5
}
