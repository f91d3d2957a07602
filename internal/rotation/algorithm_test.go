package rotation

import (
	"testing"
	"time"

	"github.com/hookline/hookline/internal/signing"
)

// Changing an endpoint's algorithm rotates to a key of the new algorithm, keeping the old
// key for the overlap like any rotation; once the current key has the wanted algorithm
// nothing more happens until the schedule says so.
func TestPlanAlgorithmChange(t *testing.T) {
	p := DefaultPolicy
	p.Algorithm = signing.AlgorithmEd25519
	now := t0.Add(time.Hour)
	keys := keysAt(t0) // an HMAC key
	d := Plan(keys, true, p, Request{}, now)
	if d.Action != ActionRotate || d.Cause != CauseAlgorithm || !d.KeepPrevious || !d.PreviousExpiresAt.Equal(now.Add(p.Overlap)) {
		t.Fatalf("decision = %+v, want a rotation for the algorithm change keeping the old key for the overlap", d)
	}
	next, err := Apply(keys, d, signing.GenerateEd25519Secret, newID)
	if err != nil {
		t.Fatal(err)
	}
	if got := signing.Algorithm(next.Current.Secret); got != signing.AlgorithmEd25519 {
		t.Fatalf("new current key is %s, want ed25519", got)
	}
	if next.Previous == nil || next.Previous.Secret != secretA {
		t.Fatalf("the HMAC key is not kept as previous: %v", next)
	}
	if d := Plan(next, true, p, Request{}, now.Add(time.Minute)); d.Action != ActionNone {
		t.Fatalf("second plan = %+v, want nothing to do", d)
	}
	// An empty Algorithm keeps whatever the key is.
	p.Algorithm = ""
	if d := Plan(next, true, p, Request{}, now.Add(time.Minute)); d.Action != ActionNone {
		t.Fatalf("plan with no algorithm = %+v, want nothing to do", d)
	}
	// And back: an ed25519 key is rotated out for HMAC.
	p.Algorithm = signing.AlgorithmHMACSHA256
	if d := Plan(next, true, p, Request{}, now.Add(time.Minute)); d.Action != ActionRotate || d.Cause != CauseAlgorithm {
		t.Fatalf("plan back to HMAC = %+v, want a rotation", d)
	}
}
