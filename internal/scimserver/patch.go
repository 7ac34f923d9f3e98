package scimserver

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// patchRequest is a PATCH body (RFC 7644 §3.5.2).
type patchRequest struct {
	Schemas    []string `json:"schemas"`
	Operations []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	} `json:"Operations"`
}

// applyPatch applies a PATCH body to a stored User or Group document (a
// copy) whose resource ID is id, and returns it; the caller normalizes and
// validates the result as it would a PUT. Op names are case-insensitive
// (Entra ID sends "Replace"). A read-only attribute may be named with the
// value it already has (Okta's group push repeats the id): that changes
// nothing and is accepted, as RFC 7644 §3.5.1 has a PUT's read-only values
// ignored; any other value for it is a mutability error.
func applyPatch(doc map[string]any, body []byte, id string) (map[string]any, error) {
	var req patchRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&req); err != nil {
		return nil, errf(400, "invalidSyntax", "PATCH body: %v", err)
	}
	if len(req.Schemas) != 1 || req.Schemas[0] != PatchSchema {
		return nil, errf(400, "invalidSyntax", "schemas: must be [%q]", PatchSchema)
	}
	if len(req.Operations) == 0 {
		return nil, errf(400, "invalidSyntax", "Operations: at least one is required")
	}
	for i, op := range req.Operations {
		var value any
		if len(op.Value) > 0 {
			if err := json.Unmarshal(op.Value, &value); err != nil {
				return nil, errf(400, "invalidSyntax", "Operations[%d].value: %v", i, err)
			}
		}
		var err error
		switch strings.ToLower(op.Op) {
		case "add", "replace":
			err = set(doc, op.Path, value, strings.EqualFold(op.Op, "add"), id)
		case "remove":
			if op.Path == "" {
				return nil, errf(400, "noTarget", "Operations[%d]: remove needs a path", i)
			}
			if list, ok := value.([]any); ok && strings.EqualFold(op.Path, "members") {
				err = removeMembers(doc, list) // Entra ID names the members in value
				break
			}
			err = remove(doc, op.Path)
		default:
			return nil, errf(400, "invalidSyntax", "Operations[%d].op: %q is not add, replace or remove", i, op.Op)
		}
		if err != nil {
			return nil, err
		}
	}
	return doc, nil
}

// target splits a path into the map that holds the attribute and its key:
// "userName", "name.givenName", or "urn:...:enterprise:2.0:User:department".
func target(doc map[string]any, p filter.Path, create bool) (map[string]any, string, error) {
	ap := p.AttributePath
	holder, root := doc, true
	if uri := ap.URI(); uri != "" && !strings.EqualFold(uri, UserSchema) {
		ext, ok := canonicalExt(uri)
		if !ok {
			return nil, "", errf(400, "invalidPath", "%s: unknown schema", uri)
		}
		if _, known := extAttrs[strings.ToLower(ext)][strings.ToLower(ap.AttributeName)]; !known {
			return nil, "", errf(400, "invalidPath", "%s is not an attribute of %s", ap.AttributeName, ext)
		}
		m, _ := doc[ext].(map[string]any)
		if m == nil {
			if !create {
				return nil, "", nil
			}
			m = map[string]any{}
			doc[ext] = m
			addSchema(doc, ext)
		}
		holder, root = m, false
	}
	key := canonical(ap.AttributeName)
	if root && !knownRoot(key) {
		return nil, "", errf(400, "invalidPath", "%s is not an attribute of this resource", ap.AttributeName)
	}
	if readOnly(key) && root {
		return nil, "", errf(400, "mutability", "%s is read-only", ap.AttributeName)
	}
	if ap.SubAttribute != nil {
		m, _ := holder[key].(map[string]any)
		if m == nil {
			if !create {
				return nil, "", nil
			}
			m = map[string]any{}
			holder[key] = m
		}
		return m, *ap.SubAttribute, nil
	}
	return holder, key, nil
}

// knownRoot reports whether key is a top-level attribute of a User or a
// Group (PATCH paths are checked before the result is).
func knownRoot(key string) bool {
	lk := strings.ToLower(key)
	if _, ok := userAttrs[lk]; ok {
		return true
	}
	return lk == "members"
}

