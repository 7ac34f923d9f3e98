package policy

import (
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/jml-dev/jml/internal/identity"
)

const quickstart = "../../examples/quickstart/policy.yaml"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"unknown field", "systems:\n  - name: v\n    typo: builtin\n", `p.yaml: systems[0]: unknown key "typo" on line 3 (allowed: name, type, config, deleteAfter, adopt; did you mean type?)`},
		{"misspelt key", "systems: [{name: v, type: builtin}]\nentitlements:\n  - {name: a, system: v}\n  - {name: b, system: v}\n  - name: c\n    system: v\n    maxDuraton: 1h\n", `p.yaml: entitlements[2]: unknown key "maxDuraton" on line 7 (allowed: name, system, description, risk, maxDuration, requiresApproval, target; did you mean maxDuration?)`},
		{"misspelt top-level key", "attribtues: []\n", `p.yaml: unknown key "attribtues" on line 1 (allowed: attributes, systems, entitlements, roles, birthright, credentials; did you mean attributes?)`},
		{"cel syntax", "systems: [{name: v, type: builtin}]\nentitlements: [{name: e, system: v}]\nbirthright:\n  - name: r1\n    when: identity.kind ==\n    entitlements: [e]\n", `p.yaml: birthright rule "r1": when: ERROR`},
		{"cel undeclared", "systems: [{name: v, type: builtin}]\nentitlements: [{name: e, system: v}]\nbirthright:\n  - name: r1\n    when: user.kind == \"human\"\n    entitlements: [e]\n", "undeclared reference to 'user'"},
		{"not bool", "systems: [{name: v, type: builtin}]\nentitlements: [{name: e, system: v}]\nbirthright:\n  - name: r1\n    when: '\"x\"'\n    entitlements: [e]\n", "must be a boolean expression"},
		{"unknown system", "entitlements: [{name: e, system: nope}]\n", `entitlement "e": unknown system "nope"`},
		{"unknown role", "systems: [{name: v, type: builtin}]\nbirthright:\n  - name: r1\n    when: 'true'\n    roles: [ghost]\n", `unknown role "ghost"`},
		{"empty rule", "systems: [{name: v, type: builtin}]\nbirthright:\n  - name: r1\n    when: 'true'\n", "grants nothing"},
		{"bad risk", "systems: [{name: v, type: builtin}]\nentitlements: [{name: e, system: v, risk: extreme}]\n", `unknown risk "extreme"`},
		{"bad duration", "systems: [{name: v, type: builtin}]\nentitlements: [{name: e, system: v, maxDuration: soon}]\n", "maxDuration: invalid duration"},
		{"zero duration", "systems: [{name: v, type: builtin}]\nentitlements: [{name: e, system: v, maxDuration: 0s}]\n", "maxDuration: \"0s\" would end every grant as it is made"},
		{"bad credential type", "systems: [{name: v, type: builtin}]\ncredentials: [{name: c, system: v, type: cert, when: 'true'}]\n", `unknown type "cert"`},
		{"duplicate", "systems: [{name: v, type: builtin}, {name: v, type: builtin}]\n", `system "v" is defined twice`},
		{"bad retention", "systems: [{name: db, type: postgres, deleteAfter: later}]\n", `system "db": deleteAfter: invalid duration "later"`},
		{"retention on the vault", "systems: [{name: v, type: builtin, deleteAfter: 30d}]\n", `system "v": deleteAfter: the built-in vault holds no accounts`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want containing %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "p.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			if identity.ErrorCode(err) != identity.Invalid {
				t.Fatalf("code = %s, want invalid", identity.ErrorCode(err))
			}
		})
	}
}

