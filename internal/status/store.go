package status

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/internal/engine"
)

// Bucket is the JetStream key-value bucket holding the reports and the base.
// Its name is part of the stored layout, like the queue's stream names.
const Bucket = "HL_STATS"

const (
	baseKey      = "base"
	reportPrefix = "p."
)

// store is the bucket.
type store struct {
	js       jetstream.JetStream
	replicas int

	mu sync.Mutex
	kv jetstream.KeyValue
}

func (s *store) bucket() jetstream.KeyValue {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kv
}

func openStore(ctx context.Context, nc *nats.Conn, replicas int) (*store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	s := &store{js: js, replicas: max(replicas, 1)}
	if err := s.ensure(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ensure creates the bucket, or updates its settings.
func (s *store) ensure(ctx context.Context) error {
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "hookline: delivery figures of each dispatcher process, merged into status",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    s.replicas,
	})
	if err != nil {
		return fmt.Errorf("creating the %s bucket: %w", Bucket, err)
	}
	s.mu.Lock()
	s.kv = kv
	s.mu.Unlock()
	return nil
}

// reportKey is a process's key: KV keys allow letters, digits and -/_=.,
// and a dot separates tokens.
func reportKey(process string, epoch int) string {
	b := []byte(process)
	for i, c := range b {
		if !keyByte(c) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		b = []byte("_")
	}
	return reportPrefix + string(b) + "." + strconv.Itoa(epoch)
}

func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '='
}

// load reads every report, decoding only those whose revision changed since
// the last call (cache), and the base.
func (s *store) load(ctx context.Context, cache map[string]entry, log logr.Logger) (entries []entry, b base, baseRev uint64, err error) {
	lister, err := s.bucket().ListKeysFiltered(ctx, reportPrefix+">")
	if err != nil {
		return nil, b, 0, fmt.Errorf("listing reports: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		e, err := s.bucket().Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, b, 0, fmt.Errorf("reading report %s: %w", k, err)
		}
		seen[k] = true
		if c, ok := cache[k]; ok && c.rev == e.Revision() {
			entries = append(entries, c)
			continue
		}
		rep, err := decodeReport(e.Value())
		if err != nil {
			// A value that cannot be read is skipped, not folded: its process
			// may be a newer version that reads it fine.
			log.Error(err, "Skipping an unreadable report", "key", k)
			continue
		}
		c := entry{key: k, rev: e.Revision(), rep: rep}
		cache[k] = c
		entries = append(entries, c)
	}
	for k := range cache {
		if !seen[k] {
			delete(cache, k)
		}
	}
	be, err := s.bucket().Get(ctx, baseKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return entries, b, 0, nil
	case err != nil:
		return nil, b, 0, fmt.Errorf("reading the base figures: %w", err)
	}
	if b, err = decodeBase(be.Value()); err != nil {
		return nil, b, 0, err
	}
	return entries, b, be.Revision(), nil
}

// writeBase stores the base if it is still at rev (0: if there is none yet).
func (s *store) writeBase(ctx context.Context, b base, rev uint64) error {
	data, err := encodeBase(b)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = s.bucket().Create(ctx, baseKey, data)
	} else {
		_, err = s.bucket().Update(ctx, baseKey, data, rev)
	}
	if err != nil {
		return fmt.Errorf("writing the base figures: %w", err)
	}
	return nil
}

func (s *store) remove(ctx context.Context, key string) error {
	if err := s.bucket().Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deleting report %s: %w", key, err)
	}
	return nil
}

// publisher writes one process's reports.
//
// It writes with compare-and-set on the revision it wrote last. If the key was
// deleted meanwhile, the writer folded this process into the base (it looked
// gone); the publisher then moves to a new key and from there on reports only
// what it counted after the last report it wrote, which is what was folded.
type publisher struct {
	st *store

	mu      sync.Mutex
	process string
	epoch   int
	rev     uint64           // revision of the last write; 0: the key is new
	last    *engine.Snapshot // raw figures of the last report written
	offset  *engine.Snapshot // figures already folded into the base
	closed  bool
}

var errFolded = errors.New("the report was folded into the base while this process ran")

func (p *publisher) publish(ctx context.Context, snap engine.Snapshot, applied map[string]string, final bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if p.process == "" {
		p.process = snap.Process
	}
	for {
		data, err := encodeReport(report{Final: final, Applied: applied, Snapshot: subtract(snap, p.offset)})
		if err != nil {
			return err
		}
		err = p.write(ctx, data)
		if errors.Is(err, errFolded) {
			p.offset, p.rev = p.last, 0
			p.epoch++
			continue
		}
		if err != nil {
			return err
		}
		p.last, p.closed = &snap, final
		return nil
	}
}

func (p *publisher) key() string { return reportKey(p.process, p.epoch) }

func (p *publisher) write(ctx context.Context, data []byte) error {
	key := p.key()
	var rev uint64
	var err error
	if p.rev == 0 {
		rev, err = p.st.bucket().Create(ctx, key, data)
	} else {
		rev, err = p.st.bucket().Update(ctx, key, data, p.rev)
	}
	switch {
	case err == nil:
		p.rev = rev
		return nil
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		// Nothing answered: the bucket may be gone (deleted by hand, or a
		// new NATS cluster), or its stream has no leader for a moment (a
		// cluster electing one after a node was lost answers the same). Only
		// a bucket that is gone starts a new key: moving on from a key that
		// still exists, and may hold a report whose answer was lost, would
		// count the difference twice.
		if _, gerr := p.st.js.KeyValue(ctx, Bucket); !errors.Is(gerr, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("writing report %s: %w", key, err)
		}
		// The status written so far seeds the new base (see writer.seed),
		// so from here on only the rest is reported.
		if err := p.st.ensure(ctx); err != nil {
			return err
		}
		return errFolded
	case !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("writing report %s: %w", key, err)
	}
	// Either the answer to our last write was lost (the key holds it) or the
	// key was folded and deleted.
	e, gerr := p.st.bucket().Get(ctx, key)
	switch {
	case gerr == nil:
		if rev, err = p.st.bucket().Update(ctx, key, data, e.Revision()); err != nil {
			return fmt.Errorf("writing report %s: %w", key, err)
		}
		p.rev = rev
		return nil
	case errors.Is(gerr, jetstream.ErrKeyNotFound):
		return errFolded
	default:
		return fmt.Errorf("reading back report %s: %w", key, gerr)
	}
}
