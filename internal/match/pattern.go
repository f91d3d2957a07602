package match

import (
	"errors"
	"fmt"
	"strings"
)

// Wildcard is the pattern segment that matches any segment.
const Wildcard = "*"

// ValidatePattern reports whether p is a valid event type pattern, and if
// not, what is wrong with it.
func ValidatePattern(p string) error {
	if err := validate(p, true); err != nil {
		return fmt.Errorf("event type pattern %q: %w", p, err)
	}
	return nil
}

// ValidateEventType reports whether t is a valid event type: a pattern
// without wildcards.
func ValidateEventType(t string) error {
	if err := validate(t, false); err != nil {
		return fmt.Errorf("event type %q: %w", t, err)
	}
	return nil
}

func validate(s string, wildcards bool) error {
	if s == "" {
		return errors.New("is empty")
	}
	n := 0
	for seg := range strings.SplitSeq(s, ".") {
		n++
		if seg == "" {
			return fmt.Errorf("segment %d is empty: segments are separated by single dots, with none at the start or end", n)
		}
		if seg == Wildcard {
			if !wildcards {
				return fmt.Errorf("segment %d is %q, which only patterns may use", n, Wildcard)
			}
			continue
		}
		for _, c := range seg {
			if !segmentChar(c) {
				if c == '*' {
					return fmt.Errorf("segment %d %q: %q must be a whole segment, as in \"invoice.*\"", n, seg, Wildcard)
				}
				return fmt.Errorf("segment %d %q contains %q: segments are letters, digits, '_' and '-'", n, seg, c)
			}
		}
	}
	return nil
}

func segmentChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// Matcher matches event types against a set of patterns. The zero Matcher
// matches nothing.
type Matcher struct {
	all bool
	// exact holds the patterns without wildcards. Subscriptions usually
	// list a handful, for which comparing strings beats hashing; a long list
	// goes into exactSet instead.
	exact    []string
	exactSet map[string]struct{}
	wild     []wildPattern
}

// exactSetMin is the number of exact patterns from which a map lookup is
// cheaper than comparing them one by one.
const exactSetMin = 8

type wildPattern struct {
	// segs are the segments before a trailing wildcard, if any; a middle
	// wildcard is kept as Wildcard.
	segs     []string
	trailing bool
}

// Compile validates patterns and builds a Matcher for them. It reports every
// invalid pattern, with its position in the list.
func Compile(patterns []string) (Matcher, error) {
	var m Matcher
	var errs []error
	seen := make(map[string]bool, len(patterns))
	for i, p := range patterns {
		if err := ValidatePattern(p); err != nil {
			errs = append(errs, fmt.Errorf("[%d]: %w", i, err))
			continue
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		switch {
		case p == Wildcard:
			m.all = true
		case !strings.Contains(p, Wildcard):
			m.exact = append(m.exact, p)
		default:
			segs := strings.Split(p, ".")
			wp := wildPattern{segs: segs}
			if segs[len(segs)-1] == Wildcard {
				wp.segs, wp.trailing = segs[:len(segs)-1], true
			}
			m.wild = append(m.wild, wp)
		}
	}
	if len(errs) > 0 {
		return Matcher{}, errors.Join(errs...)
	}
	if m.all {
		// Nothing else can add a match.
		return Matcher{all: true}, nil
	}
	if len(m.exact) >= exactSetMin {
		m.exactSet = make(map[string]struct{}, len(m.exact))
		for _, p := range m.exact {
			m.exactSet[p] = struct{}{}
		}
		m.exact = nil
	}
	return m, nil
}

// Match reports whether eventType matches any of the patterns. eventType is
// expected to be valid (ValidateEventType); an invalid one matches at most
// what its valid segments would.
func (m *Matcher) Match(eventType string) bool {
	if eventType == "" {
		return false
	}
	if m.all {
		return true
	}
	if m.exactSet != nil {
		if _, ok := m.exactSet[eventType]; ok {
			return true
		}
	}
	for _, p := range m.exact {
		if p == eventType {
			return true
		}
	}
	for i := range m.wild {
		if m.wild[i].match(eventType) {
			return true
		}
	}
	return false
}

func (p *wildPattern) match(t string) bool {
	// more tells "no segments left" apart from "one empty segment left",
	// which a trailing dot produces and nothing matches.
	rest, more := t, true
	for _, seg := range p.segs {
		if !more {
			return false
		}
		var cur string
		cur, rest, more = strings.Cut(rest, ".")
		if cur == "" || (seg != Wildcard && seg != cur) {
			return false
		}
	}
	if p.trailing {
		return more && rest != ""
	}
	return !more
}
