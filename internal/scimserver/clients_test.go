package scimserver

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jml-dev/jml/internal/identity"
)

// Requests as identity providers send them (Okta, Entra ID) and as RFC
// 7643/7644 say, each once wrong in this server.

func patchOp(ops string) string {
	return `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [` + ops + `]}`
}

// TestOktaGroupPushRepeatsTheID: Okta's group push replaces the whole group
// with a value that repeats its id; an unchanged read-only value is
// accepted, a changed one is a mutability error.
func TestOktaGroupPushRepeatsTheID(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, _, body := f.do("POST", "/scim/okta/v2/Groups", "okta", map[string]any{"schemas": []string{GroupSchema}, "displayName": "Ops"})
	f.want(201, "", code, body)
	gid := body["id"].(string)
	code, _, body = f.do("PATCH", "/scim/okta/v2/Groups/"+gid, "okta", patchOp(`{"op": "replace", "value": {"id": "`+gid+`", "displayName": "Ops EU"}}`))
	f.want(200, "", code, body)
	if body["displayName"] != "Ops EU" || body["id"] != gid {
		t.Fatalf("renamed group = %v", body)
	}
	code, _, body = f.do("PATCH", "/scim/okta/v2/Groups/"+gid, "okta", patchOp(`{"op": "replace", "value": {"id": "another", "displayName": "X"}}`))
	f.want(400, "mutability", code, body)
	code, _, body = f.do("PATCH", "/scim/okta/v2/Groups/"+gid, "okta", patchOp(`{"op": "replace", "path": "id", "value": "another"}`))
	f.want(400, "mutability", code, body)
	code, _, body = f.do("GET", "/scim/okta/v2/Groups/"+gid, "okta", nil)
	f.want(200, "", code, body)
	if body["displayName"] != "Ops EU" {
		t.Fatalf("refused PATCHes changed the group: %v", body)
	}
}

// TestManagerRemoved: removing the manager by PATCH, or leaving it out of
// a PUT, takes the identity's manager away, and the User carries no empty
// extension object.
func TestManagerRemoved(t *testing.T) {
	t.Parallel()
	f := setup(t)
	user := func(name string, manager string) map[string]any {
		u := map[string]any{"schemas": []string{UserSchema, EnterpriseSchema}, "userName": name}
		if manager != "" {
			u[EnterpriseSchema] = map[string]any{"manager": map[string]any{"value": manager}}
		}
		return u
	}
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", user("boss@example.com", ""))
	f.want(201, "", code, body)
	boss := body["id"].(string)
	bossID := f.identity(boss).ID
	for _, how := range []string{"patch", "put"} {
		code, _, body = f.do("POST", "/scim/entra/v2/Users", "entra", user(how+"@example.com", boss))
		f.want(201, "", code, body)
		id := body["id"].(string)
		if got := f.identity(id).ManagerID; got != bossID {
			t.Fatalf("%s: manager = %q, want %s", how, got, bossID)
		}
		if how == "patch" {
			code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra",
				patchOp(`{"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}`))
		} else {
			code, _, body = f.do("PUT", "/scim/entra/v2/Users/"+id, "entra", user(how+"@example.com", ""))
		}
		f.want(200, "", code, body)
		if got := f.identity(id).ManagerID; got != "" {
			t.Fatalf("%s: manager after removal = %q", how, got)
		}
		if ext, ok := body[EnterpriseSchema]; ok {
			t.Fatalf("%s: the User keeps the extension %v", how, ext)
		}
	}
}

// TestPatchScimTypes: RFC 7644 §3.5.2 names the scimType of each refusal.
func TestPatchScimTypes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "pat@example.com"})
	f.want(201, "", code, body)
	id := body["id"].(string)
	for _, tc := range []struct{ ops, scimType string }{
		{`{"op": "remove", "path": "userName"}`, "mutability"},
		{`{"op": "replace", "path": "favouriteColour", "value": "red"}`, "invalidPath"},
		{`{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:nope:2.0:User:x", "value": "y"}`, "invalidPath"},
		{`{"op": "replace", "path": "meta", "value": {}}`, "mutability"},
	} {
		code, _, body := f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", patchOp(tc.ops))
		f.want(400, tc.scimType, code, body)
	}
	code, _, body = f.do("GET", "/scim/entra/v2/Users/"+id, "entra", nil)
	f.want(200, "", code, body)
	if body["userName"] != "pat@example.com" || body["meta"].(map[string]any)["version"] != `W/"1"` {
		t.Fatalf("refused PATCHes changed the User: %v", body)
	}
}

