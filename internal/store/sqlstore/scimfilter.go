package sqlstore

import (
	"fmt"
	"strings"
	"time"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/jml-dev/jml/internal/store"
)

// SCIM filters reach SQL here, and only here: through an allow-list of
// attributes, each mapped to a fixed column of scim_resources, with every
// value a bound parameter. The SCIM server parses a filter and passes it
// in store.SCIMQuery; this file is what turns it into a WHERE clause.

// column is a filterable, sortable attribute and where it is stored.
type column struct {
	name      string // SQL column of scim_resources
	kind      string // string, bool or time
	caseExact bool   // compared as given; else lower-cased on both sides
}

// filterable is the allow-list: a filter may name these attributes and no
// other, and each maps to a fixed column. Values are always bound
// parameters; nothing from a filter is spliced into SQL.
var filterable = map[string]column{
	"id":                {"id", "string", true},
	"username":          {"user_name", "lower", false}, // stored lower-cased
	"externalid":        {"external_id", "string", true},
	"displayname":       {"display_name", "string", false},
	"title":             {"title", "lower", false},
	"usertype":          {"user_type", "lower", false},
	"name.familyname":   {"family_name", "lower", false},
	"name.givenname":    {"given_name", "lower", false},
	"emails":            {"emails", "multi", false},
	"phonenumbers":      {"", "valuepath", false}, // reached by value filters only
	"ims":               {"", "valuepath", false},
	"photos":            {"", "valuepath", false},
	"entitlements":      {"", "valuepath", false},
	"roles":             {"", "valuepath", false},
	"x509certificates":  {"", "valuepath", false},
	"emails.value":      {"emails", "multi", false},
	"active":            {"active", "bool", true},
	"meta.created":      {"created_at", "time", true},
	"meta.lastmodified": {"updated_at", "time", true},
}

// groupFilterable is the Groups' allow-list; a Group's displayName is
// stored lower-cased in user_name.
var groupFilterable = map[string]column{
	"members":           {"", "valuepath", false},
	"id":                {"id", "string", true},
	"displayname":       {"user_name", "lower", false},
	"externalid":        {"external_id", "string", true},
	"meta.created":      {"created_at", "time", true},
	"meta.lastmodified": {"updated_at", "time", true},
}

// valueColumns is the allow-list inside a value filter: an element's
// sub-attributes, as scim_values stores them.
var valueColumns = map[string]column{
	"type":    {"type", "lower", false},
	"value":   {"value", "lower", false},
	"display": {"display", "lower", false},
	"primary": {"primary_value", "bool", true},
}

// filterableNames is the allow-list as error messages give it.
const filterableNames = "id, userName, externalId, displayName, title, userType, name.familyName, name.givenName, emails(.value), active, meta.created, meta.lastModified, and value filters on emails, phoneNumbers, ims, photos, entitlements, roles, x509Certificates"

const coreUserURI = "urn:ietf:params:scim:schemas:core:2.0:user"

// attrKey normalises an attribute path for the allow-list: case-folded,
// the core schema URI dropped.
func attrKey(p filter.AttributePath) string {
	k := strings.ToLower(p.AttributeName)
	if p.SubAttribute != nil {
		k += "." + strings.ToLower(*p.SubAttribute)
	}
	if uri := strings.ToLower(p.URI()); uri != "" && uri != coreUserURI {
		return uri + ":" + k // never in the allow-list
	}
	return k
}

func filterErrf(format string, args ...any) error {
	return &store.FilterError{Msg: fmt.Sprintf(format, args...)}
}

// maxConditions bounds the comparisons one filter may make: a longer one
// is SCIM's tooMany, so that a client cannot make the database work
// through thousands of OR terms.
const maxConditions = 64

// conditions counts a filter's comparisons.
func conditions(e filter.Expression) int {
	switch x := e.(type) {
	case *filter.LogicalExpression:
		return conditions(x.Left) + conditions(x.Right)
	case *filter.NotExpression:
		return conditions(x.Expression)
	case *filter.ValuePath:
		return 1 + conditions(x.ValueFilter)
	}
	return 1
}

