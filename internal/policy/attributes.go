package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/jml-dev/jml/internal/identity"
)

// DeclaresAttributes reports whether the policy declares any attribute:
// without declarations every value passes CheckAttributes.
func (p *Policy) DeclaresAttributes() bool { return len(p.declared) > 0 }

// CheckAttributes checks attribute values (an event's, or an identity's
// as stored) against the types and values the policy declares, so that a
// value the rules would misread (a string where they test a list, a tool
// that does not exist) is refused where it comes in instead of silently
// changing access. Attributes the policy does not declare pass, and so
// does nil (a mover's removal). The first misfit in name order is an
// identity.Invalid error with Field "attributes.NAME", naming the declared
// type and the value.
func (p *Policy) CheckAttributes(attrs map[string]any) error {
	if len(p.declared) == 0 || len(attrs) == 0 {
		return nil
	}
	var bad string
	for name, v := range attrs {
		if a := p.declared[name]; a != nil && v != nil && (bad == "" || name < bad) {
			if a.misfit(v) != "" {
				bad = name
			}
		}
	}
	if bad == "" {
		return nil
	}
	return identity.FieldError("attributes."+bad, "%s", p.declared[bad].misfit(attrs[bad]))
}

// misfit says how v does not fit the declaration ("" when it does): the
// declared type (and values) first, then the value.
func (a *Attribute) misfit(v any) string {
	declared := "the policy declares it " + a.Type
	if len(a.Values) > 0 {
		sep := ", one of "
		if a.Type == "list(string)" {
			sep = " of "
		}
		declared += sep + valueList(a.Values)
	}
	wrongType := func() string { return fmt.Sprintf("%s; %s is %s", declared, show(v), kindOf(v)) }
	switch a.Type {
	case "any":
		return ""
	case "string":
		s, ok := v.(string)
		if !ok {
			return wrongType()
		}
		if len(a.Values) > 0 && !slices.Contains(a.Values, s) {
			return fmt.Sprintf("%s; %s is not one of them", declared, show(s))
		}
	case "bool":
		if _, ok := v.(bool); !ok {
			return wrongType()
		}
	case "double":
		if _, ok := number(v); !ok {
			return wrongType()
		}
	case "int":
		f, ok := number(v)
		if !ok {
			return wrongType()
		}
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return fmt.Sprintf("%s; %s is not a whole number", declared, show(v))
		}
	case "map":
		if _, ok := v.(map[string]any); !ok {
			return wrongType()
		}
	case "list(string)", "list(int)":
		items, ok := listOf(v)
		if !ok {
			return wrongType()
		}
		for i, item := range items {
			if a.Type == "list(int)" {
				if f, ok := number(item); !ok || f != math.Trunc(f) {
					return fmt.Sprintf("%s; item %d, %s, is not a whole number", declared, i, show(item))
				}
				continue
			}
			s, ok := item.(string)
			if !ok {
				return fmt.Sprintf("%s; item %d, %s, is %s", declared, i, show(item), kindOf(item))
			}
			if len(a.Values) > 0 && !slices.Contains(a.Values, s) {
				return fmt.Sprintf("%s; item %d, %s, is not one of them", declared, i, show(s))
			}
		}
	}
	return ""
}

// number is v as a float64 when v is a number as events carry them
// (JSON decodes float64; CEL mappings give int64).
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func listOf(v any) ([]any, bool) {
	switch l := v.(type) {
	case []any:
		return l, true
	case []string:
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out, true
	}
	return nil, false
}

// kindOf names what v is, as a sentence reads it.
func kindOf(v any) string {
	if _, ok := number(v); ok {
		return "a number"
	}
	if _, ok := listOf(v); ok {
		return "a list"
	}
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// show renders v as JSON, shortened: messages quote what was sent.
func show(v any) string {
	data, err := json.Marshal(v)
	s := string(data)
	if err != nil {
		s = fmt.Sprint(v)
	}
	if len(s) > 80 {
		s = strings.ToValidUTF8(s[:77], "") + "…"
	}
	return s
}

// valueList lists declared values, the first 20 of them.
func valueList(values []string) string {
	if len(values) > 20 {
		return strings.Join(values[:20], ", ") + fmt.Sprintf(" (and %d more)", len(values)-20)
	}
	return strings.Join(values, ", ")
}

// declaredByName indexes declared attributes by name.
func declaredByName(attrs []Attribute) map[string]*Attribute {
	if len(attrs) == 0 {
		return nil
	}
	out := make(map[string]*Attribute, len(attrs))
	for i := range attrs {
		out[attrs[i].Name] = &attrs[i]
	}
	return out
}