// TestFilterStringsAreJSON: RFC 7644 §3.4.2.2's string values are JSON
// strings, escapes and all; Entra's uniqueness query on a value filter's
// sub-attribute finds the user; a filter nested too deep is invalidFilter,
// not a server error.
func TestFilterStringsAreJSON(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, u := range []map[string]any{
		{"schemas": []string{UserSchema}, "userName": `q"x`},
		{"schemas": []string{UserSchema}, "userName": `q\"x`},
		{"schemas": []string{UserSchema}, "userName": "Zoë"},
		{"schemas": []string{UserSchema}, "userName": "ent", "emails": []map[string]any{{"type": "home", "value": "home@example.com"}, {"type": "work", "value": "ent@example.com"}}},
	} {
		code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", u)
		f.want(201, "", code, body)
	}
	find := func(filter string) []string {
		t.Helper()
		code, _, body := f.do("GET", "/scim/entra/v2/Users?filter="+url.QueryEscape(filter), "entra", nil)
		f.want(200, "", code, body)
		var names []string
		for _, r := range body["Resources"].([]any) {
			names = append(names, r.(map[string]any)["userName"].(string))
		}
		return names
	}
	for filter, want := range map[string]string{
		`userName eq "q\"x"`:                                 `q"x`,
		`userName eq "q\\\"x"`:                               `q\"x`,
		`userName eq "Zo\u00eb"`:                             "Zoë",
		`emails[type eq "work"].value eq "ent@example.com"`:  "ent",
		`emails[type eq "work"].value eq "home@example.com"`: "",
	} {
		got := strings.Join(find(filter), ",")
		if got != want {
			t.Errorf("filter %s found %q, want %q", filter, got, want)
		}
	}
	for _, bad := range []string{strings.Repeat("not (", 1000) + `userName eq "x"` + strings.Repeat(")", 1000), `userName eq "unterminated`, `userName eq "bad \x escape"`} {
		code, _, body := f.do("GET", "/scim/entra/v2/Users?filter="+url.QueryEscape(bad), "entra", nil)
		f.want(400, "invalidFilter", code, body)
	}
}

// TestOnePrimary: at most one primary value (RFC 7643 §2.4); a PATCH that
// adds a primary email moves the mark (RFC 7644 §3.5.2.1); a repeated
// (type, value) pair is kept once.
func TestOnePrimary(t *testing.T) {
	t.Parallel()
	f := setup(t)
	two := map[string]any{"schemas": []string{UserSchema}, "userName": "two@example.com", "emails": []map[string]any{
		{"value": "a@example.com", "primary": true}, {"value": "b@example.com", "primary": true}}}
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", two)
	f.want(400, "invalidValue", code, body)
	one := map[string]any{"schemas": []string{UserSchema}, "userName": "one@example.com", "emails": []map[string]any{
		{"type": "work", "value": "a@example.com", "primary": true}, {"type": "work", "value": "a@example.com", "primary": false}, {"type": "home", "value": "h@example.com"}}}
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "entra", one)
	f.want(201, "", code, body)
	id := body["id"].(string)
	if n := len(body["emails"].([]any)); n != 2 {
		t.Fatalf("emails after POST = %v, want the repeated pair once", body["emails"])
	}
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", patchOp(`{"op": "add", "path": "emails", "value": [{"type": "other", "value": "n@example.com", "primary": true}]}`))
	f.want(200, "", code, body)
	var primaries []string
	for _, e := range body["emails"].([]any) {
		if m := e.(map[string]any); m["primary"] == true {
			primaries = append(primaries, m["value"].(string))
		}
	}
	if strings.Join(primaries, ",") != "n@example.com" {
		t.Fatalf("primary emails after PATCH = %v", primaries)
	}
	if got := f.identity(id).Attributes["email"]; got != "n@example.com" {
		t.Fatalf("identity email = %v, want the primary one", got)
	}
}

