// Package jsonin checks JSON bodies as they arrive, before they are
// decoded: what encoding/json would accept quietly is refused with the
// field named. Every edge that takes JSON (the REST API, SCIM, webhooks,
// the CLI's event files) runs the same check, so the same input is refused
// the same way wherever it comes in:
//
//   - invalid UTF-8, which decoding replaces with U+FFFD, and escapes that
//     decode to no character (a lone surrogate such as \ud800);
//   - a NUL character (\u0000), which PostgreSQL refuses and SQLite keeps;
//   - a key given twice in one object, which decoding takes last-wins
//     (compared without regard to case, as decoding and SCIM match keys).
package jsonin

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jml-dev/jml/internal/identity"
)

// Check walks data, one JSON value, and returns an identity.Invalid error
// naming the field (a path such as "attributes.team" or "emails[1].value")
// of the first problem. It does not check the value's shape: malformed
// JSON it leaves to decoding, which says where.
func Check(data []byte) error {
	s := scanner{b: data, badUTF8: !utf8.Valid(data)}
	s.value()
	if s.err == nil && s.badUTF8 {
		// The bad bytes are outside every string the scanner read (between
		// tokens, or after malformed JSON): there is no field to name.
		return identity.Errorf(identity.Invalid, "body is not valid UTF-8 (at byte %d)", invalidAt(data))
	}
	return s.err
}

// invalidAt is the offset of the first byte of b that is not valid UTF-8.
func invalidAt(b []byte) int {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		i += n
	}
	return i
}

// scanner walks JSON bytes without decoding them: only keys (to find one
// given twice) and strings with escapes are decoded. It stops at the first
// problem (err) or at malformed input (err nil: decoding reports it).
type scanner struct {
	b    []byte
	i    int
	path []string // the segments to where the scanner is, for errors
	err  error
	bad  bool // malformed: stop quietly
	// badUTF8 is set when the body holds invalid UTF-8 somewhere: each
	// string is then checked, to name the field whose value (or key)
	// holds it. A valid body (nearly every one) skips the check.
	badUTF8 bool
}

func (s *scanner) stopped() bool { return s.err != nil || s.bad }

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// field is the path as error messages name it.
func (s *scanner) field() string {
	var b strings.Builder
	for _, seg := range s.path {
		if b.Len() > 0 && !strings.HasPrefix(seg, "[") {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
}

func (s *scanner) value() {
	s.ws()
	if s.i >= len(s.b) {
		s.bad = true
		return
	}
	switch s.b[s.i] {
	case '{':
		s.object()
	case '[':
		s.array()
	case '"':
		s.str(false)
	default: // a number, true, false or null
		for s.i < len(s.b) && !strings.ContainsRune(",]} \t\n\r", rune(s.b[s.i])) {
			s.i++
		}
	}
}

func (s *scanner) object() {
	s.i++             // {
	var keys []string // lower-cased; objects are small
	for !s.stopped() {
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == '}' && len(keys) == 0 {
			s.i++
			return
		}
		key, ok := s.str(true)
		if !ok {
			return
		}
		s.path = append(s.path, key)
		fold := strings.ToLower(key)
		for _, k := range keys {
			if k == fold {
				// Go's decoding, and SCIM's attribute names, match keys
				// without regard to case: "type" and "TYPE" are one key.
				s.err = identity.FieldError(s.field(), "is given twice in one object (keys match without regard to case)")
				return
			}
		}
		keys = append(keys, fold)
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			s.bad = true
			return
		}
		s.i++
		s.value()
		s.path = s.path[:len(s.path)-1]
		s.ws()
		if s.i >= len(s.b) {
			s.bad = true
			return
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.bad = true
			return
		}
	}
}

func (s *scanner) array() {
	s.i++ // [
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return
	}
	for n := 0; !s.stopped(); n++ {
		s.path = append(s.path, "["+strconv.Itoa(n)+"]")
		s.value()
		s.path = s.path[:len(s.path)-1]
		s.ws()
		if s.stopped() || s.i >= len(s.b) {
			s.bad = s.err == nil
			return
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return
		default:
			s.bad = true
			return
		}
	}
}

// str reads a string at s.i and returns it, decoded when it holds escapes;
// invalid UTF-8, a decoded NUL, or an escape that is no character (a lone
// UTF-16 surrogate, which decoding turns into U+FFFD), is an error at the
// path. key says the string is an object's key: invalid UTF-8 in it is
// named at the object's path, which the key was to extend.
func (s *scanner) str(key bool) (string, bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		s.bad = true
		return "", false
	}
	start, escaped := s.i, false
	s.i++
	for s.i < len(s.b) && s.b[s.i] != '"' {
		if s.b[s.i] == '\\' {
			escaped = true
			s.i++
		}
		s.i++
	}
	if s.i >= len(s.b) {
		s.bad = true
		return "", false
	}
	s.i++
	raw := s.b[start:s.i]
	if s.badUTF8 && !utf8.Valid(raw) {
		at := start + invalidAt(raw)
		if key {
			s.err = identity.FieldError(s.field(), "has a key that is not valid UTF-8 (at byte %d)", at)
		} else {
			s.err = identity.FieldError(s.field(), "is not valid UTF-8 (at byte %d)", at)
		}
		return "", false
	}
	if !escaped {
		return string(raw[1 : len(raw)-1]), true
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		s.bad = true
		return "", false
	}
	if strings.IndexByte(out, 0) >= 0 {
		s.err = identity.FieldError(s.field(), "holds a NUL character")
		return "", false
	}
	if n := strings.Count(out, string(utf8.RuneError)); n > bytes.Count(raw, []byte(string(utf8.RuneError)))+bytes.Count(bytes.ToLower(raw), []byte(`\ufffd`)) {
		s.err = identity.FieldError(s.field(), "holds an escape that is no character (a lone UTF-16 surrogate)")
		return "", false
	}
	return out, true
}

// ContentType refuses a body whose Content-Type is not JSON (application/
// json, or any type ending in +json, such as application/scim+json).
func ContentType(ct string) error {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	if mt == "" {
		mt = "none"
	}
	return identity.Errorf(identity.Unsupported, "the body must be JSON, sent with Content-Type: application/json (this request's is %s)", mt)
}
