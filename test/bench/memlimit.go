package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The default pod's memory: the operator limits the dispatcher's container to 512Mi
// and sets GOMEMLIMIT to 90 % of it (internal/workload). The parked pass runs its
// dispatcher the same way, so its RSS is what that pod would see.
const (
	defaultPodMemory   = 512 << 20
	defaultPodMemLimit = "483183820" // defaultPodMemory / 10 * 9
)

// parseMemLimit checks a GOMEMLIMIT value (bytes, or a number with KiB, MiB or GiB)
// and returns it as bytes; "off" or "" is none ("").
func parseMemLimit(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "off" {
		return "", nil
	}
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 1 {
		return "", fmt.Errorf("%q is not a size: write bytes (483183820) or a number with KiB, MiB or GiB (460MiB), or off", s)
	}
	if v > (1<<62)/mult {
		return "", errors.New("too large")
	}
	return strconv.FormatInt(v*mult, 10), nil
}

// gcTrace is what the runtime's GODEBUG=gctrace=1 lines in a dispatcher's log say
// about its live heap: each collection prints "A->B->C MB", C being the heap it
// marked live (MiB).
type gcTrace struct {
	Collections int
	// PeakLive is the largest live heap a collection marked, LastLive the last's.
	PeakLive, LastLive int64
}

// readGCTrace reads the gctrace lines of the log at path.
func readGCTrace(path string) (gcTrace, error) {
	var t gcTrace
	f, err := os.Open(path)
	if err != nil {
		return t, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "gc ") {
			continue
		}
		// gc 12 @3.1s 2%: ..., 4->5->2 MB, 8 MB goal, ...
		for field := range strings.SplitSeq(line, ",") {
			heap, ok := strings.CutSuffix(strings.TrimSpace(field), " MB")
			if !ok || strings.Count(heap, "->") != 2 {
				continue
			}
			live, err := strconv.ParseInt(heap[strings.LastIndex(heap, "->")+2:], 10, 64)
			if err != nil {
				continue
			}
			t.Collections++
			t.LastLive = live << 20
			t.PeakLive = max(t.PeakLive, t.LastLive)
		}
	}
	return t, sc.Err()
}
