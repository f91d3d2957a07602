package queue

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Grouped deliveries. Storing a delivery and removing it once it is sent are
// two of the five writes an event to one subscription costs (docs/benchmarks.md,
// "The floor"), and they cost the server per message, not per byte. So the
// fan-out stores the deliveries of one fetched batch of events that go to one
// subscription's endpoint, unordered and not parked, as one message: a group,
// on the endpoint's delivery subject with the group's size as one more token
// (hl.dlv.<p>.<ns>.<endpoint>.<n>), so the backlog is still counted per
// delivery from the server's subject index.
//
// A replica reading a group hands out each member as a Job of its own. The
// group's message is acknowledged, and removed, once every member is resolved:
// delivered, dropped, or stored again as a message of its own (a retry, a
// hold, a park, a dead letter), as a single delivery's resolution is stored
// today. What a group changes is a crash's cost: a group whose message is
// not acknowledged comes back whole, so its members already delivered are
// sent again (with the same webhook-id, which receivers de-duplicate by),
// where a single delivery comes back only if it was in flight.
//
// A dispatcher of an older release cannot decode a group, and drops what it
// cannot decode. So groups are stored only while every live replica reads
// them: each replica announces it in its member id (groupReader), and the
// partition consumers' filters take in the group subjects only then
// (groupsReadable). An older replica joining (a rollback) stops new groups at
// the next beat; see docs/upgrading.md for rolling back while groups wait.

const (
	// codecGroup is a group's format: the version byte, the count, then each
	// member's encoded delivery as a length-prefixed byte string.
	codecGroup = 7
	// maxGroup bounds the members of one group: a crash repeats at most
	// this many deliveries of a group, and a replica holds at most this many
	// per message it pulls ahead.
	maxGroup = 64
	// maxGroupBytes bounds a group's encoded size (unless one delivery is
	// larger): a replica pulls up to a few hundred messages ahead per
	// partition, and a group should not cost more memory there than a
	// large event does.
	maxGroupBytes = 64 << 10
	// groupReader prefixes the member id of a replica that reads groups.
	groupReader = "g_"
	// groupProgressEvery spaces the lease extensions a group's members ask
	// for: one is enough for all of them.
	groupProgressEvery = time.Second
)

// groupSubject is the subject of a group of n deliveries to the endpoint.
func groupSubject(ns, endpoint string, n int) string {
	return deliverySubject(ns, endpoint) + "." + strconv.Itoa(n)
}

// splitGroupSubject returns the delivery subject a group subject is on and the
// group's size; ok is false for any other subject.
func splitGroupSubject(subject string) (single string, n int, ok bool) {
	rest, ok := strings.CutPrefix(subject, subjDeliver+".")
	if !ok || strings.Count(rest, ".") != 3 {
		return "", 0, false
	}
	i := strings.LastIndexByte(subject, '.')
	n, err := strconv.Atoi(subject[i+1:])
	if err != nil || n < 2 {
		return "", 0, false
	}
	return subject[:i], n, true
}

// encodeGroup encodes deliveries as one group message.
func encodeGroup(ds []*Delivery) []byte {
	size := 8
	for _, d := range ds {
		size += 4 + deliverySize(d)
	}
	e := encoder{b: make([]byte, 0, size)}
	e.byte(codecGroup)
	e.uvarint(uint64(len(ds)))
	for _, d := range ds {
		e.bytes(encodeDelivery(d))
	}
	return e.b
}

