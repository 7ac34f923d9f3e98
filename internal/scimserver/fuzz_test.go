package scimserver

import (
	"regexp"
	"strings"
	"testing"
)

var sqlWord = regexp.MustCompile(`[A-Za-z_]+`)

// FuzzFilter: any filter either fails to parse or translate, or becomes
// SQL whose words are only allow-listed columns and SQL keywords, with one
// bound argument per placeholder: nothing from the filter reaches the SQL
// text.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		`userName eq "bjensen"`, `name.familyName co "O'Malley"`, `userName sw "J"`, `title pr`,
		`meta.lastModified gt "2011-05-13T04:42:34Z"`, `title pr and userType eq "Employee"`,
		`userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")`,
		`emails[type eq "work" and value co "@example.com"]`, `not (active eq false)`, `userName eq "x') OR 1=1 --"`,
	} {
		f.Add(s)
	}
	allowed := map[string]bool{"AND": true, "OR": true, "NOT": true, "LIKE": true, "ESCAPE": true, "LOWER": true,
		"id": true, "IN": true, "SELECT": true, "resource_id": true, "FROM": true, "scim_values": true, "WHERE": true, "attr": true}
	for _, m := range []map[string]column{filterable, valueColumns} {
		for _, c := range m {
			allowed[c.name] = true
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		expr, err := parseFilter(in)
		if err != nil {
			return
		}
		where, args, err := sqlWhere(expr, filterable)
		if err != nil {
			return
		}
		for _, w := range sqlWord.FindAllString(where, -1) {
			if !allowed[w] {
				t.Fatalf("filter %q produced SQL %q with %q", in, where, w)
			}
		}
		if strings.Count(where, "?") != len(args) {
			t.Fatalf("filter %q: %d placeholders, %d arguments", in, strings.Count(where, "?"), len(args))
		}
	})
}

// FuzzPatch: any PATCH body is applied or refused with a SCIM error, and
// what is applied still normalizes or is refused; never a panic.
func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails","value":[{"value":"a@b","type":"home"}]}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"emails[type eq \"work\"]"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"x"}}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		doc := map[string]any{"schemas": []any{UserSchema}, "userName": "u", "active": true,
			"emails": []any{map[string]any{"value": "u@example.com", "type": "work"}}}
		out, err := applyPatch(doc, []byte(body), "u1")
		if err != nil {
			if _, ok := err.(*scimError); !ok {
				t.Fatalf("applyPatch error %T %v is not a SCIM error", err, err)
			}
			return
		}
		normalize(out)
	})
}