// TestSearchMeBulkAndGroupMembers: POST .search takes the query in its body
// (RFC 7644 §3.4.3); /Me and /Bulk, which this server does not provide,
// answer 501; group members keep their display and carry $ref and type;
// /Schemas declares members.$ref a reference to Users; lastModified tells
// two changes within a second apart.
func TestSearchMeBulkAndGroupMembers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "sue@example.com"})
	f.want(201, "", code, body)
	sue := body["id"].(string)
	created := body["meta"].(map[string]any)["lastModified"].(string)
	code, _, body = f.do("POST", "/scim/entra/v2/Users/.search", "entra", map[string]any{"schemas": []string{SearchSchema},
		"filter": `userName eq "sue@example.com"`, "attributes": []string{"userName"}, "startIndex": 1, "count": 10})
	f.want(200, "", code, body)
	if body["totalResults"] != float64(1) || body["Resources"].([]any)[0].(map[string]any)["displayName"] != nil {
		t.Fatalf(".search = %v", body)
	}
	code, _, body = f.do("POST", "/scim/entra/v2/Users/.search", "entra", map[string]any{"filter": `userName eq "x"`})
	f.want(400, "invalidSyntax", code, body)
	for _, p := range []string{"GET /scim/entra/v2/Me", "POST /scim/entra/v2/Bulk"} {
		method, path, _ := strings.Cut(p, " ")
		code, _, body = f.do(method, path, "entra", nil)
		f.want(501, "", code, body)
	}
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+sue, "entra", patchOp(`{"op": "replace", "path": "title", "value": "Lead"}`))
	f.want(200, "", code, body)
	if modified := body["meta"].(map[string]any)["lastModified"].(string); modified == created {
		t.Fatalf("lastModified %s did not move with a change", modified)
	}

	code, _, body = f.do("POST", "/scim/entra/v2/Groups", "entra", map[string]any{"schemas": []string{GroupSchema}, "displayName": "Leads",
		"members": []map[string]any{{"value": sue, "display": "Sue", "type": "User"}}})
	f.want(201, "", code, body)
	gid := body["id"].(string)
	code, _, body = f.do("GET", "/scim/entra/v2/Groups/"+gid, "entra", nil)
	f.want(200, "", code, body)
	m := body["members"].([]any)[0].(map[string]any)
	if m["display"] != "Sue" || m["type"] != "User" || !strings.HasSuffix(m["$ref"].(string), "/scim/entra/v2/Users/"+sue) {
		t.Fatalf("member = %v", m)
	}
	code, _, body = f.do("POST", "/scim/entra/v2/Groups", "entra", map[string]any{"schemas": []string{GroupSchema}, "displayName": "Nested",
		"members": []map[string]any{{"value": gid, "type": "Group"}}})
	f.want(400, "invalidValue", code, body)

	code, _, body = f.do("GET", "/scim/entra/v2/Schemas", "entra", nil)
	f.want(200, "", code, body)
	var ref map[string]any
	for _, s := range body["Resources"].([]any) {
		for _, a := range s.(map[string]any)["attributes"].([]any) {
			if am := a.(map[string]any); am["name"] == "members" {
				for _, sa := range am["subAttributes"].([]any) {
					if sam := sa.(map[string]any); sam["name"] == "$ref" {
						ref = sam
					}
				}
			}
		}
	}
	if ref["type"] != "reference" || fmt.Sprint(ref["referenceTypes"]) != "[User]" {
		t.Fatalf("members.$ref in /Schemas = %v", ref)
	}
}

