package signing

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key is one signing key.
type Key struct {
	ID string
	// Secret is the whsec_ form of the key.
	Secret    string
	CreatedAt time.Time
	// ExpiresAt is when a previous key stops being used; zero for the current
	// key, which lives until the next rotation.
	ExpiresAt time.Time
}

// String describes the key without its secret, so that printing a Key or a
// KeySet by accident (%v, %+v, %#v) cannot leak it into a log.
func (k Key) String() string {
	s := "{ID:" + k.ID + " Secret:<redacted>"
	if !k.CreatedAt.IsZero() {
		s += " CreatedAt:" + formatTime(k.CreatedAt)
	}
	if !k.ExpiresAt.IsZero() {
		s += " ExpiresAt:" + formatTime(k.ExpiresAt)
	}
	return s + "}"
}

// GoString redacts the secret from %#v as String does from %v.
func (k Key) GoString() string { return "signing.Key" + k.String() }

// KeySet is what an endpoint signs with: the current key and, during a
// rotation's overlap, the key it replaced. A rotation during an overlap moves
// the previous key to Older, where it keeps signing until its own ExpiresAt:
// a key announced to receivers as valid until some time is never dropped
// earlier by a later rotation.
type KeySet struct {
	Current  Key
	Previous *Key
	// Older are keys replaced before Previous whose overlap has not ended,
	// newest first.
	Older []Key
	// LastRequest is the token of the last manual rotation request that was
	// carried out, so the same request never rotates twice.
	LastRequest string
}

// Data keys of the Secret that holds generated keys. They are plain words so
// that `kubectl get secret -o yaml` is self-explanatory; times are RFC 3339.
const (
	DataCurrent         = "current"
	DataCurrentID       = "current.id"
	DataCurrentCreated  = "current.created"
	DataPrevious        = "previous"
	DataPreviousID      = "previous.id"
	DataPreviousCreated = "previous.created"
	DataPreviousExpires = "previous.expires"
	DataLastRequest     = "rotation.lastRequest"
	// DataOlder numbers the keys of KeySet.Older: older.1, older.1.id,
	// older.1.created, older.1.expires, older.2, ...
	DataOlder = "older"

	// DefaultUserSecretKey is the data key read from a user-provided Secret
	// when the endpoint does not name one.
	DefaultUserSecretKey = "secret"
)

// ErrInvalidKeySet is wrapped by errors about a Secret's contents.
var ErrInvalidKeySet = errors.New("invalid signing key Secret")

// ToSecretData lays the set out as Secret data.
func (ks KeySet) ToSecretData() map[string][]byte {
	data := map[string][]byte{
		DataCurrent:        []byte(ks.Current.Secret),
		DataCurrentID:      []byte(ks.Current.ID),
		DataCurrentCreated: []byte(formatTime(ks.Current.CreatedAt)),
	}
	if p := ks.Previous; p != nil {
		data[DataPrevious] = []byte(p.Secret)
		data[DataPreviousID] = []byte(p.ID)
		data[DataPreviousCreated] = []byte(formatTime(p.CreatedAt))
		data[DataPreviousExpires] = []byte(formatTime(p.ExpiresAt))
	}
	for i, k := range ks.Older {
		prefix := olderPrefix(i)
		data[prefix] = []byte(k.Secret)
		data[prefix+".id"] = []byte(k.ID)
		data[prefix+".created"] = []byte(formatTime(k.CreatedAt))
		data[prefix+".expires"] = []byte(formatTime(k.ExpiresAt))
	}
	if ks.LastRequest != "" {
		data[DataLastRequest] = []byte(ks.LastRequest)
	}
	return data
}

// olderPrefix is the data key of Older[i]: "older.1", "older.2", ...
func olderPrefix(i int) string { return DataOlder + "." + strconv.Itoa(i+1) }

