package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// CloudEvents over HTTP (https://github.com/cloudevents/spec, HTTP protocol binding 1.0)
// on the same route as native events, POST /v1/namespaces/{ns}/events:
//
//   - structured mode: Content-Type application/cloudevents+json, the event as a JSON
//     object;
//   - binary mode: the attributes in ce-* headers, the data as the body, whose
//     Content-Type must be JSON;
//   - batched mode: Content-Type application/cloudevents-batch+json, a JSON array of
//     structured events.
//
// id, type, time and data map to the event's fields, with the same validation, limits
// and errors as native events; specversion ("1.0"), id and source are required, as
// CloudEvents requires them. source, subject and extension attributes are accepted and
// not kept: deliveries carry hookline's own source. Data must be JSON (datacontenttype
// absent, application/json or a +json type); data_base64 is refused.
//
// The body is parsed by hand, with the scanner native events use, rather than with the
// CloudEvents SDK: it is one pass without maps or reflection, applies the same nesting
// limit to data, keeps data as a slice of the body, and can name the field at fault.
// The tests publish with the SDK's HTTP client.

type ceMode uint8

const (
	ceNone ceMode = iota
	ceStructured
	ceBinary
	ceBatch
)

const (
	contentTypeCE      = "application/cloudevents+json"
	contentTypeCEBatch = "application/cloudevents-batch+json"
)

// cloudEventsMode tells a CloudEvents request from a native one.
func cloudEventsMode(r *http.Request) ceMode {
	ct := r.Header.Get("Content-Type")
	switch {
	case hasMediaType(ct, contentTypeCE):
		return ceStructured
	case hasMediaType(ct, contentTypeCEBatch):
		return ceBatch
	case r.Header.Get("Ce-Specversion") != "":
		return ceBinary
	}
	return ceNone
}

// hasMediaType reports whether ct is want, with optional parameters.
func hasMediaType(ct, want string) bool {
	if len(ct) < len(want) || !strings.EqualFold(ct[:len(want)], want) {
		return false
	}
	rest := strings.TrimLeft(ct[len(want):], " ")
	return rest == "" || rest[0] == ';'
}

// isJSONMediaType accepts application/json and any type/subtype+json, with parameters.
func isJSONMediaType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json") && strings.Contains(mt, "/")
}

// ceAttrs are the context attributes a CloudEvent brings besides hookline's fields.
type ceAttrs struct {
	specVersion, source, dataContentType string
	hasSpecVersion, hasSource, hasBase64 bool
}

// checkCE applies what CloudEvents requires on top of native validation. name maps an
// attribute to the field or header to name in errors.
func (a *ceAttrs) check(w *wireEvent, name func(string) string) *fieldError {
	switch {
	case !a.hasSpecVersion:
		return badRequest(name("specversion"), "specversion is required: this is a CloudEvent, and hookline accepts CloudEvents 1.0 (specversion \"1.0\")")
	case a.specVersion != "1.0":
		return badRequest(name("specversion"), "specversion %q is not supported: send CloudEvents 1.0 (specversion \"1.0\")", a.specVersion)
	case w.ID == "":
		return badRequest(name("id"), "id is required in a CloudEvent: a unique id such as a UUID; hookline de-duplicates on it")
	case !a.hasSource || a.source == "":
		return badRequest(name("source"), "source is required in a CloudEvent: a URI-reference naming the producer, such as /billing")
	case a.hasBase64:
		return &fieldError{status: http.StatusUnsupportedMediaType, field: name("data_base64"), message: "data_base64 is not accepted: hookline carries JSON data; send it in data"}
	case a.dataContentType != "" && !isJSONMediaType(a.dataContentType):
		return &fieldError{status: http.StatusUnsupportedMediaType, field: name("datacontenttype"), message: fmt.Sprintf("datacontenttype %q is not JSON: hookline carries JSON data (application/json or a +json type)", a.dataContentType)}
	}
	return nil
}