func TestDesiredQuickstart(t *testing.T) {
	p, err := LoadFile(quickstart)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		id         identity.Identity
		wantGrants []string
		wantCreds  []string
	}{
		{"engineer", identity.Identity{Kind: identity.Human, State: identity.Active, Attributes: map[string]any{"department": "Engineering"}}, []string{"git-read", "git-write"}, []string{"personal-token"}},
		{"sales", identity.Identity{Kind: identity.Human, State: identity.Active, Attributes: map[string]any{"department": "Sales"}}, nil, []string{"personal-token"}},
		{"no department", identity.Identity{Kind: identity.Human, State: identity.Active}, nil, []string{"personal-token"}},
		{"pipeline", identity.Identity{Kind: identity.Pipeline, State: identity.Active}, []string{"ci-deploy-staging", "git-read"}, []string{"pipeline-key"}},
		{"agent", identity.Identity{Kind: identity.AIAgent, State: identity.Active, Attributes: map[string]any{"tools": []any{"search-docs", "prod-db-write"}}}, []string{"tool:prod-db-write", "tool:search-docs"}, []string{"agent-key"}},
		{"departed", identity.Identity{Kind: identity.Human, State: identity.Departed, Attributes: map[string]any{"department": "Engineering"}}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Desired(&tt.id)
			var gotGrants, gotCreds []string
			for _, g := range d.Grants {
				gotGrants = append(gotGrants, g.Entitlement)
			}
			for _, c := range d.Credentials {
				gotCreds = append(gotCreds, c.Name)
			}
			if !reflect.DeepEqual(gotGrants, tt.wantGrants) || !reflect.DeepEqual(gotCreds, tt.wantCreds) {
				t.Fatalf("Desired = grants %v creds %v, want %v %v", gotGrants, gotCreds, tt.wantGrants, tt.wantCreds)
			}
		})
	}
	if e := p.Entitlement("tool:prod-db-write"); !e.RequiresApproval || e.MaxDuration.Hours() != 720 {
		t.Fatalf("prod-db-write = %+v, want approval and 720h", e)
	}
	if p.Entitlement("git-write").RequiresApproval {
		t.Fatal("medium risk git-write requires approval, want not")
	}
}

// TestMemoAgreesWithExplain checks the memoised path against a full
// evaluation over many generated identities, including rules that read the
// whole attribute map and indexed access.
func TestMemoAgreesWithExplain(t *testing.T) {
	src := `
systems: [{name: v, type: builtin}]
entitlements: [{name: a, system: v}, {name: b, system: v}, {name: c, system: v}, {name: d, system: v}]
birthright:
  - {name: r1, when: 'identity.kind == "human" && identity.attributes.dept == "eng"', entitlements: [a]}
  - {name: r2, when: 'identity.attributes["env"] == "prod"', entitlements: [b]}
  - {name: r3, when: '"x" in identity.attributes', entitlements: [c]}
  - {name: r4, when: 'identity.state == "active" || identity.kind == "pipeline"', entitlements: [d]}
`
	p, err := Parse("memo.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	pick := func(xs ...string) string { return xs[rng.Intn(len(xs))] }
	for i := 0; i < 2000; i++ {
		id := identity.Identity{
			Kind:       identity.Kind(pick("human", "pipeline", "ai_agent")),
			State:      identity.State(pick("active", "suspended", "pending")),
			Attributes: map[string]any{},
		}
		if rng.Intn(2) == 0 {
			id.Attributes["dept"] = pick("eng", "ops")
		}
		if rng.Intn(2) == 0 {
			id.Attributes["env"] = pick("prod", "dev")
		}
		if rng.Intn(3) == 0 {
			id.Attributes["x"] = "1"
		}
		got, want := p.Desired(&id), p.Explain(&id)
		if fmt.Sprint(got.Grants) != fmt.Sprint(want.Grants) {
			t.Fatalf("identity %+v: memo %v, explain %v", id, got.Grants, want.Grants)
		}
	}
}

func TestRuleErrorsDoNotMatch(t *testing.T) {
	p, err := Parse("e.yaml", []byte("systems: [{name: v, type: builtin}]\nentitlements: [{name: a, system: v}]\nbirthright:\n  - {name: r, when: 'identity.attributes.level > 3', entitlements: [a]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Explain(&identity.Identity{Kind: identity.Human, State: identity.Active})
	if len(d.Grants) != 0 || len(d.Errors) != 1 || d.Errors[0].Rule != "r" {
		t.Fatalf("Desired = %+v, want no grants and one error for rule r", d)
	}
}

// TestDocumentedShapes keeps the examples in docs/policy.md working.
func TestDocumentedShapes(t *testing.T) {
	src := `
systems: [{name: v, type: builtin}]
entitlements: [{name: a, system: v}, {name: b, system: v}, {name: c, system: v}]
birthright:
  - {name: tools, when: '"prod-db-write" in identity.attributes.tools', entitlements: [a]}
  - {name: env, when: 'has(identity.attributes.env) && identity.attributes.env == "prod"', entitlements: [b]}
  - {name: loc, when: 'identity.attributes.location.startsWith("eu-")', entitlements: [c]}
`
	p, err := Parse("doc.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Explain(&identity.Identity{Kind: identity.AIAgent, State: identity.Active,
		Attributes: map[string]any{"tools": []any{"prod-db-write"}, "location": "eu-west"}})
	var got []string
	for _, g := range d.Grants {
		got = append(got, g.Entitlement)
	}
	if strings.Join(got, ",") != "a,c" || len(d.Errors) != 0 {
		t.Fatalf("grants %v errors %v, want a,c and no errors (has() guards the missing env)", got, d.Errors)
	}
}
