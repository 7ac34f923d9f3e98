package scimserver

import (
	"net/url"
	"slices"
	"testing"
)

// TestGroups: membership is the identity attribute "groups"; adding,
// removing, renaming and deleting a group are movers for its members.
func TestGroups(t *testing.T) {
	t.Parallel()
	f := setup(t)
	user := func(name string) string {
		code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": name})
		f.want(201, "", code, body)
		return body["id"].(string)
	}
	ann, bob, cy := user("ann"), user("bob"), user("cy")
	groupsOfIdentity := func(id string) []string {
		t.Helper()
		g, _ := f.identity(id).Attributes["groups"].([]any)
		var out []string
		for _, x := range g {
			out = append(out, x.(string))
		}
		slices.Sort(out)
		return out
	}

	// RFC 7643 §8.4's Group, with our users as members.
	code, _, body := f.do("POST", "/scim/entra/v2/Groups", "entra", map[string]any{"schemas": []string{GroupSchema}, "displayName": "Tour Guides",
		"members": []map[string]any{{"value": ann, "display": "Ann"}, {"value": bob}}})
	f.want(201, "", code, body)
	gid := body["id"].(string)
	if got := groupsOfIdentity(ann); !slices.Equal(got, []string{"Tour Guides"}) {
		t.Fatalf("ann's groups = %v", got)
	}
	if got := groupsOfIdentity(cy); len(got) != 0 {
		t.Fatalf("cy's groups = %v", got)
	}
	// The User shows its groups, read-only.
	_, _, body = f.do("GET", "/scim/entra/v2/Users/"+ann, "entra", nil)
	if g := body["groups"].([]any); len(g) != 1 || g[0].(map[string]any)["value"] != gid {
		t.Fatalf("ann's User groups = %v", body["groups"])
	}

	// Entra's PATCH: add with a list, remove with the members in value.
	code, _, body = f.do("PATCH", "/scim/entra/v2/Groups/"+gid, "entra", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
	  {"op": "Add", "path": "members", "value": [{"value": "`+cy+`"}]},
	  {"op": "Remove", "path": "members", "value": [{"value": "`+ann+`"}]}]}`)
	f.want(200, "", code, body)
	if len(groupsOfIdentity(ann)) != 0 || !slices.Equal(groupsOfIdentity(cy), []string{"Tour Guides"}) {
		t.Fatalf("after PATCH: ann %v, cy %v", groupsOfIdentity(ann), groupsOfIdentity(cy))
	}
	// RFC 7644 §3.5.2.2's remove by value filter.
	code, _, body = f.do("PATCH", "/scim/entra/v2/Groups/"+gid, "entra", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
	  {"op": "remove", "path": "members[value eq \"`+bob+`\"]"}]}`)
	f.want(200, "", code, body)
	if len(groupsOfIdentity(bob)) != 0 {
		t.Fatalf("bob still in %v", groupsOfIdentity(bob))
	}
	// A rename is a mover for every member.
	code, _, body = f.do("PATCH", "/scim/entra/v2/Groups/"+gid, "entra", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
	  {"op": "replace", "path": "displayName", "value": "Guides"}]}`)
	f.want(200, "", code, body)
	if !slices.Equal(groupsOfIdentity(cy), []string{"Guides"}) {
		t.Fatalf("after rename: %v", groupsOfIdentity(cy))
	}
	// A PUT of the user keeps the groups the server manages.
	code, _, body = f.do("PUT", "/scim/entra/v2/Users/"+cy, "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "cy", "title": "Lead", "groups": []any{}})
	f.want(200, "", code, body)
	if !slices.Equal(groupsOfIdentity(cy), []string{"Guides"}) || body["groups"] == nil {
		t.Fatalf("after PUT of the user: %v / %v", groupsOfIdentity(cy), body["groups"])
	}

	// Filters on groups; a member that is not a User; a name taken.
	code, _, body = f.do("GET", `/scim/entra/v2/Groups?filter=displayName%20eq%20%22guides%22`, "entra", nil)
	if code != 200 || body["totalResults"] != float64(1) {
		t.Fatalf("filter groups: %d %v", code, body)
	}
	code, _, body = f.do("GET", "/scim/entra/v2/Groups?filter="+url.QueryEscape(`members[value eq "`+cy+`"]`), "entra", nil)
	if code != 200 || body["totalResults"] != float64(1) {
		t.Fatalf("groups with cy as a member: %d %v", code, body)
	}
	code, _, body = f.do("GET", "/scim/entra/v2/Groups?filter="+url.QueryEscape(`members[value eq "`+ann+`"]`), "entra", nil)
	if code != 200 || body["totalResults"] != float64(0) {
		t.Fatalf("groups with ann as a member: %d %v", code, body)
	}
	code, _, body = f.do("GET", "/scim/entra/v2/Groups?filter="+url.QueryEscape(`emails[value eq "x"]`), "entra", nil)
	f.want(400, "invalidFilter", code, body)
	code, _, body = f.do("POST", "/scim/entra/v2/Groups", "entra", map[string]any{"schemas": []string{GroupSchema}, "displayName": "Ops", "members": []map[string]any{{"value": "nobody"}}})
	f.want(400, "invalidValue", code, body)
	code, _, body = f.do("POST", "/scim/entra/v2/Groups", "entra", map[string]any{"schemas": []string{GroupSchema}, "displayName": "GUIDES"})
	f.want(409, "uniqueness", code, body)
	code, _, body = f.do("GET", "/scim/entra/v2/Groups/"+ann, "entra", nil) // a User's id is not a Group
	f.want(404, "", code, body)

	// Deleting the group is a mover for its members.
	code, _, _ = f.do("DELETE", "/scim/entra/v2/Groups/"+gid, "entra", nil)
	if code != 204 {
		t.Fatalf("DELETE group = %d", code)
	}
	if len(groupsOfIdentity(cy)) != 0 {
		t.Fatalf("after delete: %v", groupsOfIdentity(cy))
	}
}

// TestRFC7644PatchExamples runs RFC 7644 §3.5.2's PATCH examples (with
// this test's ids) against a Group and a User.
func TestRFC7644PatchExamples(t *testing.T) {
	t.Parallel()
	f := setup(t)
	user := func(name string) string {
		code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": name,
			"emails": []map[string]any{{"value": name + "@example.com", "type": "work", "primary": true}, {"value": name + "@home.example", "type": "home"}}})
		f.want(201, "", code, body)
		return body["id"].(string)
	}
	bj, jd, ab := user("bjensen"), user("jdoe"), user("abc")
	code, _, body := f.do("POST", "/scim/entra/v2/Groups", "entra", map[string]any{"schemas": []string{GroupSchema}, "displayName": "Tour Guides"})
	f.want(201, "", code, body)
	gid := body["id"].(string)
	patch := func(path, ops string) map[string]any {
		t.Helper()
		code, _, body := f.do("PATCH", path, "entra", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": `+ops+`}`)
		f.want(200, "", code, body)
		return body
	}
	members := func(body map[string]any) []string {
		var out []string
		list, _ := body["members"].([]any)
		for _, m := range list {
			out = append(out, m.(map[string]any)["value"].(string))
		}
		slices.Sort(out)
		return out
	}
	want := func(got []string, ids ...string) {
		t.Helper()
		slices.Sort(ids)
		if !slices.Equal(got, ids) {
			t.Fatalf("members %v, want %v", got, ids)
		}
	}
	// §3.5.2.1: add a member.
	want(members(patch("/scim/entra/v2/Groups/"+gid, `[{"op": "add", "path": "members", "value": [{"display": "Babs Jensen", "$ref": "https://example.com/v2/Users/`+bj+`", "value": "`+bj+`"}]}]`)), bj)
	// §3.5.2.1: add without a path.
	want(members(patch("/scim/entra/v2/Groups/"+gid, `[{"op": "add", "value": {"members": [{"value": "`+jd+`"}]}}]`)), bj, jd)
	// §3.5.2.2: remove one member by value filter.
	want(members(patch("/scim/entra/v2/Groups/"+gid, `[{"op": "remove", "path": "members[value eq \"`+bj+`\"]"}]`)), jd)
	// §3.5.2.3: replace all members.
	want(members(patch("/scim/entra/v2/Groups/"+gid, `[{"op": "replace", "path": "members", "value": [{"value": "`+bj+`"}, {"value": "`+ab+`"}]}]`)), ab, bj)
	// §3.5.2.2: remove all members.
	want(members(patch("/scim/entra/v2/Groups/"+gid, `[{"op": "remove", "path": "members"}]`)))
	// §3.5.2.3: replace the work email (a value filter on a User).
	body = patch("/scim/entra/v2/Users/"+bj, `[{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"type": "work", "value": "bjensen@example.org", "primary": true}}]`)
	if f.identity(bj).Attributes["email"] != "bjensen@example.org" {
		t.Fatalf("after replacing the work email: %v", body["emails"])
	}
	// §3.5.2.3: replace several attributes without a path.
	body = patch("/scim/entra/v2/Users/"+bj, `[{"op": "replace", "value": {"emails": [{"value": "babs@jensen.org", "type": "home"}], "nickName": "Babs"}}]`)
	if body["nickName"] != "Babs" || len(body["emails"].([]any)) != 1 {
		t.Fatalf("after replace without path: %v", body)
	}
}
