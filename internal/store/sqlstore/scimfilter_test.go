package sqlstore

import (
	"regexp"
	"strings"
	"testing"

	filter "github.com/scim2/filter-parser/v2"
)

var sqlWord = regexp.MustCompile(`[A-Za-z_]+`)

// FuzzFilter: any filter the parser reads either fails to translate, or becomes
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
		expr, err := filter.ParseFilter([]byte(in))
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
