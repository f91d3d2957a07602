package server

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// The request bodies are parsed in one pass by this small scanner rather than
// encoding/json, which scans a value two or three times (to find its end, to decode it,
// and again for a json.RawMessage) and matched field names case-insensitively. The
// event's data is validated, not decoded: it is stored and delivered as sent.
// FuzzScanner checks it against encoding/json.

type scanner struct {
	b []byte
	i int
	// maxDepth is the deepest nesting accepted in a value; zero means
	// DefaultMaxJSONDepth. Receivers' parsers stop near 1,000 levels, some
	// much sooner, so deeper data would be accepted here only to fail there.
	maxDepth int
}

// syntaxError is a malformed body, with the byte offset where it went wrong.
type syntaxError struct {
	offset int
	msg    string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("at byte %d: %s", e.offset, e.msg) }

func (s *scanner) fail(format string, args ...any) *syntaxError {
	return &syntaxError{offset: s.i, msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) unexpected(want string) *syntaxError {
	if s.i >= len(s.b) {
		return s.fail("the JSON ends where %s was expected", want)
	}
	return s.fail("found %s where %s was expected", quoteChar(s.b[s.i]), want)
}

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(c))
	return "'" + s[1:len(s)-1] + "'"
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte after whitespace, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte, want string) *syntaxError {
	if s.peek() != c {
		return s.unexpected(want)
	}
	s.i++
	return nil
}

// str scans a string at s.i and returns its raw contents (between the quotes) and
// whether it holds escapes.
func (s *scanner) str() (raw []byte, escaped bool, err *syntaxError) {
	if s.peek() != '"' {
		return nil, false, s.unexpected("a string")
	}
	s.i++
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			s.i++
			if s.i >= len(s.b) {
				return nil, false, s.fail("the JSON ends inside a string")
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for range 4 {
					if s.i >= len(s.b) || !isHex(s.b[s.i]) {
						return nil, false, s.fail(`\u must be followed by four hex digits`)
					}
					s.i++
				}
			default:
				return nil, false, s.fail("invalid escape %s in a string", quoteChar(s.b[s.i]))
			}
		case c < 0x20:
			return nil, false, s.fail("control character %s in a string: escape it", quoteChar(c))
		default:
			s.i++
		}
	}
	return nil, false, s.fail("the JSON ends inside a string")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// text returns a scanned string's value.
func text(raw []byte, escaped bool) string {
	if !escaped {
		return string(raw)
	}
	// Rare (field values are plain ASCII by their grammar); the scanner has checked
	// the escapes, so this cannot fail.
	var v string
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	_ = json.Unmarshal(quoted, &v)
	return v
}

func (s *scanner) number() *syntaxError {
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && isDigit(s.b[s.i]):
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	default:
		return s.unexpected("a digit")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return s.unexpected("a digit after the decimal point")
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return s.unexpected("a digit in the exponent")
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	return nil
}

func (s *scanner) literal(word string) *syntaxError {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.fail("invalid literal: expected %s", word)
	}
	s.i += len(word)
	return nil
}

