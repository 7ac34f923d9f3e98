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
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jml-dev/jml/internal/identity"
)

// Check walks data, one JSON value, and returns an identity.Invalid error
// naming the field (a path such as "attributes.team" or "emails[1].value")
// of the first problem. It does not check the value's shape: decoding
// does that after.
func Check(data []byte) error {
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return identity.Errorf(identity.Invalid, "body is not valid UTF-8 (at byte %d)", i)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := walker{dec: dec, raw: data}
	return w.value("")
}

type walker struct {
	dec *json.Decoder
	raw []byte
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value reads one value at path.
func (w *walker) value(path string) error {
	start := w.dec.InputOffset()
	tok, err := w.dec.Token()
	if errors.Is(err, io.EOF) {
		return nil // empty: decoding says so
	}
	if err != nil {
		return nil // malformed: decoding says where
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			seen := map[string]bool{}
			for w.dec.More() {
				kstart := w.dec.InputOffset()
				ktok, err := w.dec.Token()
				if err != nil {
					return nil
				}
				key, _ := ktok.(string)
				if err := w.text(join(path, key), key, kstart); err != nil {
					return err
				}
				// Go's decoding, and SCIM's attribute names, match keys
				// without regard to case: "type" and "TYPE" are one key.
				fold := strings.ToLower(key)
				if seen[fold] {
					return identity.FieldError(join(path, key), "is given twice in one object (keys match without regard to case)")
				}
				seen[fold] = true
				if err := w.value(join(path, key)); err != nil {
					return err
				}
			}
			// The closing brace; malformed input is decoding's to report.
			w.dec.Token()
			return nil
		case '[':
			for i := 0; w.dec.More(); i++ {
				if err := w.value(path + "[" + strconv.Itoa(i) + "]"); err != nil {
					return err
				}
			}
			w.dec.Token() // the closing bracket
			return nil
		}
	case string:
		return w.text(path, t, start)
	}
	return nil
}

// text checks a decoded string: no NUL, and no replacement character that
// the raw text did not hold (an escape that decodes to no character).
func (w *walker) text(path, s string, start int64) error {
	field := path
	if field == "" {
		field = "body"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return identity.FieldError(field, "holds a NUL character")
	}
	if strings.ContainsRune(s, utf8.RuneError) {
		raw := w.raw[start:min(int64(len(w.raw)), w.dec.InputOffset())]
		if bytes.Count(raw, []byte(string(utf8.RuneError)))+bytes.Count(bytes.ToLower(raw), []byte(`\ufffd`)) < strings.Count(s, string(utf8.RuneError)) {
			return identity.FieldError(field, "holds an escape that is no character (a lone UTF-16 surrogate)")
		}
	}
	return nil
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
