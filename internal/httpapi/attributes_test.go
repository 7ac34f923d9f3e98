package httpapi

import (
	"slices"
	"testing"

	"github.com/jml-dev/jml/internal/engine"
)

// TestEventAttributesFitThePolicy: over HTTP, on both backends, an event
// whose attribute does not fit the type or values the policy declares is
// refused with 400 naming the attribute, the type and the value, and the
// identity keeps its access (the mover revoked tool:search-docs
// with a string where a list is declared).
func TestEventAttributesFitThePolicy(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t, backend)
			a.do("POST", "/v1/events", "source", map[string]any{"source": "hr", "id": "1", "type": "joiner", "externalId": "owner", "kind": "human"}, 202, nil)
			var res engine.Result
			a.do("POST", "/v1/events", "source", map[string]any{"source": "hr", "id": "2", "type": "joiner", "externalId": "agent", "kind": "ai_agent", "owner": "owner",
				"attributes": map[string]any{"tools": []string{"search-docs", "read-tickets"}}}, 202, &res)
			held := func() []string {
				var v engine.IdentityView
				a.do("GET", "/v1/identities/"+res.IdentityID, "admin", nil, 200, &v)
				var out []string
				for _, g := range v.Grants {
					out = append(out, g.Entitlement)
				}
				slices.Sort(out)
				return out
			}
			want := []string{"tool:read-tickets", "tool:search-docs"}
			if got := held(); !slices.Equal(got, want) {
				t.Fatalf("the agent holds %v, want %v", got, want)
			}
			for _, tc := range []struct {
				name  string
				attrs map[string]any
				field string
				msg   string
			}{
				{"a string where a list is declared", map[string]any{"tools": "prod-db-write"}, "attributes.tools",
					`the policy declares it list(string) of search-docs, read-tickets, prod-db-write; "prod-db-write" is a string`},
				{"a value outside values", map[string]any{"tools": []string{"search-docs", "prod-db-admin"}}, "attributes.tools",
					`the policy declares it list(string) of search-docs, read-tickets, prod-db-write; item 1, "prod-db-admin", is not one of them`},
				{"a number where a string is declared", map[string]any{"cluster": 3}, "attributes.cluster",
					`the policy declares it string; 3 is a number`},
			} {
				code, data := a.send("POST", "/v1/events", "source", map[string]any{"source": "hr", "id": "3", "type": "mover", "externalId": "agent", "attributes": tc.attrs})
				e := a.errorOf(data)
				if code != 400 || e.Error.Code != "invalid" || e.Error.Field != tc.field || e.Error.Message != tc.msg {
					t.Errorf("%s: %d %s", tc.name, code, data)
				}
			}
			if got := held(); !slices.Equal(got, want) {
				t.Fatalf("refused movers changed access: %v, want %v", got, want)
			}
			// Corrected, the same event ID is accepted.
			a.do("POST", "/v1/events", "source", map[string]any{"source": "hr", "id": "3", "type": "mover", "externalId": "agent", "attributes": map[string]any{"tools": []string{"search-docs"}}}, 202, nil)
		})
	}
}
