package server

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadAllSizes: whatever length is announced (none, the true one, too
// short, too long, past the first buffer), readAll returns exactly the body
// up to limit+1 bytes, reading it a byte at a time or all at once.
func TestReadAllSizes(t *testing.T) {
	body := strings.Repeat("0123456789", 1000) // 10,000 bytes
	for _, c := range []struct {
		name        string
		size, limit int64
		want        int
	}{
		{"unknown", -1, 1 << 20, len(body)},
		{"announced", int64(len(body)), 1 << 20, len(body)},
		{"announced too short", 10, 1 << 20, len(body)},
		{"announced too long", 1 << 20, 1 << 20, len(body)},
		{"announced empty", 0, 1 << 20, len(body)},
		{"over the limit", int64(len(body)), 100, 101},
	} {
		for _, oneByte := range []bool{false, true} {
			r := iotest.DataErrReader(strings.NewReader(body))
			if oneByte {
				r = iotest.OneByteReader(strings.NewReader(body))
			}
			got, err := readAll(r, c.limit, c.size)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if !bytes.Equal(got, []byte(body[:c.want])) {
				t.Errorf("%s (one byte at a time: %v): read %d bytes, want the first %d of the body", c.name, oneByte, len(got), c.want)
			}
		}
	}
	// A small announced body is read into a buffer of its size, not 4 KiB.
	small := strings.Repeat("x", 1000)
	got, err := readAll(strings.NewReader(small), 1<<20, int64(len(small)))
	if err != nil || string(got) != small || cap(got) > len(small)+1 {
		t.Errorf("a %d-byte body announced as such: %d bytes read into a buffer of %d (%v), want %d into at most %d", len(small), len(got), cap(got), err, len(small), len(small)+1)
	}
}