// TestSCIMInputHygiene: SCIM bodies obey the rules of every edge: JSON
// only, valid UTF-8 without NUL, no key twice.
func TestSCIMInputHygiene(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a\u0000b"}`, 400},
		{`{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "one", "userName": "two"}`, 400},
		{"{\"schemas\": [\"urn:ietf:params:scim:schemas:core:2.0:User\"], \"userName\": \"caf\xe9\"}", 400},
	} {
		code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", tc.body)
		f.want(tc.code, "", code, body)
	}
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "plain"}`, "Content-Type", "text/plain")
	f.want(415, "", code, body)
	code, _, body = f.do("GET", "/scim/entra/v2/Users", "entra", nil)
	f.want(200, "", code, body)
	if body["totalResults"] != float64(0) {
		t.Fatalf("refused bodies stored users: %v", body)
	}
}

// TestUserShapeIsChecked: an NHI's kind is fixed and its owner may be
// replaced, not removed; sub-attributes are those RFC 7643 §4.1 names,
// with their types (Entra's string booleans taken as booleans, and counted
// for the one-primary rule); keys differing only in case are one key given
// twice; a write's lastModified is the one a read shows.
func TestUserShapeIsChecked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "boss@example.com"})
	f.want(201, "", code, body)
	boss := body["id"].(string)
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema, NHISchema}, "userName": "bot@example.com",
		NHISchema: map[string]any{"kind": "pipeline", "owner": map[string]any{"value": boss}}})
	f.want(201, "", code, body)
	bot := body["id"].(string)
	modified := body["meta"].(map[string]any)["lastModified"]
	_, _, got := f.do("GET", "/scim/entra/v2/Users/"+bot, "entra", nil)
	if got["meta"].(map[string]any)["lastModified"] != modified {
		t.Fatalf("lastModified written %v, read %v", modified, got["meta"].(map[string]any)["lastModified"])
	}
	for _, tc := range []struct{ ops, scimType string }{
		{`{"op": "remove", "path": "urn:jml:params:scim:schemas:extension:nhi:2.0:User:owner"}`, "invalidValue"},
		{`{"op": "replace", "path": "urn:jml:params:scim:schemas:extension:nhi:2.0:User:kind", "value": "human"}`, "mutability"},
		{`{"op": "replace", "path": "name", "value": {"givenName": 5}}`, "invalidValue"},
		{`{"op": "replace", "path": "name.middle", "value": "J"}`, "invalidSyntax"},
		{`{"op": "add", "path": "emails", "value": [{"value": "a@example.com", "primary": "True"}, {"value": "b@example.com", "primary": "True"}]}`, "invalidValue"},
		{`{"op": "add", "path": "addresses", "value": [{"streetAddress": 7}]}`, "invalidValue"},
		{`{"op": "add", "path": "phoneNumbers", "value": [{"value": "1", "foo": "bar"}]}`, "invalidSyntax"},
	} {
		code, _, body := f.do("PATCH", "/scim/entra/v2/Users/"+bot, "entra", patchOp(tc.ops))
		f.want(400, tc.scimType, code, body)
	}
	if id := f.identity(bot); id.Kind != identity.Pipeline || id.OwnerID != f.identity(boss).ID {
		t.Fatalf("refused PATCHes changed the identity: %+v", id)
	}
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+bot, "entra", patchOp(`{"op": "add", "path": "emails", "value": [{"value": "c@example.com", "primary": "True"}]}`))
	f.want(200, "", code, body)
	if p := body["emails"].([]any)[0].(map[string]any)["primary"]; p != true {
		t.Fatalf("Entra's string boolean kept as %v", p)
	}
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "entra", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dup1", "USERNAME": "dup2"}`)
	f.want(400, "", code, body)
}

// TestEmptyManagerAndWholeExtension: a manager with no value is no manager
// (nothing empty is kept); removing the whole enterprise extension drops it
// and the manager with it; an unknown extension attribute in a path is
// invalidPath.
func TestEmptyManagerAndWholeExtension(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "lead@example.com"})
	f.want(201, "", code, body)
	lead := body["id"].(string)
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema, EnterpriseSchema}, "userName": "rep@example.com",
		EnterpriseSchema: map[string]any{"department": "Ops", "manager": map[string]any{"value": lead}}})
	f.want(201, "", code, body)
	rep := body["id"].(string)
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+rep, "entra", patchOp(`{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": ""}}`))
	f.want(200, "", code, body)
	if ext := body[EnterpriseSchema].(map[string]any); ext["manager"] != nil || f.identity(rep).ManagerID != "" {
		t.Fatalf("after an empty manager: %v, managerId %q", ext, f.identity(rep).ManagerID)
	}
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+rep, "entra", patchOp(`{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:favourite", "value": "x"}`))
	f.want(400, "invalidPath", code, body)
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+rep, "entra", patchOp(`{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}`))
	f.want(200, "", code, body)
	if _, ok := body[EnterpriseSchema]; ok || strings.Contains(fmt.Sprint(body["schemas"]), "enterprise") {
		t.Fatalf("after removing the extension: %v", body)
	}
}
