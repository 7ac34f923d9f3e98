package scimserver

import (
	"testing"
)

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
