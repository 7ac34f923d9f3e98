package scimserver

import (
	"net/http"

	"github.com/jml-dev/jml/internal/engine"
)

func (s *Server) serviceProviderConfig(w http.ResponseWriter, _ *http.Request, _ SourceConfig, _ engine.Principal) error {
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":          []string{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"documentationUri": "https://github.com/jml-dev/jml/blob/main/docs/scim.md",
		"patch":            map[string]bool{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": maxCount},
		"changePassword":   map[string]bool{"supported": false},
		"sort":             map[string]bool{"supported": true},
		"etag":             map[string]bool{"supported": true},
		"authenticationSchemes": []map[string]any{{"type": "oauthbearertoken", "name": "Bearer token",
			"description": "A jml API token of role source named after the SCIM source", "primary": true}},
	})
	return nil
}

func (s *Server) resourceTypes(w http.ResponseWriter, _ *http.Request, _ SourceConfig, _ engine.Principal) error {
	writeJSON(w, http.StatusOK, map[string]any{"schemas": []string{ListSchema}, "totalResults": 2, "startIndex": 1, "itemsPerPage": 2,
		"Resources": []map[string]any{{
			"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"}, "id": "User", "name": "User",
			"endpoint": "/Users", "schema": UserSchema,
			"schemaExtensions": []map[string]any{{"schema": EnterpriseSchema, "required": false}, {"schema": NHISchema, "required": false}},
		}, {
			"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"}, "id": "Group", "name": "Group",
			"endpoint": "/Groups", "schema": GroupSchema,
		}}})
	return nil
}

// attr describes one attribute for /Schemas.
func attr(name, typ string, multi, required bool, mutability, uniqueness string, sub ...map[string]any) map[string]any {
	a := map[string]any{"name": name, "type": typ, "multiValued": multi, "required": required, "caseExact": false,
		"mutability": mutability, "returned": "default", "uniqueness": uniqueness}
	if mutability == "writeOnly" {
		a["returned"] = "never"
	}
	if len(sub) > 0 {
		a["subAttributes"] = sub
	}
	return a
}

// withCanonical adds an attribute's canonical values (RFC 7643 §2.3.1, §7).
func withCanonical(a map[string]any, values ...string) map[string]any {
	a["canonicalValues"] = values
	return a
}

// The sub-attributes /Schemas gives each complex attribute are exactly
// those the server accepts (subAttrs in user.go: a value with any other is
// refused), with RFC 7643 §8.7.1's types and canonical values;
// TestSchemasDescribeWhatIsAccepted walks /Schemas to hold the two together.
func (s *Server) schemas(w http.ResponseWriter, _ *http.Request, _ SourceConfig, _ engine.Principal) error {
	str := func(n string) map[string]any { return attr(n, "string", false, false, "readWrite", "none") }
	boolean := func(n string) map[string]any { return attr(n, "boolean", false, false, "readWrite", "none") }
	// multi is a multi-valued attribute of RFC 7643 §4.1.2's kind: value,
	// display, type (with its canonical values, if any) and primary.
	multi := func(n string, value map[string]any, types ...string) map[string]any {
		typ := str("type")
		if len(types) > 0 {
			typ = withCanonical(typ, types...)
		}
		return attr(n, "complex", true, false, "readWrite", "none", value, str("display"), typ, boolean("primary"))
	}
	// reference is a $ref sub-attribute: a URI of a resource of these types.
	reference := func(types ...string) map[string]any {
		a := attr("$ref", "reference", false, false, "readWrite", "none")
		a["referenceTypes"] = types
		return a
	}
	ref := func(n string) map[string]any {
		return attr(n, "complex", false, false, "readWrite", "none", str("value"), reference("User"), str("displayName"))
	}
	photo := attr("value", "reference", false, false, "readWrite", "none")
	photo["referenceTypes"] = []string{"external"}
	// addresses as RFC 7643 §8.7.1 has them, and primary: §8.7.1 leaves it
	// out, but §2.4 gives every multi-valued attribute one and §8.2's own
	// User marks its work address primary, so the server accepts it.
	addresses := attr("addresses", "complex", true, false, "readWrite", "none",
		str("formatted"), str("streetAddress"), str("locality"), str("region"), str("postalCode"), str("country"),
		withCanonical(str("type"), "work", "home", "other"), boolean("primary"))
	user := map[string]any{"id": UserSchema, "name": "User", "description": "User Account", "attributes": []map[string]any{
		attr("userName", "string", false, true, "readWrite", "server"),
		attr("name", "complex", false, false, "readWrite", "none", str("formatted"), str("familyName"), str("givenName"), str("middleName"), str("honorificPrefix"), str("honorificSuffix")),
		str("displayName"), str("nickName"), str("profileUrl"), str("title"), str("userType"), str("preferredLanguage"), str("locale"), str("timezone"),
		boolean("active"),
		attr("password", "string", false, false, "writeOnly", "none"),
		multi("emails", str("value"), "work", "home", "other"),
		multi("phoneNumbers", str("value"), "work", "home", "mobile", "fax", "pager", "other"),
		multi("ims", str("value"), "aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
		multi("photos", photo, "photo", "thumbnail"),
		addresses,
		attr("groups", "complex", true, false, "readOnly", "none", str("value"), str("display")),
		multi("entitlements", str("value")), multi("roles", str("value")),
		multi("x509Certificates", attr("value", "binary", false, false, "readWrite", "none")),
	}}
	enterprise := map[string]any{"id": EnterpriseSchema, "name": "EnterpriseUser", "description": "Enterprise User", "attributes": []map[string]any{
		str("employeeNumber"), str("costCenter"), str("organization"), str("division"), str("department"), ref("manager"),
	}}
	nhi := map[string]any{"id": NHISchema, "name": "NonHumanIdentity", "description": "jml: service accounts, workloads, pipelines and AI agents", "attributes": []map[string]any{
		str("kind"), ref("owner"), attr("backupOwners", "complex", true, false, "readWrite", "none", str("value"), reference("User"), str("display")), str("environment"),
		attr("tools", "string", true, false, "readWrite", "none"),
	}}
	group := map[string]any{"id": GroupSchema, "name": "Group", "description": "Group", "attributes": []map[string]any{
		attr("displayName", "string", false, true, "readWrite", "server"),
		attr("members", "complex", true, false, "readWrite", "none", str("value"), reference("User"), str("display"), withCanonical(str("type"), "User")),
	}}
	var res []map[string]any
	for _, sc := range []map[string]any{user, enterprise, nhi, group} {
		sc["schemas"] = []string{"urn:ietf:params:scim:schemas:core:2.0:Schema"}
		res = append(res, sc)
	}
	writeJSON(w, http.StatusOK, map[string]any{"schemas": []string{ListSchema}, "totalResults": len(res), "startIndex": 1, "itemsPerPage": len(res), "Resources": res})
	return nil
}