// value scans one JSON value of any kind and returns it, without decoding it. Containers
// are tracked on a stack rather than by recursion, so deep nesting costs no goroutine
// stack.
func (s *scanner) value() ([]byte, *syntaxError) {
	var stackBuf [32]byte
	stack := stackBuf[:0] // '{' or '[' per open container
	s.ws()
	start := s.i
	for {
		// A value is expected here.
		switch c := s.peek(); {
		case c == '{' || c == '[':
			if max := s.depthLimit(); len(stack) == max {
				return nil, s.fail("the JSON is nested more than %d levels deep (the dispatcher's --max-json-depth)", max)
			}
			s.i++
			closing := byte('}')
			if c == '[' {
				closing = ']'
			}
			if s.peek() == closing {
				s.i++
				break
			}
			stack = append(stack, c)
			if c == '{' {
				if err := s.member(); err != nil {
					return nil, err
				}
			}
			continue
		case c == '"':
			if _, _, err := s.str(); err != nil {
				return nil, err
			}
		case c == '-' || isDigit(c):
			if err := s.number(); err != nil {
				return nil, err
			}
		case c == 't':
			if err := s.literal("true"); err != nil {
				return nil, err
			}
		case c == 'f':
			if err := s.literal("false"); err != nil {
				return nil, err
			}
		case c == 'n':
			if err := s.literal("null"); err != nil {
				return nil, err
			}
		default:
			return nil, s.unexpected("a value")
		}

		// A value ended: close containers until one continues with ','.
		for {
			if len(stack) == 0 {
				return s.b[start:s.i], nil
			}
			top := stack[len(stack)-1]
			c := s.peek()
			if c == ',' {
				s.i++
				if top == '{' {
					if err := s.member(); err != nil {
						return nil, err
					}
				}
				break
			}
			if top == '{' && c == '}' || top == '[' && c == ']' {
				s.i++
				stack = stack[:len(stack)-1]
				continue
			}
			if top == '{' {
				return nil, s.unexpected("',' or '}'")
			}
			return nil, s.unexpected("',' or ']'")
		}
	}
}

func (s *scanner) depthLimit() int {
	if s.maxDepth <= 0 {
		return DefaultMaxJSONDepth
	}
	return s.maxDepth
}

// member scans an object member's key and colon.
func (s *scanner) member() *syntaxError {
	if _, _, err := s.str(); err != nil {
		return err
	}
	return s.expect(':', "':' after an object key")
}

// end checks that nothing but whitespace follows.
func (s *scanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// event scans one event object. prefix is the event's path within a batch.
func (s *scanner) event(prefix string) (wireEvent, *fieldError) {
	var w wireEvent
	field := func(f string) string {
		if prefix == "" {
			return f
		}
		return prefix + "." + f
	}
	invalid := func(err *syntaxError) (wireEvent, *fieldError) {
		return w, badRequest(prefix, "the body is not valid JSON %v", err)
	}
	if c := s.peek(); c != '{' {
		if s.i >= len(s.b) && prefix == "" {
			return w, badRequest("", "the body is empty: send a JSON object such as {\"type\": \"invoice.paid\", \"data\": {...}}")
		}
		if _, err := s.value(); err != nil {
			return invalid(err)
		}
		return w, badRequest(prefix, "an event must be a JSON object with the fields %s", knownFields)
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return w, nil
	}
	var seen [4]bool
	for {
		keyAt := s.i
		raw, esc, err := s.str()
		if err != nil {
			return invalid(err)
		}
		key := text(raw, esc)
		if err := s.expect(':', "':' after an object key"); err != nil {
			return invalid(err)
		}
		var slot int
		var dst *string
		switch key {
		case "type":
			slot, dst = 0, &w.Type
		case "id":
			slot, dst = 1, &w.ID
		case "time":
			slot, dst = 2, &w.Time
		case "data":
			slot = 3
		default:
			return w, badRequest(field(key), "unknown field %q: an event has only the fields %s (names are case-sensitive)", key, knownFields)
		}
		if seen[slot] {
			s.i = keyAt
			return w, badRequest(field(key), "%s is given twice", key)
		}
		seen[slot] = true
		if dst == nil {
			if w.Data, err = s.value(); err != nil {
				return invalid(err)
			}
		} else {
			switch c := s.peek(); c {
			case '"':
				raw, esc, err := s.str()
				if err != nil {
					return invalid(err)
				}
				*dst = text(raw, esc)
			case 'n': // null: as if absent
				if err := s.literal("null"); err != nil {
					return invalid(err)
				}
			default:
				if _, err := s.value(); err != nil {
					return invalid(err)
				}
				return w, badRequest(field(key), "%s must be a JSON string, not %s", key, kindOf(c))
			}
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return w, nil
		default:
			return invalid(s.unexpected("',' or '}'"))
		}
	}
}

func kindOf(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}