// sqlWhere translates a parsed filter into a WHERE clause with ?
// placeholders and its arguments.
func sqlWhere(e filter.Expression, allow map[string]column) (string, []any, error) {
	if n := conditions(e); n > maxConditions {
		return "", nil, &store.TooManyConditions{N: n, Max: maxConditions}
	}
	var args []any
	var walk func(filter.Expression) (string, error)
	walk = func(e filter.Expression) (string, error) {
		switch x := e.(type) {
		case *filter.LogicalExpression:
			l, err := walk(x.Left)
			if err != nil {
				return "", err
			}
			r, err := walk(x.Right)
			if err != nil {
				return "", err
			}
			op := "AND"
			if strings.EqualFold(string(x.Operator), "or") {
				op = "OR"
			}
			return "(" + l + " " + op + " " + r + ")", nil
		case *filter.NotExpression:
			in, err := walk(x.Expression)
			if err != nil {
				return "", err
			}
			return "(NOT " + in + ")", nil
		case *filter.AttributeExpression:
			sql, a, err := compare(x, allow)
			args = append(args, a...)
			return sql, err
		case *filter.ValuePath:
			attr := attrKey(x.AttributePath)
			if col, ok := allow[attr]; !ok || (col.kind != "valuepath" && col.kind != "multi") {
				return "", filterErrf("%s[...]: not a multi-valued attribute this server filters", x.AttributePath)
			}
			inner, innerArgs, err := sqlWhere(x.ValueFilter, valueColumns)
			if err != nil {
				return "", err
			}
			args = append(args, attr)
			args = append(args, innerArgs...)
			return "id IN (SELECT resource_id FROM scim_values WHERE attr = ? AND (" + inner + "))", nil
		}
		return "", filterErrf("unsupported filter expression %T", e)
	}
	sql, err := walk(e)
	return sql, args, err
}

func compare(x *filter.AttributeExpression, allow map[string]column) (string, []any, error) {
	key := attrKey(x.AttributePath)
	col, ok := allow[key]
	if ok && col.kind == "valuepath" {
		return "", nil, filterErrf("%s: filter its values with a value filter, such as %s[value eq \"x\"]", x.AttributePath, x.AttributePath)
	}
	if !ok {
		return "", nil, filterErrf("%s is not filterable; filterable: %s", x.AttributePath, filterableNames)
	}
	op := strings.ToLower(string(x.Operator))
	if op == "pr" {
		switch col.kind {
		case "string", "lower", "multi":
			return col.name + " <> ''", nil, nil
		default:
			return "1 = 1", nil, nil // always set
		}
	}
	ref := col.name
	var val any
	switch col.kind {
	case "bool":
		b, ok := x.CompareValue.(bool)
		if !ok {
			return "", nil, filterErrf("%s: compare with true or false", x.AttributePath)
		}
		if op != "eq" && op != "ne" {
			return "", nil, filterErrf("%s: only eq and ne compare booleans", x.AttributePath)
		}
		val = 0
		if b {
			val = 1
		}
	case "time":
		s, ok := x.CompareValue.(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if !ok || err != nil {
			return "", nil, filterErrf("%s: compare with an RFC 3339 time in quotes", x.AttributePath)
		}
		if op == "co" || op == "sw" || op == "ew" {
			return "", nil, filterErrf("%s: %s does not apply to times", x.AttributePath, op)
		}
		val = t.UnixMicro()
	case "multi":
		// Each value is stored lower-cased between \x1f separators.
		s, ok := x.CompareValue.(string)
		if !ok || strings.ContainsRune(s, '\x1f') {
			return "", nil, filterErrf("%s: compare with a string in quotes", x.AttributePath)
		}
		v := escapeLike(strings.ToLower(s))
		pattern, ok := map[string]string{"eq": "%\x1f" + v + "\x1f%", "ne": "%\x1f" + v + "\x1f%", "co": "%" + v + "%", "sw": "%\x1f" + v + "%", "ew": "%" + v + "\x1f%"}[op]
		if !ok {
			return "", nil, filterErrf("%s: %s does not apply to a multi-valued attribute", x.AttributePath, op)
		}
		cond := col.name + ` LIKE ? ESCAPE '\'`
		if op == "ne" {
			cond = "NOT (" + cond + ")"
		}
		return cond, []any{pattern}, nil
	default:
		s, ok := x.CompareValue.(string)
		if !ok {
			return "", nil, filterErrf("%s: compare with a string in quotes", x.AttributePath)
		}
		if !col.caseExact {
			s = strings.ToLower(s)
			if col.kind != "lower" {
				ref = "LOWER(" + col.name + ")"
			}
		}
		switch op {
		case "co", "sw", "ew":
			like := escapeLike(s)
			switch op {
			case "co":
				like = "%" + like + "%"
			case "sw":
				like += "%"
			case "ew":
				like = "%" + like
			}
			return ref + ` LIKE ? ESCAPE '\'`, []any{like}, nil
		}
		val = s
	}
	sqlOp, ok := map[string]string{"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
	if !ok {
		return "", nil, filterErrf("%s: unknown operator %q", x.AttributePath, op)
	}
	return ref + " " + sqlOp + " ?", []any{val}, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// sortColumn maps sortBy to a column through the same allow-list.
func sortColumn(sortBy string, allow map[string]column) (string, error) {
	p, err := filter.ParseAttrPath([]byte(sortBy))
	if err != nil {
		return "", filterErrf("sortBy: %q is not an attribute path", sortBy)
	}
	col, ok := allow[attrKey(p)]
	if !ok {
		return "", filterErrf("sortBy: %s is not sortable; sortable: %s", sortBy, filterableNames)
	}
	if col.kind == "multi" || col.kind == "valuepath" {
		return "", filterErrf("sortBy: %s is multi-valued", sortBy)
	}
	return col.name, nil
}
