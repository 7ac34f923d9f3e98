// Package yamlin decodes the YAML files jml reads (the policy, its test
// file, an HR mapping, jml.yaml) strictly, and says what is wrong in the
// file's own terms. A key the target does not have is named with its path
// in the file, its line and the keys allowed there,
//
//	entitlements[2]: unknown key "maxDuraton" on line 14 (allowed: name, system, description, risk, maxDuration, requiresApproval, target; did you mean maxDuration?)
//
// where the YAML library names a Go struct type. Other errors (bad syntax,
// a value of the wrong type) are the library's, which give the line.
package yamlin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// UnknownKeyError is a key the target type has no field for.
type UnknownKeyError struct {
	// Path is where the key's mapping is ("entitlements[2]", "" at the
	// top), Key the key, Line its line (0 when unknown).
	Path, Key string
	Line      int
	// Allowed are the keys allowed there, in the order the type declares
	// them.
	Allowed []string
}

func (e *UnknownKeyError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	fmt.Fprintf(&b, "unknown key %q", e.Key)
	if e.Line > 0 {
		fmt.Fprintf(&b, " on line %d", e.Line)
	}
	fmt.Fprintf(&b, " (allowed: %s", strings.Join(e.Allowed, ", "))
	if s := suggest(e.Key, e.Allowed); s != "" {
		fmt.Fprintf(&b, "; did you mean %s?", s)
	}
	b.WriteString(")")
	return b.String()
}

// Decode decodes the first YAML document of data into v (a pointer to a
// struct with yaml tags) strictly: a key v has no field for is an
// *UnknownKeyError. An empty document leaves v as it is.
func Decode(data []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if err := Keys(&doc, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Keys checks that every mapping key in n has a field in t (the type n
// decodes into), and returns the first that has none.
func Keys(n *yaml.Node, t reflect.Type) error {
	return keys(n, t, "", 0)
}

var unmarshaler = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// keys walks n as t; depth bounds alias chains that refer to themselves.
func keys(n *yaml.Node, t reflect.Type, path string, depth int) error {
	if n == nil || depth > 64 {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshaler) || t.Implements(unmarshaler) {
		return nil // it decodes itself
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return keys(n.Content[0], t, path, depth)
	case yaml.AliasNode:
		return keys(n.Alias, t, path, depth+1)
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return shapeError(n, t, path, "a list")
		}
		for i, c := range n.Content {
			if err := keys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		switch t.Kind() {
		case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array:
			return shapeError(n, t, path, fmt.Sprintf("%q", n.Value))
		}
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Struct, reflect.Map, reflect.Interface:
		default:
			return shapeError(n, t, path, "a mapping (key: value)")
		}
		switch t.Kind() {
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if err := keys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), depth); err != nil {
					return err
				}
			}
		case reflect.Struct:
			fields := fieldsOf(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				if k.Tag == "!!merge" {
					// A merge key brings another mapping's keys here.
					if err := keys(val, t, path, depth+1); err != nil {
						return err
					}
					continue
				}
				f, ok := fields.byKey[k.Value]
				if !ok {
					if fields.rest != nil {
						if err := keys(val, fields.rest.Elem(), join(path, k.Value), depth); err != nil {
							return err
						}
						continue
					}
					return &UnknownKeyError{Path: path, Key: k.Value, Line: k.Line, Allowed: fields.names}
				}
				if err := keys(val, f, join(path, k.Value), depth); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ShapeError is a value of the wrong shape: a list where text is wanted,
// text where a list or a mapping is.
type ShapeError struct {
	Path string // where, as in UnknownKeyError
	Line int
	Want string
	Got  string
}

func (e *ShapeError) Error() string {
	where := e.Path
	if where == "" {
		where = "the document"
	}
	return fmt.Sprintf("%s: on line %d, want %s, got %s", where, e.Line, e.Want, e.Got)
}

// shapeError is the error for n, which is got, where t is wanted; nil
// when t takes anything.
func shapeError(n *yaml.Node, t reflect.Type, path, got string) error {
	var want string
	switch t.Kind() {
	case reflect.Interface:
		return nil
	case reflect.Struct, reflect.Map:
		want = "a mapping (key: value)"
	case reflect.Slice, reflect.Array:
		want = "a list"
	case reflect.String:
		want = "text"
	case reflect.Bool:
		want = "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "a whole number"
		if t == reflect.TypeOf(time.Duration(0)) {
			want = "a duration (such as 90s or 720h)"
		}
	case reflect.Float32, reflect.Float64:
		want = "a number"
	default:
		want = "a " + t.Kind().String()
	}
	return &ShapeError{Path: path, Line: n.Line, Want: want, Got: got}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// structFields are the keys a struct type takes, as the YAML library
// reads its tags: each key's type, the keys in declaration order, and the
// map an ",inline" map field collects other keys into (nil: none).
type structFields struct {
	byKey map[string]reflect.Type
	names []string
	rest  reflect.Type
}

func fieldsOf(t reflect.Type) structFields {
	out := structFields{byKey: map[string]reflect.Type{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if strings.Contains(","+opts+",", ",inline,") {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				switch ft.Kind() {
				case reflect.Struct:
					add(ft)
				case reflect.Map:
					out.rest = ft
				}
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if _, dup := out.byKey[name]; !dup {
				out.names = append(out.names, name)
			}
			out.byKey[name] = f.Type
		}
	}
	add(t)
	return out
}

// suggest is the allowed key closest to key, when it is close enough to
// be a typo (a different case, or at most two edits), else "".
func suggest(key string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		d := distance(strings.ToLower(key), strings.ToLower(a))
		if strings.EqualFold(key, a) {
			d = 0
		}
		if d < bestD {
			best, bestD = a, d
		}
	}
	if len(key) <= 2 && bestD > 0 {
		return "" // every short key is two edits from another
	}
	return best
}

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
