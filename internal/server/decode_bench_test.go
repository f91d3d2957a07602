package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

var benchBody = []byte(`{"type":"invoice.paid","id":"inv_123:paid","data":{"invoice":"in_123","customer":"cus_456","lines":[` +
	strings.Repeat(`{"sku":"sku_abcdef","qty":2,"amount":1999,"currency":"eur"},`, 14) + `{"sku":"last","qty":1,"amount":1,"currency":"eur"}]}}`)

// BenchmarkDecode compares the scanner with the encoding/json decoding it replaced
// (a Decoder with DisallowUnknownFields into a struct with a json.RawMessage).
func BenchmarkDecode(b *testing.B) {
	b.Run("scanner", func(b *testing.B) {
		b.SetBytes(int64(len(benchBody)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeEvent(benchBody, DefaultMaxJSONDepth); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(benchBody)))
		b.ReportAllocs()
		for b.Loop() {
			var w struct {
				Type string          `json:"type"`
				ID   string          `json:"id"`
				Time string          `json:"time"`
				Data json.RawMessage `json:"data"`
			}
			dec := json.NewDecoder(bytes.NewReader(benchBody))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&w); err != nil {
				b.Fatal(err)
			}
		}
	})
}
