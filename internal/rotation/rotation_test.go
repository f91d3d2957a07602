package rotation

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/signing"
)

const (
	secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	secretC = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	secretN = "whsec_QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="
)

var (
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	every = DefaultPolicy.Every
	day   = 24 * time.Hour
)

func keysAt(created time.Time) signing.KeySet {
	return signing.KeySet{Current: signing.Key{ID: "key_cur", Secret: secretA, CreatedAt: created}}
}

func withPrevious(ks signing.KeySet, expires time.Time) signing.KeySet {
	ks.Previous = &signing.Key{ID: "key_prev", Secret: secretB, CreatedAt: ks.Current.CreatedAt.Add(-every), ExpiresAt: expires}
	return ks
}

func withOlder(ks signing.KeySet, expires time.Time) signing.KeySet {
	ks.Older = append(ks.Older, signing.Key{ID: "key_old", Secret: secretC, CreatedAt: ks.Current.CreatedAt.Add(-2 * every), ExpiresAt: expires})
	return ks
}

func withLastRequest(ks signing.KeySet, token string) signing.KeySet {
	ks.LastRequest = token
	return ks
}

func newSecret() (string, error) { return secretN, nil }
func newID() string              { return "key_new" }

func TestPlanApply(t *testing.T) {
	type want struct {
		action       Action
		cause        Cause
		next         time.Time
		currentID    string // after Apply
		previousID   string // after Apply; "" for none
		prevExpires  time.Time
		lastRequest  string
		currentSince time.Time
		olderIDs     []string // after Apply, newest first
	}
	tests := []struct {
		name    string
		keys    signing.KeySet
		hasKeys bool
		policy  Policy
		req     Request
		now     time.Time
		want    want
	}{
		{
			name: "first generation", hasKeys: false, now: t0.Add(1500 * time.Millisecond),
			want: want{action: ActionGenerate, cause: CauseNoKeys, next: t0.Add(time.Second + every), currentID: "key_new", currentSince: t0.Add(time.Second)},
		},
		{
			name: "first generation satisfies a pending request", hasKeys: false, now: t0, req: Request{Token: "r1", Immediate: true},
			want: want{action: ActionGenerate, cause: CauseNoKeys, next: t0.Add(every), currentID: "key_new", lastRequest: "r1", currentSince: t0},
		},
		{
			name: "not yet due", keys: keysAt(t0), hasKeys: true, now: t0.Add(every - time.Second),
			want: want{action: ActionNone, next: t0.Add(every), currentID: "key_cur", currentSince: t0},
		},
		{
			name: "exactly due", keys: keysAt(t0), hasKeys: true, now: t0.Add(every),
			want: want{action: ActionRotate, cause: CauseSchedule, next: t0.Add(every + day), currentID: "key_new", previousID: "key_cur", prevExpires: t0.Add(every + day), currentSince: t0.Add(every)},
		},
		{
			name: "overdue after a long downtime rotates once from now", keys: keysAt(t0), hasKeys: true, now: t0.Add(5*every + 3*time.Hour),
			want: want{action: ActionRotate, cause: CauseSchedule, next: t0.Add(5*every + 3*time.Hour + day), currentID: "key_new", previousID: "key_cur", prevExpires: t0.Add(5*every + 3*time.Hour + day), currentSince: t0.Add(5*every + 3*time.Hour)},
		},
		{
			name: "previous still live", keys: withPrevious(keysAt(t0), t0.Add(day)), hasKeys: true, now: t0.Add(time.Hour),
			want: want{action: ActionNone, next: t0.Add(day), currentID: "key_cur", previousID: "key_prev", prevExpires: t0.Add(day), currentSince: t0},
		},
		{
			name: "overlap ends", keys: withPrevious(keysAt(t0), t0.Add(day)), hasKeys: true, now: t0.Add(day),
			want: want{action: ActionDropPrevious, cause: CauseOverlapEnded, next: t0.Add(every), currentID: "key_cur", currentSince: t0},
		},
		{
			name: "manual request", keys: keysAt(t0), hasKeys: true, now: t0.Add(10 * day), req: Request{Token: "r1"},
			want: want{action: ActionRotate, cause: CauseRequest, next: t0.Add(11 * day), currentID: "key_new", previousID: "key_cur", prevExpires: t0.Add(11 * day), lastRequest: "r1", currentSince: t0.Add(10 * day)},
		},
		{
			name: "same token twice", keys: withLastRequest(keysAt(t0), "r1"), hasKeys: true, now: t0.Add(10 * day), req: Request{Token: "r1"},
			want: want{action: ActionNone, next: t0.Add(every), currentID: "key_cur", lastRequest: "r1", currentSince: t0},
		},
		{
			name: "same token twice, immediate", keys: withLastRequest(keysAt(t0), "r1"), hasKeys: true, now: t0.Add(10 * day), req: Request{Token: "r1", Immediate: true},
			want: want{action: ActionNone, next: t0.Add(every), currentID: "key_cur", lastRequest: "r1", currentSince: t0},
		},
		{
			name: "new token after a handled one", keys: withLastRequest(keysAt(t0), "r1"), hasKeys: true, now: t0.Add(10 * day), req: Request{Token: "r2"},
			want: want{action: ActionRotate, cause: CauseRequest, next: t0.Add(11 * day), currentID: "key_new", previousID: "key_cur", prevExpires: t0.Add(11 * day), lastRequest: "r2", currentSince: t0.Add(10 * day)},
		},
		{
			name: "immediate rotation drops the leaked key and any previous", keys: withPrevious(keysAt(t0), t0.Add(day)), hasKeys: true, now: t0.Add(time.Hour), req: Request{Token: "leak", Immediate: true},
			want: want{action: ActionRotate, cause: CauseRequest, next: t0.Add(time.Hour + every), currentID: "key_new", lastRequest: "leak", currentSince: t0.Add(time.Hour)},
		},
		{
			name: "rotation while previous is live keeps it until its announced expiry", keys: withPrevious(keysAt(t0), t0.Add(day)), hasKeys: true, now: t0.Add(time.Hour), req: Request{Token: "r1"},
			want: want{action: ActionRotate, cause: CauseRequest, next: t0.Add(day), currentID: "key_new", previousID: "key_cur", prevExpires: t0.Add(time.Hour + day), lastRequest: "r1", currentSince: t0.Add(time.Hour), olderIDs: []string{"key_prev"}},
		},
		{
			name: "a third rotation in one overlap keeps both replaced keys", keys: withOlder(withPrevious(keysAt(t0), t0.Add(day)), t0.Add(12*time.Hour)), hasKeys: true, now: t0.Add(time.Hour), req: Request{Token: "r2"},
			want: want{action: ActionRotate, cause: CauseRequest, next: t0.Add(12 * time.Hour), currentID: "key_new", previousID: "key_cur", prevExpires: t0.Add(time.Hour + day), lastRequest: "r2", currentSince: t0.Add(time.Hour), olderIDs: []string{"key_prev", "key_old"}},
		},
		{
			name: "an older key's overlap ends before the previous one's", keys: withOlder(withPrevious(keysAt(t0), t0.Add(day)), t0.Add(2*time.Hour)), hasKeys: true, now: t0.Add(2 * time.Hour),
			want: want{action: ActionDropPrevious, cause: CauseOverlapEnded, next: t0.Add(day), currentID: "key_cur", previousID: "key_prev", prevExpires: t0.Add(day), currentSince: t0},
		},
		{
			name: "immediate rotation drops older keys too: they were in the same Secret", keys: withOlder(withPrevious(keysAt(t0), t0.Add(day)), t0.Add(12*time.Hour)), hasKeys: true, now: t0.Add(time.Hour), req: Request{Token: "leak", Immediate: true},
			want: want{action: ActionRotate, cause: CauseRequest, next: t0.Add(time.Hour + every), currentID: "key_new", lastRequest: "leak", currentSince: t0.Add(time.Hour)},
		},
		{
			name: "due rotation wins over an ended overlap", keys: withPrevious(keysAt(t0), t0.Add(day)), hasKeys: true, now: t0.Add(every),
			want: want{action: ActionRotate, cause: CauseSchedule, next: t0.Add(every + day), currentID: "key_new", previousID: "key_cur", prevExpires: t0.Add(every + day), currentSince: t0.Add(every)},
		},
		{
			name: "zero overlap keeps nothing", keys: keysAt(t0), hasKeys: true, policy: Policy{Every: every}, now: t0.Add(every),
			want: want{action: ActionRotate, cause: CauseSchedule, next: t0.Add(2 * every), currentID: "key_new", currentSince: t0.Add(every)},
		},
		{
			name: "shortened interval makes an old key due", keys: keysAt(t0), hasKeys: true, policy: Policy{Every: 7 * day, Overlap: time.Hour}, now: t0.Add(8 * day),
			want: want{action: ActionRotate, cause: CauseSchedule, next: t0.Add(8*day + time.Hour), currentID: "key_new", previousID: "key_cur", prevExpires: t0.Add(8*day + time.Hour), currentSince: t0.Add(8 * day)},
		},
		{
			name: "clock behind the key's creation", keys: keysAt(t0), hasKeys: true, now: t0.Add(-time.Hour),
			want: want{action: ActionNone, next: t0.Add(every), currentID: "key_cur", currentSince: t0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			if p == (Policy{}) {
				p = DefaultPolicy
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("test policy invalid: %v", err)
			}
			d := Plan(tt.keys, tt.hasKeys, p, tt.req, tt.now)
			if d.Action != tt.want.action || d.Cause != tt.want.cause {
				t.Fatalf("decision %s/%s, want %s/%s", d.Action, d.Cause, tt.want.action, tt.want.cause)
			}
			if !d.Next.Equal(tt.want.next) {
				t.Errorf("next %v, want %v", d.Next, tt.want.next)
			}
			if !d.Next.After(tt.now) {
				t.Errorf("next %v is not after now %v: the controller would spin", d.Next, tt.now)
			}

			got, err := Apply(tt.keys, d, newSecret, newID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Current.ID != tt.want.currentID || !got.Current.CreatedAt.Equal(tt.want.currentSince) {
				t.Errorf("current %s since %v, want %s since %v", got.Current.ID, got.Current.CreatedAt, tt.want.currentID, tt.want.currentSince)
			}
			if !got.Current.ExpiresAt.IsZero() {
				t.Errorf("current key has an expiry %v", got.Current.ExpiresAt)
			}
			prevID, prevExp := "", time.Time{}
			if got.Previous != nil {
				prevID, prevExp = got.Previous.ID, got.Previous.ExpiresAt
			}
			if prevID != tt.want.previousID || !prevExp.Equal(tt.want.prevExpires) {
				t.Errorf("previous %q until %v, want %q until %v", prevID, prevExp, tt.want.previousID, tt.want.prevExpires)
			}
			if got.LastRequest != tt.want.lastRequest {
				t.Errorf("last request %q, want %q", got.LastRequest, tt.want.lastRequest)
			}
			var older []string
			for _, k := range got.Older {
				older = append(older, k.ID)
			}
			if !reflect.DeepEqual(older, tt.want.olderIDs) {
				t.Errorf("older keys %v, want %v", older, tt.want.olderIDs)
			}

			// The applied set must survive the Secret round trip, and
			// planning again at the same moment must find nothing to do and
			// the same requeue time: one decision per due event.
			stored, err := signing.KeySetFromSecretData(got.ToSecretData())
			if err != nil {
				t.Fatalf("applied set does not round-trip: %v", err)
			}
			again := Plan(stored, true, p, tt.req, tt.now)
			if again.Action != ActionNone || !again.Next.Equal(d.Next) {
				t.Errorf("planning again gave %s, next %v; want nothing to do, next %v", again.Action, again.Next, d.Next)
			}
			if !NextRotation(stored, p).Equal(tt.want.currentSince.Add(p.Every)) {
				t.Errorf("NextRotation %v", NextRotation(stored, p))
			}
			if !PreviousExpiry(stored).Equal(tt.want.prevExpires) {
				t.Errorf("PreviousExpiry %v, want %v", PreviousExpiry(stored), tt.want.prevExpires)
			}
		})
	}
}

func TestApplyDoesNotAliasInput(t *testing.T) {
	keys := withPrevious(keysAt(t0), t0.Add(day))
	d := Plan(keys, true, DefaultPolicy, Request{Token: "r1"}, t0.Add(time.Hour))
	got, err := Apply(keys, d, newSecret, newID)
	if err != nil {
		t.Fatal(err)
	}
	got.Previous.ExpiresAt = time.Time{}
	if keys.Current.ExpiresAt != (time.Time{}) || keys.Previous.ID != "key_prev" || !keys.Previous.ExpiresAt.Equal(t0.Add(day)) {
		t.Fatalf("Apply changed its input: %+v %+v", keys.Current, keys.Previous)
	}
}

func TestApplyKeepsKeysOnError(t *testing.T) {
	keys := withPrevious(keysAt(t0), t0.Add(day))
	d := Plan(keys, true, DefaultPolicy, Request{Token: "r1"}, t0.Add(time.Hour))
	boom := errors.New("entropy ran out")
	tests := []struct {
		name      string
		newSecret func() (string, error)
		newID     func() string
		wantMsg   string
	}{
		{name: "secret generator fails", newSecret: func() (string, error) { return "", boom }, newID: newID, wantMsg: "entropy ran out"},
		{name: "malformed secret", newSecret: func() (string, error) { return "whsec_short", nil }, newID: newID, wantMsg: "malformed signing secret"},
		{name: "empty ID", newSecret: newSecret, newID: func() string { return "" }, wantMsg: "ID is empty"},
		{name: "ID collision", newSecret: newSecret, newID: func() string { return "key_cur" }, wantMsg: "already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Apply(keys, d, tt.newSecret, tt.newID)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantMsg)
			}
			if !reflect.DeepEqual(got, keys) || got.Previous != keys.Previous {
				t.Fatalf("keys changed on error: %+v", got)
			}
		})
	}
}

