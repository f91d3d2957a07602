package status

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/hookline/hookline/internal/engine"
)

// report is what one process stores under its key.
type report struct {
	// Final marks the last report of a process that stopped cleanly: it is
	// folded into the base at once instead of after GoneAfter.
	Final bool `json:"final,omitempty"`
	// Applied maps "namespace/name" of an endpoint to the hookline.io/enable
	// value this process has applied (empty values are left out).
	Applied  map[string]string `json:"applied,omitempty"`
	Snapshot engine.Snapshot   `json:"-"`
}

// base holds the figures of processes that are gone.
type base struct {
	// Folded are the keys whose figures the base holds; their entries are
	// deleted after the base is written and never folded again.
	Folded   []foldedKey     `json:"folded,omitempty"`
	Snapshot engine.Snapshot `json:"-"`
}

type foldedKey struct {
	Key string    `json:"key"`
	At  time.Time `json:"at"`
}

// The wire forms carry the snapshot through wireSnapshot, because
// engine.CircuitState marshals to its name but cannot be read back.
type (
	wireReport struct {
		report
		Snapshot wireSnapshot `json:"snapshot"`
	}
	wireBase struct {
		base
		Snapshot wireSnapshot `json:"snapshot"`
	}
	wireSnapshot struct {
		engine.Snapshot
		Endpoints []wireEndpoint `json:"endpoints"`
	}
	wireEndpoint struct {
		engine.EndpointStats
		Circuit circuitName `json:"circuit"`
	}
	circuitName engine.CircuitState
)

func (c circuitName) MarshalText() ([]byte, error) { return engine.CircuitState(c).MarshalText() }

func (c *circuitName) UnmarshalText(b []byte) error {
	for _, s := range []engine.CircuitState{engine.CircuitClosed, engine.CircuitOpen, engine.CircuitHalfOpen} {
		if s.String() == string(b) {
			*c = circuitName(s)
			return nil
		}
	}
	return fmt.Errorf("unknown circuit state %q", b)
}

func toWire(s engine.Snapshot) wireSnapshot {
	w := wireSnapshot{Snapshot: s, Endpoints: make([]wireEndpoint, len(s.Endpoints))}
	w.Snapshot.Endpoints = nil
	for i, e := range s.Endpoints {
		w.Endpoints[i] = wireEndpoint{EndpointStats: e, Circuit: circuitName(e.Circuit)}
	}
	return w
}

func fromWire(w wireSnapshot) engine.Snapshot {
	s := w.Snapshot
	s.Endpoints = make([]engine.EndpointStats, len(w.Endpoints))
	for i, e := range w.Endpoints {
		s.Endpoints[i] = e.EndpointStats
		s.Endpoints[i].Circuit = engine.CircuitState(e.Circuit)
	}
	return s
}

// Values are gzipped JSON: a process's figures grow with the objects it has
// delivered for, and a KV value must fit in one NATS message (1 MiB by
// default); JSON of this shape shrinks about tenfold.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decode(data []byte, v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func encodeReport(r report) ([]byte, error) {
	return encode(wireReport{report: r, Snapshot: toWire(r.Snapshot)})
}

func decodeReport(data []byte) (report, error) {
	var w wireReport
	if err := decode(data, &w); err != nil {
		return report{}, fmt.Errorf("decoding a dispatcher's report: %w", err)
	}
	w.report.Snapshot = fromWire(w.Snapshot)
	return w.report, nil
}

func encodeBase(b base) ([]byte, error) {
	return encode(wireBase{base: b, Snapshot: toWire(b.Snapshot)})
}

func decodeBase(data []byte) (base, error) {
	var w wireBase
	if err := decode(data, &w); err != nil {
		return base{}, fmt.Errorf("decoding the base figures: %w", err)
	}
	w.base.Snapshot = fromWire(w.Snapshot)
	return w.base, nil
}
