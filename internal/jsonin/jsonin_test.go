package jsonin

import (
	"testing"

	"github.com/jml-dev/jml/internal/identity"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		body, field string // field "" : accepted; "?" : refused naming no field
	}{
		{`{"a": 1, "b": [true, null, "x", {"c": "d"}], "e": {}}`, ""},
		{`{"a": "caf\u00e9 \ufffd \"q\" \\"}`, ""},
		{`{"a": {"b": [{"c": "x\u0000"}]}}`, "a.b[0].c"},
		{`{"a": [1, "\ud800"]}`, "a[1]"},
		{`{"type": "joiner", "TYPE": "leaver"}`, "TYPE"},
		{`{"a": {"k": 1, "k": 2}}`, "a.k"},
		{`{"a": 1, "b": {"a": 2}}`, ""}, // the same key in another object
		{`["\u0000"]`, "[0]"},
		{"{\"a\": \"caf\xe9\"}", "a"},
		{"{\"source\": \"hr\", \"externalId\": \"e\xff1\"}", "externalId"},
		{"{\"attributes\": {\"tools\": [\"ok\", \"\xc3(\"]}}", "attributes.tools[1]"},
		{"{\"attributes\": {\"t\xe9am\": \"x\"}}", "attributes"}, // in a key: the object that holds it
		{"{\"a\": \"x\\n\xe9\"}", "a"},                           // with an escape too
		{"{\"a\": 1}\xff", "?"},                                  // outside any string
		{`{"a": `, ""},                                           // malformed: decoding reports it
		{`{"a" 1}`, ""},
	} {
		err := Check([]byte(tc.body))
		switch tc.field {
		case "":
			if err != nil {
				t.Errorf("Check(%s) = %v, want nil", tc.body, err)
			}
		case "?":
			var ie *identity.Error
			if !asError(err, &ie) || ie.Code != identity.Invalid || ie.Field != "" {
				t.Errorf("Check(%q) = %v, want invalid naming no field", tc.body, err)
			}
		default:
			var ie *identity.Error
			if !asError(err, &ie) || ie.Field != tc.field {
				t.Errorf("Check(%s) = %v, want an error naming %s", tc.body, err, tc.field)
			}
		}
	}
}

func asError(err error, ie **identity.Error) bool {
	e, ok := err.(*identity.Error)
	*ie = e
	return ok
}

// BenchmarkCheck: a SCIM User as Entra sends it.
func BenchmarkCheck(b *testing.B) {
	body := []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"userName":"bjensen@example.com","name":{"givenName":"Barbara","familyName":"Jensen"},"displayName":"Babs Jensen","emails":[{"value":"bjensen@example.com","type":"work","primary":true}],"active":true,"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Engineering","employeeNumber":"701984"}}`)
	for b.Loop() {
		if err := Check(body); err != nil {
			b.Fatal(err)
		}
	}
}
