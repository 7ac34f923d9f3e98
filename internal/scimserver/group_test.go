package scimserver

import (
	"net/url"
	"slices"
	"testing"
)

// TestGroups: membership is the identity attribute "groups"; adding,
// removing, renaming and deleting a group are movers for its members.
func TestGroups(t *testing.T) {
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
