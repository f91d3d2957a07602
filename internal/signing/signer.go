package signing

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names of the Standard Webhooks wire format.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// signatureVersion prefixes each signature; "v1" is HMAC-SHA256.
const signatureVersion = "v1,"

const (
	// encodedSumLen is the length of a base64-encoded HMAC-SHA256 sum.
	encodedSumLen = (sha256.Size + 2) / 3 * 4
	// sigLen is the length of one "v1,<signature>" entry.
	sigLen = len(signatureVersion) + encodedSumLen
)

// Signer signs deliveries with the keys of one endpoint. It is safe for
// concurrent use.
type Signer struct {
	keys []signingKey
	// expires is when the set of live keys changes on its own (the previous
	// key's expiry), zero when it never does.
	expires time.Time
}

type signingKey struct {
	id string
	// macs holds ready HMAC states: hmac.New derives the inner and outer
	// padded keys, which is most of the fixed cost of a signature, so each
	// state is built once and Reset between uses.
	macs *sync.Pool
	// ed is set for an ed25519 key, which signs "v1a," instead of "v1,".
	ed ed25519.PrivateKey
}

// scratch holds the per-call buffers, pooled so a signature costs only the
// returned string.
type scratch struct {
	prefix []byte
	sum    [sha256.Size]byte
	// msg is prefix+body for ed25519, which signs the message in one piece.
	msg []byte
}

// maxPooledMsg bounds the ed25519 message buffer kept in the pool.
const maxPooledMsg = 64 << 10

var scratchPool = sync.Pool{New: func() any { return &scratch{prefix: make([]byte, 0, 128)} }}

// NewSigner returns a Signer for the keys of ks that are live at now: the
// current key, and each replaced key until it expires.
func NewSigner(ks KeySet, now time.Time) (*Signer, error) {
	s := &Signer{}
	if err := s.add(ks.Current); err != nil {
		return nil, err
	}
	for _, k := range ks.Retired() {
		if !now.Before(k.ExpiresAt) {
			continue
		}
		if err := s.add(k); err != nil {
			return nil, err
		}
		if s.expires.IsZero() || k.ExpiresAt.Before(s.expires) {
			s.expires = k.ExpiresAt
		}
	}
	return s, nil
}

func (s *Signer) add(k Key) error {
	if Algorithm(k.Secret) == AlgorithmEd25519 {
		priv, err := ParseEd25519Secret(k.Secret)
		if err != nil {
			return fmt.Errorf("building signer for key %s: %w", k.ID, err)
		}
		s.keys = append(s.keys, signingKey{id: k.ID, ed: priv})
		return nil
	}
	secret, err := ParseSecret(k.Secret)
	if err != nil {
		return fmt.Errorf("building signer for key %s: %w", k.ID, err)
	}
	s.keys = append(s.keys, signingKey{
		id:   k.ID,
		macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }},
	})
	return nil
}

// KeyIDs returns the IDs of the keys Sign uses, current first.
func (s *Signer) KeyIDs() []string {
	ids := make([]string, len(s.keys))
	for i, k := range s.keys {
		ids[i] = k.id
	}
	return ids
}

// Expires returns when the first replaced key stops being live, or the zero time.
// A Signer keeps signing with every key it was built with, so the caller must
// build a new one by then.
func (s *Signer) Expires() time.Time { return s.expires }

// Sign returns the webhook-signature header value for a delivery: one
// "v1,<signature>" per HMAC key and one "v1a,<signature>" per ed25519 key,
// space-separated, current key first. The webhook-timestamp header must carry
// ts as Unix seconds; SetHeaders does so.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	var msg []byte // built on the first ed25519 key
	sc.prefix = append(sc.prefix[:0], id...)
	sc.prefix = append(sc.prefix, '.')
	sc.prefix = strconv.AppendInt(sc.prefix, ts.Unix(), 10)
	sc.prefix = append(sc.prefix, '.')

	var out strings.Builder
	out.Grow(len(s.keys)*(sigLen+1) - 1)
	var enc [encodedSumLen]byte
	for i, k := range s.keys {
		if i > 0 {
			out.WriteByte(' ')
		}
		if k.ed != nil {
			if msg == nil {
				msg = append(append(sc.msg[:0], sc.prefix...), body...)
				// Pooled only up to a size, so one large body does not stay in memory.
				if cap(msg) <= maxPooledMsg {
					sc.msg = msg
				}
			}
			out.WriteString(signatureVersionEd25519)
			out.WriteString(base64.StdEncoding.EncodeToString(ed25519.Sign(k.ed, msg)))
			continue
		}
		mac := k.macs.Get().(hash.Hash)
		mac.Reset()
		mac.Write(sc.prefix)
		mac.Write(body)
		sum := mac.Sum(sc.sum[:0])
		k.macs.Put(mac)
		base64.StdEncoding.Encode(enc[:], sum)
		out.WriteString(signatureVersion)
		out.Write(enc[:])
	}
	return out.String()
}

// SetHeaders sets the three Standard Webhooks headers of a delivery, so the
// timestamp that is sent is always the one that was signed.
func (s *Signer) SetHeaders(h http.Header, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, s.Sign(id, ts, body))
}