// publishCloudEvents decodes, validates and publishes a CloudEvents request.
func (h *Handler) publishCloudEvents(w http.ResponseWriter, r *http.Request, ns string, body []byte, mode ceMode) {
	now := h.opts.Clock.Now().UTC()
	newID := func() string { return NewID(now) }
	var evs []Event
	switch mode {
	case ceBatch:
		wires, attrs, ferr := h.decodeCEBatch(body)
		if ferr != nil {
			writeError(w, ferr)
			return
		}
		seen := make(map[string]int, len(wires))
		for i := range wires {
			prefix := "[" + strconv.Itoa(i) + "]"
			if ferr := attrs[i].check(&wires[i], func(f string) string { return prefix + "." + f }); ferr != nil {
				writeError(w, ferr)
				return
			}
			ev, ferr := h.batchEvent(&wires[i], i, "", seen, ns, newID, now)
			if ferr != nil {
				writeError(w, ferr)
				return
			}
			evs = append(evs, ev)
		}
	default:
		var wire wireEvent
		var attrs ceAttrs
		var ferr *fieldError
		name := func(f string) string { return f }
		if mode == ceBinary {
			wire, attrs, ferr = h.decodeCEBinary(r, body)
			name = binaryName
		} else {
			wire, attrs, ferr = h.decodeCEStructured(body)
		}
		if ferr == nil {
			ferr = attrs.check(&wire, name)
		}
		var ev Event
		if ferr == nil {
			ev, ferr = wire.validate("", ns, newID, now)
			if ferr != nil && mode == ceBinary {
				ferr.field = binaryName(ferr.field)
			}
		}
		if ferr == nil {
			ferr = h.checkData("", &ev)
			if ferr != nil && mode == ceBinary {
				ferr.field = "body" + strings.TrimPrefix(ferr.field, "data")
			}
		}
		if ferr != nil {
			writeError(w, ferr)
			return
		}
		evs = []Event{ev}
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
	if mode != ceBatch {
		writeJSON(w, http.StatusAccepted, appendResult(nil, evs[0].ID, results[0].Duplicate))
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

// binaryName is the header (or the body) that carries an attribute in binary mode.
func binaryName(f string) string {
	switch f {
	case "data":
		return "body"
	case "datacontenttype":
		return "Content-Type"
	case "":
		return ""
	}
	return "ce-" + f
}

// decodeCEBinary reads the attributes from ce-* headers and the data from the body.
func (h *Handler) decodeCEBinary(r *http.Request, body []byte) (wireEvent, ceAttrs, *fieldError) {
	var w wireEvent
	var a ceAttrs
	hd := r.Header
	a.specVersion, a.hasSpecVersion = hd.Get("Ce-Specversion"), true
	a.source, a.hasSource = hd.Get("Ce-Source"), hd.Get("Ce-Source") != ""
	w.ID, w.Type, w.Time = hd.Get("Ce-Id"), hd.Get("Ce-Type"), hd.Get("Ce-Time")
	ct := hd.Get("Content-Type")
	if ct == "" || !isJSONMediaType(ct) {
		return w, a, &fieldError{status: http.StatusUnsupportedMediaType, field: "Content-Type", message: fmt.Sprintf(
			"Content-Type %q: in CloudEvents binary mode the body is the event's data, and hookline carries JSON data; send it with Content-Type: application/json", ct)}
	}
	if ferr := checkUTF8(body); ferr != nil {
		return w, a, ferr
	}
	s := scanner{b: body, maxDepth: h.opts.MaxJSONDepth}
	s.ws()
	if s.i >= len(s.b) {
		return w, a, badRequest("body", "the body is empty: in CloudEvents binary mode it is the event's data, any JSON value other than null; send {} for an event without data")
	}
	data, err := s.value()
	if err != nil {
		return w, a, badRequest("body", "the body is not valid JSON %v", err)
	}
	if !s.end() {
		return w, a, badRequest("body", "the body holds more than one JSON value: in binary mode it is the event's data")
	}
	w.Data = data
	return w, a, nil
}

// decodeCEStructured reads one structured CloudEvent that is the whole body.
func (h *Handler) decodeCEStructured(body []byte) (wireEvent, ceAttrs, *fieldError) {
	if ferr := checkUTF8(body); ferr != nil {
		return wireEvent{}, ceAttrs{}, ferr
	}
	s := scanner{b: body, maxDepth: h.opts.MaxJSONDepth}
	w, a, ferr := s.cloudEvent("")
	if ferr != nil {
		return w, a, ferr
	}
	if !s.end() {
		return w, a, badRequest("", "the body holds more than one JSON value: send one CloudEvent, or an array of them as application/cloudevents-batch+json")
	}
	return w, a, nil
}

// decodeCEBatch reads [event, ...] within the batch limits, each event within the
// single-event limit.
func (h *Handler) decodeCEBatch(body []byte) ([]wireEvent, []ceAttrs, *fieldError) {
	if ferr := checkUTF8(body); ferr != nil {
		return nil, nil, ferr
	}
	s := scanner{b: body, maxDepth: h.opts.MaxJSONDepth}
	if s.peek() != '[' {
		if s.i >= len(s.b) {
			return nil, nil, badRequest("", "the body is empty: send a JSON array of CloudEvents")
		}
		return nil, nil, badRequest("", "a CloudEvents batch is a JSON array holding 1 to %d events", h.opts.MaxBatchEvents)
	}
	s.i++
	var wires []wireEvent
	var attrs []ceAttrs
	for s.peek() != ']' {
		i := len(wires)
		if i > 0 {
			if err := s.expect(',', "',' or ']'"); err != nil {
				return nil, nil, badRequest("", "the body is not valid JSON %v", err)
			}
		}
		if i == h.opts.MaxBatchEvents {
			return nil, nil, badRequest("", "a batch holds at most %d events; split it", h.opts.MaxBatchEvents)
		}
		prefix := "[" + strconv.Itoa(i) + "]"
		s.ws()
		start := s.i
		w, a, ferr := s.cloudEvent(prefix)
		if ferr != nil {
			return nil, nil, ferr
		}
		if size := int64(s.i - start); size > h.opts.MaxBodyBytes {
			return nil, nil, &fieldError{status: http.StatusRequestEntityTooLarge, field: prefix,
				message: fmt.Sprintf("the event is %d bytes, more than the limit of %d bytes per event", size, h.opts.MaxBodyBytes)}
		}
		wires, attrs = append(wires, w), append(attrs, a)
	}
	s.i++
	if !s.end() {
		return nil, nil, badRequest("", "the body holds more than one JSON value: send one array of CloudEvents")
	}
	if len(wires) == 0 {
		return nil, nil, badRequest("", "the batch is empty: send 1 to %d CloudEvents", h.opts.MaxBatchEvents)
	}
	return wires, attrs, nil
}

// cloudEvent scans one structured CloudEvent object.
func (s *scanner) cloudEvent(prefix string) (wireEvent, ceAttrs, *fieldError) {
	var w wireEvent
	var a ceAttrs
	field := func(f string) string {
		if prefix == "" {
			return f
		}
		return prefix + "." + f
	}
	invalid := func(err *syntaxError) (wireEvent, ceAttrs, *fieldError) {
		return w, a, badRequest(prefix, "the body is not valid JSON %v", err)
	}
	if c := s.peek(); c != '{' {
		if s.i >= len(s.b) && prefix == "" {
			return w, a, badRequest("", "the body is empty: send a CloudEvent such as {\"specversion\": \"1.0\", \"id\": \"...\", \"source\": \"/billing\", \"type\": \"invoice.paid\", \"data\": {...}}")
		}
		if _, err := s.value(); err != nil {
			return invalid(err)
		}
		return w, a, badRequest(prefix, "a CloudEvent must be a JSON object")
	}
	s.i++
	seen := map[string]bool{}
	for s.peek() != '}' {
		if len(seen) > 0 {
			if err := s.expect(',', "',' or '}'"); err != nil {
				return invalid(err)
			}
		}
		keyAt := s.i
		raw, esc, err := s.str()
		if err != nil {
			return invalid(err)
		}
		key := text(raw, esc)
		if err := s.expect(':', "':' after an object key"); err != nil {
			return invalid(err)
		}
		if seen[key] {
			s.i = keyAt
			return w, a, badRequest(field(key), "%s is given twice", key)
		}
		seen[key] = true
		var dst *string
		switch key {
		case "data":
			if s.peek() == 'n' { // null: no data
				if err := s.literal("null"); err != nil {
					return invalid(err)
				}
				continue
			}
			if w.Data, err = s.value(); err != nil {
				return invalid(err)
			}
			continue
		case "data_base64":
			a.hasBase64 = true
			if _, err := s.value(); err != nil {
				return invalid(err)
			}
			continue
		case "specversion":
			dst, a.hasSpecVersion = &a.specVersion, true
		case "source":
			dst, a.hasSource = &a.source, true
		case "datacontenttype":
			dst = &a.dataContentType
		case "id":
			dst = &w.ID
		case "type":
			dst = &w.Type
		case "time":
			dst = &w.Time
		}
		if dst == nil { // subject, dataschema, extensions: accepted, not kept
			if _, err := s.value(); err != nil {
				return invalid(err)
			}
			continue
		}
		switch c := s.peek(); c {
		case '"':
			raw, esc, err := s.str()
			if err != nil {
				return invalid(err)
			}
			*dst = text(raw, esc)
		default:
			if _, err := s.value(); err != nil {
				return invalid(err)
			}
			return w, a, badRequest(field(key), "%s must be a JSON string, not %s", key, kindOf(c))
		}
	}
	s.i++
	return w, a, nil
}