// unchanged reports whether value is what the read-only attribute key
// already holds: the resource's id, or its current schemas.
func unchanged(doc map[string]any, key string, value any, id string) bool {
	switch strings.ToLower(key) {
	case "id":
		s, ok := value.(string)
		return ok && id != "" && s == id
	case "schemas":
		want, err1 := stringList(doc["schemas"])
		got, err2 := stringList(value)
		if err1 != nil || err2 != nil || len(want) != len(got) {
			return false
		}
		for _, g := range got {
			if !slices.ContainsFunc(want, func(w string) bool { return strings.EqualFold(w, g) }) {
				return false
			}
		}
		return true
	}
	return false
}

func readOnly(key string) bool {
	switch strings.ToLower(key) {
	case "id", "meta", "groups", "schemas":
		return true
	}
	return false
}

func canonicalExt(uri string) (string, bool) {
	for _, s := range []string{EnterpriseSchema, NHISchema} {
		if strings.EqualFold(uri, s) {
			return s, true
		}
	}
	return "", false
}

func addSchema(doc map[string]any, uri string) {
	l, _ := stringList(doc["schemas"])
	for _, s := range l {
		if strings.EqualFold(s, uri) {
			return
		}
	}
	doc["schemas"] = append(l, uri)
}

func parsePath(path string) (filter.Path, error) {
	p, err := filter.ParsePath([]byte(path))
	if err != nil {
		return p, errf(400, "invalidPath", "path %q: %v", path, err)
	}
	return p, nil
}

func set(doc map[string]any, path string, value any, add bool, id string) error {
	if path == "" {
		m, ok := value.(map[string]any)
		if !ok {
			return errf(400, "invalidValue", "without a path, value must be an object of attributes")
		}
		for k, v := range m {
			// Entra ID puts extension attributes in as "urn:...:User:department".
			if err := set(doc, k, v, add, id); err != nil {
				return err
			}
		}
		return nil
	}
	if _, ok := canonicalExt(path); ok { // the whole extension object
		m, ok := value.(map[string]any)
		if !ok {
			return errf(400, "invalidValue", "%s: value must be an object", path)
		}
		for k, v := range m {
			if err := set(doc, path+":"+k, v, add, id); err != nil {
				return err
			}
		}
		return nil
	}
	p, err := parsePath(path)
	if err != nil {
		return err
	}
	if ap := p.AttributePath; ap.SubAttribute == nil && p.ValueExpression == nil && (ap.URI() == "" || strings.EqualFold(ap.URI(), UserSchema)) &&
		readOnly(canonical(ap.AttributeName)) && unchanged(doc, ap.AttributeName, value, id) {
		return nil
	}
	holder, key, err := target(doc, p, true)
	if err != nil {
		return err
	}
	if p.ValueExpression != nil {
		list, _ := holder[key].([]any)
		n := 0
		if p.SubAttribute != nil && strings.EqualFold(*p.SubAttribute, "primary") && value == true {
			unsetPrimary(list) // the matched value becomes the only primary one
		}
		for _, e := range list {
			m, ok := e.(map[string]any)
			if !ok || !matches(m, p.ValueExpression) {
				continue
			}
			n++
			if p.SubAttribute != nil {
				m[*p.SubAttribute] = value
			} else if vm, ok := value.(map[string]any); ok {
				for k, v := range vm {
					m[k] = v
				}
			}
		}
		if n == 0 {
			return errf(400, "noTarget", "%s matches no value", path)
		}
		return nil
	}
	if existing, ok := holder[key].([]any); ok && add {
		if more, ok := value.([]any); ok {
			// RFC 7644 §3.5.2.1: a value added as primary takes the
			// primary mark from the one that had it, and a value already
			// there is not added again: the one there takes the
			// sub-attributes given, so adding what is there changes
			// nothing (update then leaves the resource as it was).
			if hasPrimary(more) {
				unsetPrimary(existing)
			}
			for _, e := range more {
				m, ok := e.(map[string]any)
				if there := sameValue(existing, m); ok && there != nil {
					for k, v := range m {
						if sameString(lookup(there, k), v) {
							continue // caseExact is false for every sub-attribute: the same value
						}
						for tk := range there {
							if strings.EqualFold(tk, k) {
								delete(there, tk)
							}
						}
						there[k] = v
					}
					continue
				}
				existing = append(existing, e)
			}
			holder[key] = existing
			return nil
		}
	}
	holder[key] = value
	return nil
}