func TestApplyRejectsUnknownAction(t *testing.T) {
	keys := keysAt(t0)
	if _, err := Apply(keys, Decision{Action: "Shred"}, newSecret, newID); err == nil {
		t.Fatal("expected an error")
	}
}

func TestApplyRejectsUnusableCurrent(t *testing.T) {
	keys := signing.KeySet{Current: signing.Key{ID: "key_cur", Secret: "whsec_"}, Previous: &signing.Key{ID: "key_prev", Secret: secretC}}
	if _, err := Apply(keys, Decision{Action: ActionDropPrevious}, newSecret, newID); err == nil {
		t.Fatal("expected an error: dropping the previous key would leave no usable key")
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       Policy
		wantMsg string
	}{
		{name: "default", p: DefaultPolicy},
		{name: "no overlap", p: Policy{Every: time.Hour}},
		{name: "zero interval", p: Policy{}, wantMsg: "must be positive"},
		{name: "negative overlap", p: Policy{Every: time.Hour, Overlap: -time.Second}, wantMsg: "must not be negative"},
		{name: "overlap equals interval", p: Policy{Every: time.Hour, Overlap: time.Hour}, wantMsg: "shorter than the rotation interval"},
		{name: "overlap exceeds interval", p: Policy{Every: time.Hour, Overlap: 2 * time.Hour}, wantMsg: "shorter than the rotation interval"},
		{name: "sub-second", p: Policy{Every: time.Hour, Overlap: 1500 * time.Millisecond}, wantMsg: "whole seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantMsg)
			}
		})
	}
}
