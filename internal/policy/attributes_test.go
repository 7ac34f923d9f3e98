package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/jml-dev/jml/internal/identity"
)

// TestCheckAttributes: values that do not fit the declared type or values
// are refused naming the attribute, the type and the value; undeclared
// attributes and removals pass.
func TestCheckAttributes(t *testing.T) {
	p, err := Parse("p.yaml", []byte(`
attributes:
  - {name: team}
  - {name: dept, type: string, values: [Eng, Sales]}
  - {name: tools, type: list(string), values: [search, deploy]}
  - {name: tags, type: list(string)}
  - {name: level, type: int}
  - {name: ratio, type: double}
  - {name: contractor, type: bool}
  - {name: extra, type: any}
  - {name: ports, type: list(int)}
systems: [{name: v, type: builtin}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		attrs       map[string]any
		field, want string // field "": accepted
	}{
		{map[string]any{"team": "a", "dept": "Eng", "tools": []any{"search"}, "tags": []string{"x"}, "level": float64(3), "ratio": 0.5,
			"contractor": true, "extra": []any{1.0, "x"}, "undeclared": 42.0, "ports": []any{80.0}}, "", ""},
		{map[string]any{"level": int64(3), "ratio": int64(1)}, "", ""}, // a CEL mapping's integers
		{map[string]any{"tools": nil, "dept": nil}, "", ""},            // a mover's removals
		{nil, "", ""}, //
		{map[string]any{"tools": "deploy"}, "attributes.tools", `the policy declares it list(string) of search, deploy; "deploy" is a string`},
		{map[string]any{"tools": []any{"search", "prod"}}, "attributes.tools", `the policy declares it list(string) of search, deploy; item 1, "prod", is not one of them`},
		{map[string]any{"tags": []any{"a", 3.0}}, "attributes.tags", `the policy declares it list(string); item 1, 3, is a number`},
		{map[string]any{"dept": "Marketing"}, "attributes.dept", `the policy declares it string, one of Eng, Sales; "Marketing" is not one of them`},
		{map[string]any{"team": 42.0}, "attributes.team", `the policy declares it string; 42 is a number`},
		{map[string]any{"team": []any{"a"}}, "attributes.team", `the policy declares it string; ["a"] is a list`},
		{map[string]any{"level": "3"}, "attributes.level", `the policy declares it int; "3" is a string`},
		{map[string]any{"level": 2.5}, "attributes.level", `the policy declares it int; 2.5 is not a whole number`},
		{map[string]any{"ratio": true}, "attributes.ratio", `the policy declares it double; true is a boolean`},
		{map[string]any{"contractor": "yes"}, "attributes.contractor", `the policy declares it bool; "yes" is a string`},
		{map[string]any{"ports": []any{"80"}}, "attributes.ports", `item 0, "80", is not a whole number`},
		// The first misfit in name order, whatever the map's order.
		{map[string]any{"tools": "x", "dept": "x", "team": 1.0}, "attributes.dept", `"x" is not one of them`},
	} {
		err := p.CheckAttributes(tc.attrs)
		if tc.field == "" {
			if err != nil {
				t.Errorf("CheckAttributes(%v) = %v", tc.attrs, err)
			}
			continue
		}
		var ie *identity.Error
		if !errors.As(err, &ie) || ie.Code != identity.Invalid || ie.Field != tc.field || !strings.Contains(ie.Message, tc.want) {
			t.Errorf("CheckAttributes(%v) = %#v, want %s: …%s", tc.attrs, err, tc.field, tc.want)
		}
	}
	// A policy without attributes: section checks nothing.
	none, err := Parse("p.yaml", []byte("systems: [{name: v, type: builtin}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if none.DeclaresAttributes() || none.CheckAttributes(map[string]any{"tools": "x"}) != nil {
		t.Fatal("a policy that declares nothing refused an attribute")
	}
}
