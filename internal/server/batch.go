package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// publishBatch handles {"events": [...]}: every event is validated before any is
// published, and the answer lists each event's id in order.
func (h *Handler) publishBatch(w http.ResponseWriter, r *http.Request, ns string, body []byte) {
	wires, ferr := h.decodeBatch(body)
	if ferr != nil {
		writeError(w, ferr)
		return
	}
	now := h.opts.Clock.Now().UTC()
	newID := func() string { return NewID(now) }
	evs := make([]Event, len(wires))
	seen := make(map[string]int, len(wires))
	for i := range wires {
		ev, ferr := h.batchEvent(&wires[i], i, "events", seen, ns, newID, now)
		if ferr != nil {
			writeError(w, ferr)
			return
		}
		evs[i] = ev
	}

	results, err := h.publishAll(r, evs)
	if err != nil {
		ids := make([]string, len(evs))
		for i := range evs {
			ids[i] = evs[i].ID
		}
		h.unavailable(w, err, ns, ids...)
		return
	}
	out := make([]byte, 0, 16+len(evs)*64)
	out = append(out, `{"events":[`...)
	for i := range evs {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendResult(out, evs[i].ID, results[i].Duplicate)
	}
	out = append(out, "]}"...)
	writeJSON(w, http.StatusAccepted, out)
}

func (h *Handler) publishAll(r *http.Request, evs []Event) ([]PublishResult, error) {
	if bp, ok := h.opts.Publisher.(BatchPublisher); ok {
		res, err := bp.PublishBatch(r.Context(), evs)
		if err == nil && len(res) != len(evs) {
			err = fmt.Errorf("the publisher returned %d results for %d events", len(res), len(evs))
		}
		return res, err
	}
	res := make([]PublishResult, len(evs))
	for i := range evs {
		var err error
		if res[i], err = h.opts.Publisher.Publish(r.Context(), evs[i]); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// decodeBatch reads {"events": [event, ...]}, so that an error can name the event by
// index, and holds each event to the single-event size limit.
func (h *Handler) decodeBatch(body []byte) ([]wireEvent, *fieldError) {
	if ferr := checkUTF8(body); ferr != nil {
		return nil, ferr
	}
	s := scanner{b: body, maxDepth: h.opts.MaxJSONDepth}
	invalid := func(field string, err *syntaxError) ([]wireEvent, *fieldError) {
		return nil, badRequest(field, "the body is not valid JSON %v", err)
	}
	shape := func() ([]wireEvent, *fieldError) {
		return nil, badRequest("", `a batch is a JSON object {"events": [...]} holding 1 to %d events`, h.opts.MaxBatchEvents)
	}
	switch s.peek() {
	case '{':
		s.i++
	case 0:
		if s.i >= len(s.b) {
			return nil, badRequest("", `the body is empty: send {"events": [...]}`)
		}
		fallthrough
	default:
		if _, err := s.value(); err != nil {
			return invalid("", err)
		}
		return shape()
	}
	var wires []wireEvent
	found := false
	for s.peek() != '}' {
		if found {
			if err := s.expect(',', "',' or '}'"); err != nil {
				return invalid("", err)
			}
		}
		raw, esc, err := s.str()
		if err != nil {
			return invalid("", err)
		}
		if key := text(raw, esc); key != "events" {
			return nil, badRequest(key, "unknown field %q: a batch has only the field \"events\"", key)
		}
		if found {
			return nil, badRequest("events", "events is given twice")
		}
		found = true
		if err := s.expect(':', "':' after an object key"); err != nil {
			return invalid("", err)
		}
		if s.peek() != '[' {
			if _, err := s.value(); err != nil {
				return invalid("events", err)
			}
			return nil, badRequest("events", "events must be a JSON array of event objects")
		}
		s.i++
		for s.peek() != ']' {
			i := len(wires)
			if i > 0 {
				if err := s.expect(',', "',' or ']'"); err != nil {
					return invalid("events", err)
				}
			}
			if i == h.opts.MaxBatchEvents {
				return nil, badRequest("events", "a batch holds at most %d events; split it", h.opts.MaxBatchEvents)
			}
			prefix := "events[" + strconv.Itoa(i) + "]"
			s.ws()
			start := s.i
			w, ferr := s.event(prefix)
			if ferr != nil {
				return nil, ferr
			}
			if size := int64(s.i - start); size > h.opts.MaxBodyBytes {
				return nil, &fieldError{status: http.StatusRequestEntityTooLarge, field: prefix,
					message: fmt.Sprintf("the event is %d bytes, more than the limit of %d bytes per event", size, h.opts.MaxBodyBytes)}
			}
			wires = append(wires, w)
		}
		s.i++ // ']'
	}
	s.i++ // '}'
	if !s.end() {
		return nil, badRequest("", "the body holds more than one JSON value: send one batch object")
	}
	if len(wires) == 0 {
		return nil, badRequest("events", "events is required and must hold 1 to %d events", h.opts.MaxBatchEvents)
	}
	return wires, nil
}

// batchEvent validates the i-th event of a batch named list ("events" for native
// batches, "" for CloudEvents batches): its fields, its data against an enforced
// schema, and that no earlier event of the batch (in seen, which it extends) has its
// id.
func (h *Handler) batchEvent(wire *wireEvent, i int, list string, seen map[string]int, ns string, newID func() string, now time.Time) (Event, *fieldError) {
	prefix := list + "[" + strconv.Itoa(i) + "]"
	ev, ferr := wire.validate(prefix, ns, newID, now)
	if ferr == nil {
		ferr = h.checkData(prefix, &ev)
	}
	if ferr != nil {
		return Event{}, ferr
	}
	if j, dup := seen[ev.ID]; dup {
		return Event{}, badRequest(prefix+".id", "id %q is also the id of %s[%d]; the second would be dropped as a duplicate. Give each event its own id", ev.ID, list, j)
	}
	seen[ev.ID] = i
	return ev, nil
}
