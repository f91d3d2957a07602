package rotation

import (
	"errors"
	"fmt"
	"time"

	"github.com/hookline/hookline/internal/signing"
)

// Policy is an endpoint's rotation schedule.
type Policy struct {
	// Every is the age at which the current key is replaced.
	Every time.Duration
	// Overlap is how long the replaced key keeps signing after a scheduled
	// or requested rotation.
	Overlap time.Duration
	// Algorithm is what new keys sign with (signing.AlgorithmHMACSHA256 or
	// signing.AlgorithmEd25519); empty means whatever the current key uses.
	// A current key of another algorithm is rotated out, with the overlap.
	Algorithm string
}

// DefaultPolicy rotates every 90 days and keeps the old key for a day, long
// enough for receivers that reload secrets daily.
var DefaultPolicy = Policy{Every: 2160 * time.Hour, Overlap: 24 * time.Hour}

// Validate reports a policy Plan cannot honour.
func (p Policy) Validate() error {
	switch {
	case p.Every <= 0:
		return fmt.Errorf("rotation interval must be positive, got %s", p.Every)
	case p.Overlap < 0:
		return fmt.Errorf("rotation overlap must not be negative, got %s", p.Overlap)
	case p.Overlap >= p.Every:
		// Otherwise a key would still be live when its successor is
		// replaced, and receivers would need three keys at once.
		return fmt.Errorf("rotation overlap (%s) must be shorter than the rotation interval (%s)", p.Overlap, p.Every)
	case p.Every%time.Second != 0 || p.Overlap%time.Second != 0:
		// Key times are stored to the second; a finer schedule would fall due
		// before the stored time says it does.
		return fmt.Errorf("rotation interval (%s) and overlap (%s) must be whole seconds", p.Every, p.Overlap)
	}
	return nil
}

// Request is a manual rotation request, read from the endpoint's annotations.
type Request struct {
	// Token identifies the request; a token already recorded in
	// KeySet.LastRequest has been carried out. Empty means no request.
	Token string
	// Immediate drops the old key at once instead of keeping it for the
	// overlap, for a key that has leaked.
	Immediate bool
}

// Action is what the controller has to do to the key Secret.
type Action string

const (
	ActionNone         Action = ""
	ActionGenerate     Action = "Generate"
	ActionRotate       Action = "Rotate"
	ActionDropPrevious Action = "DropPrevious"
)

// Cause says why an action is due, for Events and status messages.
type Cause string

const (
	CauseNone         Cause = ""
	CauseNoKeys       Cause = "NoKeys"
	CauseSchedule     Cause = "Schedule"
	CauseRequest      Cause = "Request"
	CauseOverlapEnded Cause = "OverlapEnded"
	CauseAlgorithm    Cause = "AlgorithmChanged"
)

// Decision is the outcome of Plan.
type Decision struct {
	Action Action
	Cause  Cause
	// At is the time new keys are stamped with: the planning time truncated
	// to the second, the precision the Secret stores, so that the schedule
	// Plan computed is the one that is read back.
	At time.Time
	// KeepPrevious, for ActionRotate, keeps the replaced key until
	// PreviousExpiresAt; otherwise it is dropped at once.
	KeepPrevious      bool
	PreviousExpiresAt time.Time
	// HandledRequest, when set, is the request token to record as carried
	// out.
	HandledRequest string
	// Next is the earliest moment after the decision is applied at which
	// another action falls due; the controller requeues for it.
	Next time.Time
}

// NextRotation is when the current key of keys is due to be replaced.
func NextRotation(keys signing.KeySet, p Policy) time.Time {
	return keys.Current.CreatedAt.Add(p.Every)
}

// PreviousExpiry is when the previous key stops signing, or the zero time if
// there is none.
func PreviousExpiry(keys signing.KeySet) time.Time {
	if keys.Previous == nil {
		return time.Time{}
	}
	return keys.Previous.ExpiresAt
}

// MaxRetiredKeys bounds the replaced keys that sign beside the current one.
// Each adds a signature to every delivery; a manual rotation that would need
// one more waits until the first of them expires.
const MaxRetiredKeys = 8

// firstExpiry is the earliest expiry among retired keys still live after at,
// or the zero time.
func firstExpiry(keys signing.KeySet, at time.Time) time.Time {
	var first time.Time
	for _, k := range keys.Retired() {
		if at.Before(k.ExpiresAt) && (first.IsZero() || k.ExpiresAt.Before(first)) {
			first = k.ExpiresAt
		}
	}
	return first
}

// liveRetired counts retired keys still signing at at.
func liveRetired(keys signing.KeySet, at time.Time) int {
	n := 0
	for _, k := range keys.Retired() {
		if at.Before(k.ExpiresAt) {
			n++
		}
	}
	return n
}

