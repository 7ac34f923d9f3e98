package scimserver

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestSchemasDescribeWhatIsAccepted walks /Schemas (RFC 7643 §7: the
// schema describes what the server serves) and holds it to the server:
// every sub-attribute it describes for a writable complex attribute is
// accepted over HTTP and returned, every sub-attribute name it describes
// anywhere else is refused where it is not described, and every
// sub-attribute the server accepts (subAttrs) is described.
func TestSchemasDescribeWhatIsAccepted(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "base@example.com"})
	f.want(201, "", code, body)
	base := body["id"].(string)

	code, _, body = f.do("GET", "/scim/entra/v2/Schemas", "entra", nil)
	f.want(200, "", code, body)
	type complexAttr struct {
		schema, name string
		multi        bool
		subs         []map[string]any
	}
	var attrs []complexAttr
	names := map[string]bool{} // every sub-attribute name /Schemas gives
	described := map[string][]string{}
	for _, s := range body["Resources"].([]any) {
		sm := s.(map[string]any)
		for _, a := range sm["attributes"].([]any) {
			am := a.(map[string]any)
			subs, _ := am["subAttributes"].([]any)
			if len(subs) == 0 {
				continue
			}
			ca := complexAttr{schema: sm["id"].(string), name: am["name"].(string), multi: am["multiValued"] == true}
			for _, sa := range subs {
				sam := sa.(map[string]any)
				ca.subs = append(ca.subs, sam)
				names[sam["name"].(string)] = true
				described[strings.ToLower(ca.name)] = append(described[strings.ToLower(ca.name)], strings.ToLower(sam["name"].(string)))
			}
			if am["mutability"] == "readOnly" {
				continue // groups: the server's, never taken from a client
			}
			attrs = append(attrs, ca)
		}
	}
	if len(attrs) < 12 {
		t.Fatalf("/Schemas has %d writable complex attributes, want every one of the User's, the extensions' and the Group's", len(attrs))
	}

	// Each accepted sub-attribute is described, as the server spells it.
	for attr, subs := range subAttrs {
		for sub := range subs {
			if !slices.Contains(described[attr], sub) {
				t.Errorf("%s.%s is accepted but /Schemas does not describe it (it describes %v)", attr, sub, described[attr])
			}
		}
	}
	for attr, subs := range described {
		if attr == "groups" {
			continue
		}
		for _, sub := range subs {
			if _, ok := subAttrs[attr][sub]; !ok {
				t.Errorf("/Schemas describes %s.%s, which the server does not accept", attr, sub)
			}
		}
	}

	n := 0
	// send writes one complex value of ca with the given sub-attributes.
	send := func(ca complexAttr, value map[string]any) (int, map[string]any) {
		n++
		var v any = value
		if ca.multi {
			v = []any{value}
		}
		if ca.schema == GroupSchema {
			code, _, body := f.do("POST", "/scim/entra/v2/Groups", "entra", map[string]any{"schemas": []string{GroupSchema}, "displayName": fmt.Sprintf("g%d", n), ca.name: v})
			return code, body
		}
		doc := map[string]any{"schemas": []string{UserSchema}, "userName": fmt.Sprintf("u%d@example.com", n)}
		switch ca.schema {
		case UserSchema:
			doc[ca.name] = v
		case NHISchema:
			ext := map[string]any{"kind": "service_account", "owner": map[string]any{"value": base}}
			ext[ca.name] = v
			doc["schemas"], doc[NHISchema] = []string{UserSchema, NHISchema}, ext
		default:
			doc["schemas"], doc[ca.schema] = []string{UserSchema, ca.schema}, map[string]any{ca.name: v}
		}
		code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", doc)
		return code, body
	}
	returned := func(ca complexAttr, body map[string]any) map[string]any {
		holder := body
		if ca.schema != UserSchema && ca.schema != GroupSchema {
			holder, _ = body[ca.schema].(map[string]any)
		}
		switch v := holder[ca.name].(type) {
		case map[string]any:
			return v
		case []any:
			if len(v) == 1 {
				m, _ := v[0].(map[string]any)
				return m
			}
		}
		return nil
	}
	for _, ca := range attrs {
		has := map[string]bool{}
		for _, sa := range ca.subs {
			has[sa["name"].(string)] = true
		}
		// A value that refers to someone names the base User; any other
		// value is a string.
		withValue := func(m map[string]any) map[string]any {
			if has["value"] {
				m["value"] = base
			}
			return m
		}
		for _, sa := range ca.subs {
			sub := sa["name"].(string)
			var v any = "x"
			switch {
			case sa["type"] == "boolean":
				v = true
			case sa["type"] == "reference":
				v = "https://example.com/scim/v2/Users/" + base
			case sa["type"] == "binary":
				v = "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAw"
			case sub == "value":
				v = base
			}
			if cv, ok := sa["canonicalValues"].([]any); ok && len(cv) > 0 {
				v = cv[0]
			}
			code, body := send(ca, withValue(map[string]any{sub: v}))
			if code != 201 {
				t.Errorf("%s.%s, described by /Schemas, refused: %d %v", ca.name, sub, code, body)
				continue
			}
			if got := returned(ca, body); got == nil || got[sub] == nil {
				t.Errorf("%s.%s accepted but not returned: %v", ca.name, sub, body)
			}
		}
		// Any sub-attribute /Schemas gives elsewhere but not here is refused.
		for other := range names {
			if has[other] {
				continue
			}
			code, body := send(ca, withValue(map[string]any{other: "x"}))
			if code != 400 || body["scimType"] != "invalidSyntax" {
				t.Errorf("%s.%s, not described by /Schemas, answered %d %v; want 400 invalidSyntax", ca.name, other, code, body)
			}
		}
	}
}

// TestAddressesAreRFC7643s: the conformance suite's finding. /Schemas gives
// addresses RFC 7643 §8.7.1's sub-attributes, with its canonical types, and
// display, which is not one of them, is refused.
func TestAddressesAreRFC7643s(t *testing.T) {
	t.Parallel()
	f := setup(t)
	_, _, body := f.do("GET", "/scim/entra/v2/Schemas", "entra", nil)
	var addresses map[string]any
	for _, s := range body["Resources"].([]any) {
		for _, a := range s.(map[string]any)["attributes"].([]any) {
			if am := a.(map[string]any); am["name"] == "addresses" {
				addresses = am
			}
		}
	}
	var got []string
	var types any
	for _, sa := range addresses["subAttributes"].([]any) {
		sam := sa.(map[string]any)
		got = append(got, fmt.Sprintf("%s:%s:%s", sam["name"], sam["type"], sam["mutability"]))
		if sam["name"] == "type" {
			types = sam["canonicalValues"]
		}
	}
	want := []string{"formatted:string:readWrite", "streetAddress:string:readWrite", "locality:string:readWrite", "region:string:readWrite",
		"postalCode:string:readWrite", "country:string:readWrite", "type:string:readWrite", "primary:boolean:readWrite"}
	if !slices.Equal(got, want) || fmt.Sprint(types) != "[work home other]" || addresses["multiValued"] != true || addresses["type"] != "complex" {
		t.Fatalf("addresses in /Schemas = %v (types %v), want %v with types [work home other]", got, types, want)
	}
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "a@example.com",
		"addresses": []any{map[string]any{"display": "1 Main St"}}})
	f.want(400, "invalidSyntax", code, body)
}
