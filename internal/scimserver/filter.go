package scimserver

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/jml-dev/jml/internal/store"
)

// Filters are parsed here and translated to SQL in the store
// (sqlstore/scimfilter.go), whose allow-list says what may be filtered.

// filterErrf is a filter this server cannot read: SCIM's invalidFilter.
func filterErrf(format string, args ...any) error {
	return &store.FilterError{Msg: fmt.Sprintf(format, args...)}
}

// maxFilterDepth bounds how deeply a filter's parentheses and value
// filters nest: deeper is invalidFilter, before any parsing or SQL (a
// thousand nested "not (" once exhausted SQLite's expression depth).
const maxFilterDepth = 16

// parseFilter parses a SCIM filter. Its string literals are JSON strings
// (RFC 7644 §3.4.2.2: "q\"x" is q"x, "Zo\u00eb" is Zoë), which the
// parser library keeps raw or refuses; so each literal is decoded here
// and the parser sees a placeholder in its place. Entra ID's uniqueness
// query, a comparison of a value filter's sub-attribute
// (emails[type eq "work"].value eq "x"), is read as the value filter
// emails[type eq "work" and value eq "x"], which means the same.
func parseFilter(in string) (filter.Expression, error) {
	var lits []string
	var b strings.Builder
	depth, deepest := 0, 0
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch c {
		case '(', '[':
			depth++
			deepest = max(deepest, depth)
		case ')', ']':
			depth--
		case '"':
			end := i + 1
			for end < len(in) && in[end] != '"' {
				if in[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(in) {
				return nil, filterErrf("filter: the string starting at byte %d has no closing quote", i)
			}
			var lit string
			if err := json.Unmarshal([]byte(in[i:end+1]), &lit); err != nil {
				return nil, filterErrf("filter: the string at byte %d is not a JSON string: %v", i, err)
			}
			b.WriteString(`"` + placeholder(len(lits)) + `"`)
			lits = append(lits, lit)
			i = end
			continue
		}
		b.WriteByte(c)
	}
	if deepest > maxFilterDepth {
		return nil, filterErrf("filter: nested %d levels deep; at most %d", deepest, maxFilterDepth)
	}
	text := b.String()
	var expr filter.Expression
	var err error
	if m := subAttrComparison.FindStringSubmatch(text); m != nil {
		var vp, cmp filter.Expression
		if vp, err = filter.ParseFilter([]byte(m[1])); err == nil {
			cmp, err = filter.ParseFilter([]byte(m[2]))
		}
		v, ok := vp.(*filter.ValuePath)
		if err == nil && ok {
			v.ValueFilter = &filter.LogicalExpression{Left: v.ValueFilter, Right: cmp, Operator: filter.AND}
			expr = v
		} else if err == nil {
			err = fmt.Errorf("%s is not a value filter", m[1])
		}
	} else {
		expr, err = filter.ParseFilter([]byte(text))
	}
	if err != nil {
		return nil, filterErrf("filter %q is not a SCIM filter this server reads (RFC 7644 §3.4.2.2: attribute operator value, joined by and, or, not and parentheses; value filters such as emails[type eq \"work\"]; parentheses inside a value filter only after not)", in)
	}
	if err := restore(expr, lits); err != nil {
		return nil, err
	}
	return expr, nil
}

// subAttrComparison matches a whole filter of the form A[F].sub op value:
// group 1 is A[F], group 2 "sub op value".
var subAttrComparison = regexp.MustCompile(`^\s*([A-Za-z][\w:.-]*\[[^\[\]]*\])\.([A-Za-z]\w*\s+(?i:eq|ne|co|sw|ew|gt|ge|lt|le|pr)\b.*)$`)

// placeholder is the i-th literal's stand-in: every literal is replaced,
// so no stand-in can be mistaken for a client's string.
func placeholder(i int) string { return strconv.Itoa(i) }

// restore puts the decoded string literals back in place of their
// placeholders.
func restore(e filter.Expression, lits []string) error {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		if err := restore(x.Left, lits); err != nil {
			return err
		}
		return restore(x.Right, lits)
	case *filter.NotExpression:
		return restore(x.Expression, lits)
	case *filter.ValuePath:
		if x.ValueFilter != nil {
			return restore(x.ValueFilter, lits)
		}
	case *filter.AttributeExpression:
		if s, ok := x.CompareValue.(string); ok {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n >= len(lits) {
				return filterErrf("filter: a string value was not understood")
			}
			x.CompareValue = lits[n]
		}
	}
	return nil
}
