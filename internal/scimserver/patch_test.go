package scimserver

import (
	"context"
	"testing"

	"github.com/jml-dev/jml/internal/store"
)

// TestPatchThatChangesNothing: RFC 7644 §3.5.2.1 has an add of a value
// already there "SHALL NOT change the modify timestamp". A PATCH whose every
// operation changes nothing (an add of present values, a replace with the
// same value, a remove of an absent value) leaves meta.lastModified and the
// version as they were, accepts no lifecycle event (the audit trail gains
// nothing), and the client's If-Match with the ETag it holds still works.
func TestPatchThatChangesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "lead@example.com"})
	f.want(201, "", code, body)
	lead := body["id"].(string)
	code, hdr, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{
		"schemas": []string{UserSchema, EnterpriseSchema}, "userName": "nina@example.com", "title": "Engineer",
		"emails":         []any{map[string]any{"value": "nina@example.com", "type": "work", "primary": true}, map[string]any{"value": "n@home.example", "type": "home"}},
		"addresses":      []any{map[string]any{"streetAddress": "1 Main St", "locality": "Springfield", "type": "work"}},
		EnterpriseSchema: map[string]any{"department": "Ops", "manager": map[string]any{"value": lead}}})
	f.want(201, "", code, body)
	id, tag := body["id"].(string), hdr.Get("ETag")
	modified := body["meta"].(map[string]any)["lastModified"]
	code, _, body = f.do("POST", "/scim/entra/v2/Groups", "entra", map[string]any{"schemas": []string{GroupSchema}, "displayName": "Ops",
		"members": []any{map[string]any{"value": id, "display": "Nina"}}})
	f.want(201, "", code, body)
	gid := body["id"].(string)
	_, hdr, body = f.do("GET", "/scim/entra/v2/Users/"+id, "entra", nil)
	tag, modified = hdr.Get("ETag"), body["meta"].(map[string]any)["lastModified"] // the group changed the User's groups
	_, ghdr, gbody := f.do("GET", "/scim/entra/v2/Groups/"+gid, "entra", nil)
	gtag, gmodified := ghdr.Get("ETag"), gbody["meta"].(map[string]any)["lastModified"]

	head := func() int64 {
		t.Helper()
		var seq int64
		if err := f.s.View(context.Background(), func(tx store.Tx) error {
			var err error
			seq, _, err = tx.AuditHead(context.Background())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	before, identityUpdated := head(), f.identity(id).UpdatedAt

	for _, ops := range []string{
		// An add of values already there, one in another case and with
		// Entra's string boolean.
		`{"op": "add", "path": "emails", "value": [{"value": "nina@example.com", "type": "work", "primary": true}]}`,
		`{"op": "add", "path": "emails", "value": [{"value": "N@HOME.example", "type": "home"}]}`,
		`{"op": "Add", "path": "emails", "value": [{"value": "nina@example.com", "type": "work", "primary": "True"}]}`,
		`{"op": "add", "path": "addresses", "value": [{"streetAddress": "1 Main St", "locality": "Springfield", "type": "work"}]}`,
		`{"op": "add", "value": {"title": "Engineer", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops"}}`,
		// A replace with the same value.
		`{"op": "replace", "path": "title", "value": "Engineer"}`,
		`{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "nina@example.com"}`,
		`{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": "` + lead + `"}}`,
		// A remove of what is not there.
		`{"op": "remove", "path": "nickName"}`,
		`{"op": "remove", "path": "phoneNumbers[value eq \"+1 555\"]"}`,
		`{"op": "remove", "path": "emails[type eq \"other\"]"}`,
		`{"op": "remove", "path": "urn:jml:params:scim:schemas:extension:nhi:2.0:User:environment"}`,
		// All of them at once.
		`{"op": "add", "path": "emails", "value": [{"value": "nina@example.com", "type": "work", "primary": true}]},
		 {"op": "replace", "path": "title", "value": "Engineer"}, {"op": "remove", "path": "nickName"}`,
	} {
		code, hdr, body := f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", patchOp(ops), "If-Match", tag)
		f.want(200, "", code, body)
		if hdr.Get("ETag") != tag || body["meta"].(map[string]any)["version"] != tag || body["meta"].(map[string]any)["lastModified"] != modified {
			t.Fatalf("PATCH %s changed nothing but moved the resource: ETag %s, meta %v (was %s, %v)", ops, hdr.Get("ETag"), body["meta"], tag, modified)
		}
		if p := body["emails"].([]any)[0].(map[string]any)["primary"]; p != true || len(body["emails"].([]any)) != 2 {
			t.Fatalf("PATCH %s changed the emails: %v", ops, body["emails"])
		}
	}
	// A PUT of the resource as it is changes nothing either.
	_, _, cur := f.do("GET", "/scim/entra/v2/Users/"+id, "entra", nil)
	code, hdr, body = f.do("PUT", "/scim/entra/v2/Users/"+id, "entra", cur, "If-Match", tag)
	f.want(200, "", code, body)
	if hdr.Get("ETag") != tag {
		t.Fatalf("a PUT of the same User moved its ETag to %s", hdr.Get("ETag"))
	}
	// The same for a Group: its member added again, its name replaced by itself.
	code, hdr, body = f.do("PATCH", "/scim/entra/v2/Groups/"+gid, "entra", patchOp(`{"op": "add", "path": "members", "value": [{"value": "`+id+`"}]},
		{"op": "replace", "path": "displayName", "value": "Ops"}, {"op": "remove", "path": "members[value eq \"nobody\"]"}`), "If-Match", gtag)
	f.want(200, "", code, body)
	if hdr.Get("ETag") != gtag || body["meta"].(map[string]any)["lastModified"] != gmodified {
		t.Fatalf("a Group PATCH that changed nothing moved it: %s %v", hdr.Get("ETag"), body["meta"])
	}

	if after := head(); after != before {
		t.Fatalf("PATCHes that changed nothing wrote %d audit records (a lifecycle event each)", after-before)
	}
	if got := f.identity(id).UpdatedAt; !got.Equal(identityUpdated) {
		t.Fatalf("the identity was updated at %v by PATCHes that changed nothing", got)
	}
	_, hdr, body = f.do("GET", "/scim/entra/v2/Users/"+id, "entra", nil)
	if hdr.Get("ETag") != tag || body["meta"].(map[string]any)["lastModified"] != modified {
		t.Fatalf("after PATCHes that changed nothing, the User reads as %s %v", hdr.Get("ETag"), body["meta"])
	}

	// The ETag the client held is still current: its next change succeeds,
	// and that one moves the version, the time and the audit trail.
	code, hdr, body = f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", patchOp(`{"op": "replace", "path": "title", "value": "Lead"}`), "If-Match", tag)
	f.want(200, "", code, body)
	if hdr.Get("ETag") == tag || body["meta"].(map[string]any)["lastModified"] == modified || head() == before {
		t.Fatalf("a real change did not move the resource: %s %v", hdr.Get("ETag"), body["meta"])
	}
	// Adding a value again with another primary mark is a change.
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", patchOp(`{"op": "add", "path": "emails", "value": [{"value": "n@home.example", "type": "home", "primary": true}]}`))
	f.want(200, "", code, body)
	if es := body["emails"].([]any); len(es) != 2 || es[0].(map[string]any)["primary"] != false || es[1].(map[string]any)["primary"] != true {
		t.Fatalf("the primary mark did not move to the value added again: %v", es)
	}
}