func remove(doc map[string]any, path string) error {
	if ext, ok := canonicalExt(path); ok { // the whole extension
		delete(doc, ext)
		if l, err := stringList(doc["schemas"]); err == nil {
			doc["schemas"] = slices.DeleteFunc(l, func(s string) bool { return strings.EqualFold(s, ext) })
		}
		return nil
	}
	p, err := parsePath(path)
	if err != nil {
		return err
	}
	holder, key, err := target(doc, p, false)
	if err != nil || holder == nil {
		return err
	}
	if p.ValueExpression == nil {
		if key == "userName" && p.AttributePath.SubAttribute == nil {
			return errf(400, "mutability", "userName is required and cannot be removed")
		}
		delete(holder, key)
		return nil
	}
	list, _ := holder[key].([]any)
	kept := list[:0:0]
	for _, e := range list {
		m, ok := e.(map[string]any)
		if ok && matches(m, p.ValueExpression) {
			if p.SubAttribute != nil {
				delete(m, *p.SubAttribute)
				kept = append(kept, m)
			}
			continue
		}
		kept = append(kept, e)
	}
	holder[key] = kept
	return nil
}

// matches evaluates a value filter (eq, ne, co, sw, ew, pr; and, or, not)
// on one element of a multi-valued attribute.
func matches(m map[string]any, e filter.Expression) bool {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		if strings.EqualFold(string(x.Operator), "or") {
			return matches(m, x.Left) || matches(m, x.Right)
		}
		return matches(m, x.Left) && matches(m, x.Right)
	case *filter.NotExpression:
		return !matches(m, x.Expression)
	case *filter.AttributeExpression:
		var got any
		for k, v := range m {
			if strings.EqualFold(k, x.AttributePath.AttributeName) {
				got = v
			}
		}
		op := strings.ToLower(string(x.Operator))
		if op == "pr" {
			return got != nil
		}
		gs, gok := got.(string)
		ws, wok := x.CompareValue.(string)
		if gok && wok {
			gs, ws = strings.ToLower(gs), strings.ToLower(ws)
			switch op {
			case "eq":
				return gs == ws
			case "ne":
				return gs != ws
			case "co":
				return strings.Contains(gs, ws)
			case "sw":
				return strings.HasPrefix(gs, ws)
			case "ew":
				return strings.HasSuffix(gs, ws)
			}
			return false
		}
		switch op {
		case "eq":
			return got == x.CompareValue
		case "ne":
			return got != x.CompareValue
		}
	}
	return false
}

func hasPrimary(list []any) bool {
	for _, e := range list {
		if m, ok := e.(map[string]any); ok && isTrue(lookup(m, "primary")) {
			return true
		}
	}
	return false
}

// sameString reports whether a and b are strings equal but for case.
func sameString(a, b any) bool {
	as, ok1 := a.(string)
	bs, ok2 := b.(string)
	return ok1 && ok2 && strings.EqualFold(as, bs)
}

// isTrue reports a true boolean, or Entra ID's "True".
func isTrue(v any) bool {
	s, ok := v.(string)
	return v == true || ok && strings.EqualFold(s, "true")
}

// sameValue returns the element of list that m is another copy of: the one
// with m's (type, value) pair, the pair canonicalValues keeps once, or, for
// values without a value sub-attribute (addresses), the one equal to m.
func sameValue(list []any, m map[string]any) map[string]any {
	key, keyed := valueKey(m)
	for _, e := range list {
		there, ok := e.(map[string]any)
		if !ok {
			continue
		}
		if k, ok := valueKey(there); keyed && ok && k == key || !keyed && reflect.DeepEqual(there, m) {
			return there
		}
	}
	return nil
}

// unsetPrimary marks every value of list not primary.
func unsetPrimary(list []any) {
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			for k := range m {
				if strings.EqualFold(k, "primary") {
					m[k] = false
				}
			}
		}
	}
}

// removeMembers drops the members whose value is in list.
func removeMembers(doc map[string]any, list []any) error {
	drop := map[any]bool{}
	for _, m := range list {
		mm, ok := m.(map[string]any)
		if !ok {
			return errf(400, "invalidValue", "members: each value to remove needs a value")
		}
		drop[mm["value"]] = true
	}
	members, _ := doc["members"].([]any)
	kept := members[:0:0]
	for _, m := range members {
		if mm, ok := m.(map[string]any); ok && drop[mm["value"]] {
			continue
		}
		kept = append(kept, m)
	}
	doc["members"] = kept
	return nil
}