// Plan decides what to do with an endpoint's generated keys at now. hasKeys
// is false when the key Secret does not exist yet. p must pass Validate.
//
// Every replaced key keeps signing until the expiry announced when it was
// replaced, whatever rotations follow: a rotation during an overlap keeps the
// earlier replaced keys too. Only an immediate rotation (a leaked key) drops
// keys early, and then all of them, because they are all kept in the same
// Secret that leaked.
func Plan(keys signing.KeySet, hasKeys bool, p Policy, req Request, now time.Time) Decision {
	at := now.UTC().Truncate(time.Second)
	pending := req.Token != "" && req.Token != keys.LastRequest

	if !hasKeys {
		// A request made before the first key exists is satisfied by that
		// key; recording it stops it from rotating the new key right away.
		d := Decision{Action: ActionGenerate, Cause: CauseNoKeys, At: at, Next: at.Add(p.Every)}
		if req.Token != "" {
			d.HandledRequest = req.Token
		}
		return d
	}

	expired := len(keys.Retired()) > liveRetired(keys, at)
	var d Decision
	switch {
	case pending && req.Immediate:
		d = rotate(at, p, false)
		d.Cause = CauseRequest
		d.HandledRequest = req.Token
		return d
	case pending && liveRetired(keys, at) < MaxRetiredKeys:
		d = rotate(at, p, true)
		d.Cause = CauseRequest
		d.HandledRequest = req.Token
	case p.Algorithm != "" && signing.Algorithm(keys.Current.Secret) != p.Algorithm:
		// A new algorithm is a rotation to a key of that algorithm: the old key
		// keeps signing for the overlap, so receivers can switch verifiers.
		d = rotate(at, p, true)
		d.Cause = CauseAlgorithm
	case !now.Before(NextRotation(keys, p)):
		d = rotate(at, p, true)
		d.Cause = CauseSchedule
	case expired:
		d = Decision{Action: ActionDropPrevious, Cause: CauseOverlapEnded, At: at, Next: NextRotation(keys, p)}
	default:
		// Nothing due; a request over MaxRetiredKeys waits here for the
		// first expiry.
		d = Decision{At: at, Next: NextRotation(keys, p)}
	}
	d.Next = earliest(d.Next, firstExpiry(keys, at))
	return d
}

func rotate(at time.Time, p Policy, keep bool) Decision {
	d := Decision{Action: ActionRotate, At: at, Next: at.Add(p.Every)}
	// With no overlap the old key would expire the moment it is kept.
	if keep && p.Overlap > 0 {
		d.KeepPrevious = true
		d.PreviousExpiresAt = at.Add(p.Overlap)
		d.Next = earliest(d.Next, d.PreviousExpiresAt)
	}
	return d
}

// earliest returns the earlier of a and b, ignoring a zero b.
func earliest(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// stillLive returns the retired keys of keys that sign after at, newest first.
func stillLive(keys signing.KeySet, at time.Time) []signing.Key {
	var live []signing.Key
	for _, k := range keys.Retired() {
		if at.Before(k.ExpiresAt) {
			live = append(live, k)
		}
	}
	return live
}

// Apply carries out d on keys and returns the new set. newSecret and newID
// make the key for ActionGenerate and ActionRotate (signing.GenerateSecret and
// signing.NewKeyID). On error keys is returned unchanged, so a failed
// rotation never leaves the endpoint without its current key.
func Apply(keys signing.KeySet, d Decision, newSecret func() (string, error), newID func() string) (signing.KeySet, error) {
	next := keys
	switch d.Action {
	case ActionNone:
		return keys, nil
	case ActionDropPrevious:
		next.Previous, next.Older = nil, nil
		if live := stillLive(keys, d.At); len(live) > 0 {
			next.Previous, next.Older = &live[0], live[1:]
		}
	case ActionGenerate, ActionRotate:
		k, err := newKey(keys, d.At, newSecret, newID)
		if err != nil {
			return keys, err
		}
		next = signing.KeySet{Current: k, LastRequest: keys.LastRequest}
		if d.Action == ActionRotate && d.KeepPrevious {
			old := keys.Current
			old.ExpiresAt = d.PreviousExpiresAt
			next.Previous = &old
			// Keys replaced earlier keep their announced expiry.
			next.Older = stillLive(keys, d.At)
		}
	default:
		return keys, fmt.Errorf("applying key rotation: unknown action %q", d.Action)
	}
	if d.HandledRequest != "" {
		next.LastRequest = d.HandledRequest
	}
	if err := signing.CheckSecret(next.Current.Secret); err != nil {
		return keys, fmt.Errorf("applying key rotation: current key %s would be unusable: %w", next.Current.ID, err)
	}
	return next, nil
}

func newKey(keys signing.KeySet, at time.Time, newSecret func() (string, error), newID func() string) (signing.Key, error) {
	secret, err := newSecret()
	if err != nil {
		return signing.Key{}, fmt.Errorf("generating signing key: %w", err)
	}
	if err := signing.CheckSecret(secret); err != nil {
		return signing.Key{}, fmt.Errorf("generating signing key: %w", err)
	}
	id := newID()
	switch {
	case id == "":
		return signing.Key{}, errors.New("generating signing key: the new key ID is empty")
	case id == keys.Current.ID || (keys.Previous != nil && id == keys.Previous.ID):
		// Status and receivers tell keys apart by ID.
		return signing.Key{}, fmt.Errorf("generating signing key: new key ID %s is already in use", id)
	}
	return signing.Key{ID: id, Secret: secret, CreatedAt: at}, nil
}