// decodeGroup returns the members of a group message, each as it would be
// stored on its own (encodeDelivery), sharing b's memory.
func decodeGroup(b []byte) ([][]byte, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != codecGroup {
		return nil, fmt.Errorf("decoding delivery group: unknown format version %d", v)
	}
	n := d.uvarint()
	if d.err == nil && (n < 1 || n > uint64(len(b))) {
		return nil, fmt.Errorf("decoding delivery group: %d members", n)
	}
	var out [][]byte
	for range n {
		if m := d.bytes(); d.err == nil {
			out = append(out, m)
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("decoding delivery group: %w", d.err)
	}
	return out, nil
}

// DecodeDeliveries decodes a message of the deliveries stream, a group or a
// single delivery, for tools that watch the queue (make bench times the
// fan-out by the deliveries it sees stored).
func DecodeDeliveries(subject string, data []byte) ([]Delivery, error) {
	if _, _, ok := splitGroupSubject(subject); !ok {
		d, err := decodeDelivery(data)
		if err != nil {
			return nil, err
		}
		return []Delivery{d}, nil
	}
	members, err := decodeGroup(data)
	if err != nil {
		return nil, err
	}
	out := make([]Delivery, 0, len(members))
	for _, m := range members {
		d, err := decodeDelivery(m)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// groupMsgID identifies a group by its members, so that a fan-out repeated
// with the same events stores it once.
func groupMsgID(ds []*Delivery) string {
	h := sha256.New()
	h.Write([]byte("group"))
	for _, d := range ds {
		h.Write([]byte{0})
		h.Write([]byte(deliveryMsgID(d)))
	}
	var out [22]byte
	base64.RawURLEncoding.Encode(out[:], h.Sum(nil)[:16])
	return string(out[:])
}

// groupable tells whether the fan-out may store d in a group: an unordered
// delivery to be attempted now. An ordered one keeps its lane's order per
// message, and a parked one waits on its own subject.
func groupable(d *Delivery) bool { return !d.Ordered && !d.Park }

// grouper collects a fetched batch's groupable deliveries per subscription,
// in groups of at most maxGroup deliveries and maxGroupBytes.
type grouper struct {
	open  map[string]*pendingGroup
	order []*pendingGroup
}

type pendingGroup struct {
	ds     []*Delivery
	size   int   // of the deliveries, encoded (deliverySize)
	events []int // the batch's items whose deliveries are in it, each once
}

// add puts d, a delivery of the batch's item i, in its subscription's group.
func (g *grouper) add(i int, d *Delivery) {
	if g.open == nil {
		g.open = map[string]*pendingGroup{}
	}
	key := d.Event.Namespace + "\x00" + d.Endpoint + "\x00" + d.SubscriptionUID
	p, size := g.open[key], deliverySize(d)
	if p == nil || len(p.ds) == maxGroup || p.size+size > maxGroupBytes {
		p = &pendingGroup{}
		g.open[key] = p
		g.order = append(g.order, p)
	}
	p.ds = append(p.ds, d)
	p.size += size
	if n := len(p.events); n == 0 || p.events[n-1] != i {
		p.events = append(p.events, i)
	}
}

// publish stores each group with pub, a group of one as the single delivery
// it is, and returns each group's future with the items it carries.
func (g *grouper) publish(pub publishFunc) (futures []jetstream.PubAckFuture, items [][]int, errs []error) {
	for _, p := range g.order {
		var m *nats.Msg
		if len(p.ds) == 1 {
			d := p.ds[0]
			m = &nats.Msg{Subject: laneSubject(d), Data: encodeDelivery(d),
				Header: nats.Header{jetstream.MsgIDHeader: []string{deliveryMsgID(d)}}}
		} else {
			d := p.ds[0]
			m = &nats.Msg{Subject: groupSubject(d.Event.Namespace, d.Endpoint, len(p.ds)), Data: encodeGroup(p.ds),
				Header: nats.Header{jetstream.MsgIDHeader: []string{groupMsgID(p.ds)}}}
		}
		f, err := pub(m)
		futures, items, errs = append(futures, f), append(items, p.events), append(errs, err)
	}
	return futures, items, errs
}

// group is a group message being handed out as its members.
type group struct {
	jetstream.Msg
	q *Queue
	// left counts the members not resolved.
	left atomic.Int64
	// progress is when the lease was last extended (unix nanoseconds).
	progress atomic.Int64
}

// member is one delivery of a group, standing for the group's message in its
// Job: resolving it counts down the group, and the last one acknowledges the
// group's message.
type member struct {
	*group
	data    []byte
	subject string
	done    atomic.Bool
}

var _ jetstream.Msg = (*member)(nil)

// members splits a group message into messages a Job can take; an error when
// it does not decode (the caller drops it, as an undecodable delivery).
func (q *Queue) members(m jetstream.Msg) ([]*member, error) {
	single, _, _ := splitGroupSubject(m.Subject())
	datas, err := decodeGroup(m.Data())
	if err != nil {
		return nil, err
	}
	g := &group{Msg: m, q: q}
	g.left.Store(int64(len(datas)))
	g.progress.Store(time.Now().UnixNano())
	out := make([]*member, len(datas))
	for i, data := range datas {
		out[i] = &member{group: g, data: data, subject: single}
	}
	return out, nil
}

// Data is the member's delivery, encoded as it would be stored on its own.
func (m *member) Data() []byte { return m.data }

// Subject is the delivery subject the member would be stored on alone.
func (m *member) Subject() string { return m.subject }

// Ack resolves the member; the last one acknowledges the group's message, a
// moment late (lateack.go).
func (m *member) Ack() error { return m.resolved(func() error { return m.q.acks.ack(m.Msg) }) }

// DoubleAck resolves the member; the last one acknowledges the group's
// message and waits for the server's confirmation.
func (m *member) DoubleAck(ctx context.Context) error {
	return m.resolved(func() error { return m.group.DoubleAck(ctx) })
}

// Term drops the member, as an acknowledgement does.
func (m *member) Term() error { return m.Ack() }

// TermWithReason drops the member, as an acknowledgement does.
func (m *member) TermWithReason(string) error { return m.Ack() }

// Nak puts the member back to be attempted again at once.
func (m *member) Nak() error { return m.NakWithDelay(0) }

// NakWithDelay puts the member back, after delay: one member of a group
// cannot be handed out again without the others, so it is stored again on
// its own and then resolved. It is stored without a message id, since the
// same member may be put back more than once.
func (m *member) NakWithDelay(delay time.Duration) error {
	d, err := decodeDelivery(m.data)
	if err != nil {
		return err
	}
	ctx, cancel := resolveContext(context.Background())
	defer cancel()
	if err := m.q.storeAt(ctx, &d, time.Now().Add(delay), false); err != nil {
		return fmt.Errorf("putting back a delivery of a group: %w", err)
	}
	return m.Ack()
}

// InProgress extends the group's lease, at most once per
// groupProgressEvery for all of its members.
func (m *member) InProgress() error {
	now := time.Now().UnixNano()
	last := m.progress.Load()
	if now-last < int64(groupProgressEvery) || !m.progress.CompareAndSwap(last, now) {
		return nil
	}
	return m.group.InProgress()
}

// resolved counts the member resolved, once, running ack when it was the
// last; if ack fails the member counts as unresolved again.
func (m *member) resolved(ack func() error) error {
	if !m.done.CompareAndSwap(false, true) {
		return nil
	}
	if m.left.Add(-1) > 0 {
		return nil
	}
	if err := ack(); err != nil {
		m.left.Add(1)
		m.done.Store(false)
		return err
	}
	return nil
}

// GroupsOn reports whether the fan-out stores groups now: every live replica
// reads them and they are not turned off (Config.Ungrouped).
func (q *Queue) GroupsOn() bool { return q.groupsOn.Load() }
