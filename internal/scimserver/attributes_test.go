package scimserver

import (
	"context"
	"strings"
	"testing"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// TestAttributesFitThePolicy: a User whose mapped value does not fit the
// type or values the policy declares (the quickstart's tools) is refused
// with 400 invalidValue naming the User's attribute, the type and the
// value, on create, PUT and PATCH; nothing is stored or changed, and a
// reactivation with such a value does not resume the identity either.
func TestAttributesFitThePolicy(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const tools = "urn:jml:params:scim:schemas:extension:nhi:2.0:User:tools (identity attribute tools): the policy declares it list(string) of search-docs, read-tickets, prod-db-write; "
	refused := func(code int, body map[string]any, detail string) {
		t.Helper()
		f.want(400, "invalidValue", code, body)
		if d, _ := body["detail"].(string); d != tools+detail {
			t.Fatalf("detail = %q, want %q", d, tools+detail)
		}
	}
	code, _, body := f.do("POST", "/scim/okta/v2/Users", "okta", map[string]any{"schemas": []string{UserSchema}, "userName": "alice"})
	f.want(201, "", code, body)
	alice := body["id"].(string)
	agent := func(tools []string) map[string]any {
		return map[string]any{"schemas": []string{UserSchema, NHISchema}, "userName": "agent", "active": true,
			NHISchema: map[string]any{"kind": "ai_agent", "owner": map[string]any{"value": alice}, "tools": tools}}
	}
	code, _, body = f.do("POST", "/scim/okta/v2/Users", "okta", agent([]string{"search-docs", "deploy"}))
	refused(code, body, `item 1, "deploy", is not one of them`)
	code, _, body = f.do("GET", "/scim/okta/v2/Users?filter="+`userName%20eq%20"agent"`, "okta", nil)
	if body["totalResults"] != 0.0 {
		t.Fatalf("a refused User was stored: %v", body)
	}

	code, _, body = f.do("POST", "/scim/okta/v2/Users", "okta", agent([]string{"search-docs"}))
	f.want(201, "", code, body)
	id := body["id"].(string)
	held := func() (identity.State, []any) {
		var got *identity.Identity
		f.s.View(context.Background(), func(tx store.Tx) error {
			got, _ = tx.GetIdentityByExternalID(context.Background(), "okta", id)
			return nil
		})
		l, _ := got.Attributes["tools"].([]any)
		return got.State, l
	}
	code, _, body = f.do("PATCH", "/scim/okta/v2/Users/"+id, "okta", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [{"op": "add", "path": "urn:jml:params:scim:schemas:extension:nhi:2.0:User:tools", "value": ["prod-db-admin"]}]}`)
	refused(code, body, `item 1, "prod-db-admin", is not one of them`)
	if state, l := held(); state != identity.Active || len(l) != 1 || l[0] != "search-docs" {
		t.Fatalf("after a refused PATCH: %s %v", state, l)
	}
	// Suspended (okta deactivates by suspending), then reactivated with a
	// tool that does not exist: neither the resume nor the mover happens.
	u := agent([]string{"search-docs"})
	u["active"] = false
	code, _, body = f.do("PUT", "/scim/okta/v2/Users/"+id, "okta", u)
	f.want(200, "", code, body)
	u = agent([]string{"deploy"})
	code, _, body = f.do("PUT", "/scim/okta/v2/Users/"+id, "okta", u)
	refused(code, body, `item 0, "deploy", is not one of them`)
	if state, l := held(); state != identity.Suspended || len(l) != 1 || l[0] != "search-docs" {
		t.Fatalf("after a refused reactivation: %s %v", state, l)
	}
	code, _, body = f.do("GET", "/scim/okta/v2/Users/"+id, "okta", nil)
	if body["active"] != false || !strings.Contains(strings.Join(toStrings(body[NHISchema].(map[string]any)["tools"]), ","), "search-docs") {
		t.Fatalf("the User changed: %v", body)
	}
	code, _, body = f.do("PUT", "/scim/okta/v2/Users/"+id, "okta", agent([]string{"read-tickets"}))
	f.want(200, "", code, body)
	if state, l := held(); state != identity.Active || len(l) != 1 || l[0] != "read-tickets" {
		t.Fatalf("after a reactivation that fits: %s %v", state, l)
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
