package rotation

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/signing"
)

// TestEveryKeySignsUntilItsAnnouncedExpiry drives Plan and Apply through long runs of
// scheduled rotations and manual requests at random moments, as the controller does
// (acting at each decision's Next or at a request), and checks after every step that each
// key ever announced with an expiry still signs until that expiry, unless an immediate
// rotation revoked it.
func TestEveryKeySignsUntilItsAnnouncedExpiry(t *testing.T) {
	p := Policy{Every: 30 * day, Overlap: 3 * day}
	for seed := uint64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		n := 0
		newID := func() string { n++; return fmt.Sprintf("key_%d", n) }
		now := t0
		d := Plan(signing.KeySet{}, false, p, Request{}, now)
		keys, err := Apply(signing.KeySet{}, d, signing.GenerateSecret, newID)
		if err != nil {
			t.Fatal(err)
		}
		announced := map[string]time.Time{} // key ID -> announced expiry
		req, lastImmediate := Request{}, time.Time{}
		for step := 0; step < 200; step++ {
			// Either the controller wakes at Next, or a person asks for a rotation first.
			next := d.Next
			if rng.IntN(3) > 0 {
				at := now.Add(time.Duration(rng.Int64N(int64(2 * day))))
				if at.Before(next) {
					next = at
					req = Request{Token: fmt.Sprintf("r%d", step), Immediate: rng.IntN(20) == 0}
				}
			}
			now = next
			d = Plan(keys, true, p, req, now)
			if keys, err = Apply(keys, d, signing.GenerateSecret, newID); err != nil {
				t.Fatal(err)
			}
			if d.Action == ActionRotate && !d.KeepPrevious && d.Cause == CauseRequest {
				announced, lastImmediate = map[string]time.Time{}, now
			}
			for _, k := range keys.Retired() {
				if exp, ok := announced[k.ID]; ok && !exp.Equal(k.ExpiresAt) {
					t.Fatalf("seed %d step %d: key %s was announced until %v, now until %v", seed, step, k.ID, exp, k.ExpiresAt)
				}
				announced[k.ID] = k.ExpiresAt
			}
			signer, err := signing.NewSigner(keys, now)
			if err != nil {
				t.Fatal(err)
			}
			signs := map[string]bool{}
			for _, id := range signer.KeyIDs() {
				signs[id] = true
			}
			for id, exp := range announced {
				if now.Before(exp) && !signs[id] {
					t.Fatalf("seed %d step %d at %v: key %s announced until %v no longer signs (immediate rotation at %v)", seed, step, now, id, exp, lastImmediate)
				}
			}
			if len(signer.KeyIDs()) > MaxRetiredKeys+1 {
				t.Fatalf("seed %d step %d: %d keys sign", seed, step, len(signer.KeyIDs()))
			}
		}
	}
}
