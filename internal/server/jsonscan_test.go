package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

var scannerSeeds = []string{
	`{"type":"a.b","data":{}}`,
	`{"type":"a.b","id":"x","time":"2026-11-26T20:00:00Z","data":[1,-2.5e+3,"s\"\\\/\b\f\n\r\t\u00e9",true,false,null,{"k":[[]]}]}`,
	`{"type":"a\u002eb","data":0}`,
	`{"type":null,"data":"x"}`,
	`{"data":{"a":{"b":{"c":[1,{"d":[]}]}}}}`,
	`{"type":1}`, `{"data":01}`, `{"data":1.}`, `{"data":-}`, `{"data":1e}`, `{"data":"\x"}`, `{"data":"\u12"}`,
	`{"data":[1,]}`, `{"data":{"a":1,}}`, `{"data":{"a" 1}}`, `{"data":tru}`, `{"data":nul}`, `{"data":"a` + "\n" + `"}`,
	`{} {}`, ` `, `[`, `{"data":{"a":1}]}`, `{"data":[1}}`,
	"{\"data\":\"\xff\"}",
}

// FuzzScanner holds the scanner to encoding/json: a value is accepted exactly when
// json.Valid accepts it, and an event's fields are what encoding/json decodes.
func FuzzScanner(f *testing.F) {
	for _, s := range scannerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			// encoding/json accepts invalid UTF-8 in strings; the handler rejects it
			// before scanning.
			return
		}
		// encoding/json nests up to 10,000 levels.
		s := scanner{b: b, maxDepth: 10000}
		raw, err := s.value()
		ok := err == nil && s.end()
		if ok != json.Valid(b) {
			t.Fatalf("scanner accepts %q: %v (err %v); json.Valid: %v", b, ok, err, !ok)
		}
		if ok && !bytes.Equal(raw, bytes.TrimLeft(b, " \t\r\n")[:len(raw)]) {
			t.Fatalf("value %q is not the start of %q", raw, b)
		}

		w, ferr := decodeEvent(b, DefaultMaxJSONDepth)
		if ferr != nil {
			return
		}
		if len(w.Data) > 0 && !json.Valid(w.Data) {
			t.Fatalf("data %q of %q is not valid JSON", w.Data, b)
		}
		var ref struct {
			Type, ID, Time *string
			Data           json.RawMessage
		}
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("the scanner accepted %q, which encoding/json rejects: %v", b, err)
		}
		str := func(p *string) string {
			if p == nil {
				return ""
			}
			return *p
		}
		// encoding/json matches field names case-insensitively and keeps the last of
		// repeated ones; the scanner rejects both, so only compare exact bodies.
		if !strings.Contains(string(b), `"Type"`) && !strings.Contains(string(b), `"ID"`) {
			if w.Type != str(ref.Type) || w.ID != str(ref.ID) || w.Time != str(ref.Time) {
				t.Fatalf("%q: scanner %+v, encoding/json type=%q id=%q time=%q", b, w, str(ref.Type), str(ref.ID), str(ref.Time))
			}
		}
	})
}

func TestDeepNesting(t *testing.T) {
	for _, max := range []int{0, 1, 64, 1000} {
		limit := max
		if limit == 0 {
			limit = DefaultMaxJSONDepth
		}
		deep := strings.Repeat("[", limit) + strings.Repeat("]", limit)
		if _, err := (&scanner{b: []byte(deep), maxDepth: max}).value(); err != nil {
			t.Errorf("limit %d, %d levels: %v", max, limit, err)
		}
		tooDeep := "[" + deep + "]"
		if _, err := (&scanner{b: []byte(tooDeep), maxDepth: max}).value(); err == nil || !strings.Contains(err.Error(), "nested more than") {
			t.Errorf("limit %d, %d levels: %v", max, limit+1, err)
		}
		tooDeepObj := strings.Repeat(`{"a":`, limit+1) + "1" + strings.Repeat("}", limit+1)
		if _, err := (&scanner{b: []byte(tooDeepObj), maxDepth: max}).value(); err == nil || !strings.Contains(err.Error(), "nested more than") {
			t.Errorf("limit %d, %d levels of objects: %v", max, limit+1, err)
		}
	}
}
