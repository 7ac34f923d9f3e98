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

func (s *Server) schemas(w http.ResponseWriter, _ *http.Request, _ SourceConfig, _ engine.Principal) error {
	str := func(n string) map[string]any { return attr(n, "string", false, false, "readWrite", "none") }
	multi := func(n string) map[string]any {
		return attr(n, "complex", true, false, "readWrite", "none", str("value"), str("display"), str("type"), attr("primary", "boolean", false, false, "readWrite", "none"))
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
	user := map[string]any{"id": UserSchema, "name": "User", "description": "User Account", "attributes": []map[string]any{
		attr("userName", "string", false, true, "readWrite", "server"),
		attr("name", "complex", false, false, "readWrite", "none", str("formatted"), str("familyName"), str("givenName"), str("middleName"), str("honorificPrefix"), str("honorificSuffix")),
		str("displayName"), str("nickName"), str("profileUrl"), str("title"), str("userType"), str("preferredLanguage"), str("locale"), str("timezone"),
		attr("active", "boolean", false, false, "readWrite", "none"),
		attr("password", "string", false, false, "writeOnly", "none"),
		multi("emails"), multi("phoneNumbers"), multi("ims"), multi("photos"), multi("addresses"),
		attr("groups", "complex", true, false, "readOnly", "none", str("value"), str("display")),
		multi("entitlements"), multi("roles"), multi("x509Certificates"),
	}}
	enterprise := map[string]any{"id": EnterpriseSchema, "name": "EnterpriseUser", "description": "Enterprise User", "attributes": []map[string]any{
		str("employeeNumber"), str("costCenter"), str("organization"), str("division"), str("department"), ref("manager"),
	}}
	nhi := map[string]any{"id": NHISchema, "name": "NonHumanIdentity", "description": "jml: service accounts, workloads, pipelines and AI agents", "attributes": []map[string]any{
		str("kind"), ref("owner"), attr("backupOwners", "complex", true, false, "readWrite", "none", str("value")), str("environment"),
		attr("tools", "string", true, false, "readWrite", "none"),
	}}
	group := map[string]any{"id": GroupSchema, "name": "Group", "description": "Group", "attributes": []map[string]any{
		attr("displayName", "string", false, true, "readWrite", "server"),
		attr("members", "complex", true, false, "readWrite", "none", str("value"), reference("User"), str("display"), str("type")),
	}}
	var res []map[string]any
	for _, sc := range []map[string]any{user, enterprise, nhi, group} {
		sc["schemas"] = []string{"urn:ietf:params:scim:schemas:core:2.0:Schema"}
		res = append(res, sc)
	}
	writeJSON(w, http.StatusOK, map[string]any{"schemas": []string{ListSchema}, "totalResults": len(res), "startIndex": 1, "itemsPerPage": len(res), "Resources": res})
	return nil
}
