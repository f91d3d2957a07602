package signing

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func headers(id, ts, sig string) http.Header {
	h := http.Header{}
	for k, v := range map[string]string{HeaderID: id, HeaderTimestamp: ts, HeaderSignature: sig} {
		if v != "" {
			h.Set(k, v)
		}
	}
	return h
}

func TestVerify(t *testing.T) {
	vecNow := time.Unix(vectorTS, 0)
	ts := strconv.Itoa(vectorTS)
	otherSig := "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	tests := []struct {
		name      string
		secrets   []string
		h         http.Header
		body      string
		now       time.Time
		tolerance time.Duration
		want      error // nil means accepted
	}{
		{name: "vector", secrets: []string{vectorSecret}, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow},
		{name: "bare base64 secret", secrets: []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow},
		{name: "second of two signatures", secrets: []string{vectorSecret}, h: headers(vectorID, ts, otherSig+" "+vectorSig), body: vectorBody, now: vecNow},
		{name: "second of two secrets", secrets: []string{testSecretB, vectorSecret}, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow},
		{name: "unknown versions ignored", secrets: []string{vectorSecret}, h: headers(vectorID, ts, "v1a,xyz v2,abc "+vectorSig), body: vectorBody, now: vecNow},
		{name: "at the edge of tolerance", secrets: []string{vectorSecret}, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow.Add(5 * time.Minute)},
		{name: "custom tolerance", secrets: []string{vectorSecret}, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow.Add(time.Hour), tolerance: 2 * time.Hour},

		{name: "missing id", secrets: []string{vectorSecret}, h: headers("", ts, vectorSig), body: vectorBody, now: vecNow, want: ErrMissingHeader},
		{name: "missing timestamp", secrets: []string{vectorSecret}, h: headers(vectorID, "", vectorSig), body: vectorBody, now: vecNow, want: ErrMissingHeader},
		{name: "missing signature", secrets: []string{vectorSecret}, h: headers(vectorID, ts, ""), body: vectorBody, now: vecNow, want: ErrMissingHeader},
		{name: "timestamp not a number", secrets: []string{vectorSecret}, h: headers(vectorID, "soon", vectorSig), body: vectorBody, now: vecNow, want: ErrInvalidTimestamp},
		{name: "timestamp overflows", secrets: []string{vectorSecret}, h: headers(vectorID, "99999999999999999999", vectorSig), body: vectorBody, now: vecNow, want: ErrInvalidTimestamp},
		{name: "too old", secrets: []string{vectorSecret}, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow.Add(5*time.Minute + time.Second), want: ErrTimestampTooOld},
		{name: "too new", secrets: []string{vectorSecret}, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow.Add(-5*time.Minute - time.Second), want: ErrTimestampTooNew},
		{name: "extreme past", secrets: []string{vectorSecret}, h: headers(vectorID, "-9223372036854775808", vectorSig), body: vectorBody, now: vecNow, want: ErrTimestampTooOld},
		{name: "extreme future", secrets: []string{vectorSecret}, h: headers(vectorID, "9223372036854775807", vectorSig), body: vectorBody, now: vecNow, want: ErrTimestampTooNew},
		{name: "wrong key", secrets: []string{testSecretB}, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow, want: ErrNoMatchingSignature},
		{name: "changed body", secrets: []string{vectorSecret}, h: headers(vectorID, ts, vectorSig), body: `{"test": 2432232315}`, now: vecNow, want: ErrNoMatchingSignature},
		{name: "changed id", secrets: []string{vectorSecret}, h: headers("msg_other", ts, vectorSig), body: vectorBody, now: vecNow, want: ErrNoMatchingSignature},
		{name: "signature without version", secrets: []string{vectorSecret}, h: headers(vectorID, ts, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), body: vectorBody, now: vecNow, want: ErrNoMatchingSignature},
		{name: "right signature, wrong version", secrets: []string{vectorSecret}, h: headers(vectorID, ts, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), body: vectorBody, now: vecNow, want: ErrNoMatchingSignature},
		{name: "no secrets", secrets: nil, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow, want: ErrNoMatchingSignature},
		{name: "malformed secret", secrets: []string{"whsec_!!"}, h: headers(vectorID, ts, vectorSig), body: vectorBody, now: vecNow, want: ErrMalformedSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secrets, tt.h, []byte(tt.body), tt.now, tt.tolerance)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}