// KeySetFromSecretData reads a set written by ToSecretData. Every key it
// returns has a secret that CheckSecret accepts, so a Signer can always be
// built from the result.
func KeySetFromSecretData(data map[string][]byte) (KeySet, error) {
	current, err := keyFromData(data, DataCurrent, DataCurrentID, DataCurrentCreated, "")
	if err != nil {
		return KeySet{}, err
	}
	ks := KeySet{Current: current, LastRequest: string(data[DataLastRequest])}
	if _, ok := data[DataPrevious]; ok {
		prev, err := keyFromData(data, DataPrevious, DataPreviousID, DataPreviousCreated, DataPreviousExpires)
		if err != nil {
			return KeySet{}, err
		}
		ks.Previous = &prev
	}
	for i := 0; ; i++ {
		prefix := olderPrefix(i)
		if _, ok := data[prefix]; !ok {
			break
		}
		k, err := keyFromData(data, prefix, prefix+".id", prefix+".created", prefix+".expires")
		if err != nil {
			return KeySet{}, err
		}
		ks.Older = append(ks.Older, k)
	}
	return ks, nil
}

// Retired returns Previous and Older, newest first.
func (ks KeySet) Retired() []Key {
	var keys []Key
	if ks.Previous != nil {
		keys = append(keys, *ks.Previous)
	}
	return append(keys, ks.Older...)
}

func keyFromData(data map[string][]byte, secretKey, idKey, createdKey, expiresKey string) (Key, error) {
	secret, ok := data[secretKey]
	if !ok {
		return Key{}, fmt.Errorf("%w: data key %q is missing", ErrInvalidKeySet, secretKey)
	}
	if err := CheckSecret(string(secret)); err != nil {
		return Key{}, fmt.Errorf("%w: data key %q: %w", ErrInvalidKeySet, secretKey, err)
	}
	id := string(data[idKey])
	if id == "" {
		return Key{}, fmt.Errorf("%w: data key %q is missing or empty", ErrInvalidKeySet, idKey)
	}
	k := Key{ID: id, Secret: string(secret)}
	var err error
	// A previous key written by an older version may lack its creation time;
	// it is informational, so only the current key's is required.
	if k.CreatedAt, err = parseTime(data, createdKey, expiresKey == ""); err != nil {
		return Key{}, err
	}
	if expiresKey != "" {
		if k.ExpiresAt, err = parseTime(data, expiresKey, true); err != nil {
			return Key{}, err
		}
	}
	return k, nil
}

func parseTime(data map[string][]byte, key string, required bool) (time.Time, error) {
	raw, ok := data[key]
	if !ok || len(raw) == 0 {
		if required {
			return time.Time{}, fmt.Errorf("%w: data key %q is missing or empty", ErrInvalidKeySet, key)
		}
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, string(raw))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: data key %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", ErrInvalidKeySet, key)
	}
	return t, nil
}

func formatTime(t time.Time) string {
	// Second precision is what RFC 3339 status fields carry, and it makes the
	// Secret round-trip exactly.
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// KeySetFromUserSecret reads a user-provided Secret that holds a single key
// under dataKey (DefaultUserSecretKey when empty). Such a key is never
// rotated, so the set has no previous key and no creation time.
//
// The key ID is a fingerprint of the key so that it is stable across reads
// and changes exactly when the user replaces the key.
func KeySetFromUserSecret(data map[string][]byte, dataKey string) (KeySet, error) {
	if dataKey == "" {
		dataKey = DefaultUserSecretKey
	}
	raw, ok := data[dataKey]
	if !ok {
		return KeySet{}, fmt.Errorf("%w: data key %q is missing", ErrInvalidKeySet, dataKey)
	}
	// `kubectl create secret --from-file` keeps the file's trailing newline.
	secret := strings.TrimSpace(string(raw))
	key, err := ParseSecret(secret)
	if err != nil {
		return KeySet{}, fmt.Errorf("%w: data key %q: %w", ErrInvalidKeySet, dataKey, err)
	}
	return KeySet{Current: Key{
		ID: fingerprintID(key),
		// Normalised so a bare-base64 key is signed with exactly like a
		// prefixed one and the set reads the same everywhere.
		Secret: SecretPrefix + base64.StdEncoding.EncodeToString(key),
	}}, nil
}

// fingerprintID derives a key ID from the key. Eight bytes of SHA-256 are
// enough to tell keys apart and reveal nothing usable about a key of the
// required minimum length.
func fingerprintID(key []byte) string {
	sum := sha256.Sum256(key)
	return keyIDPrefix + hex.EncodeToString(sum[:8])
}
