package scimserver

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// Schema URIs.
const (
	UserSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	EnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	// NHISchema is jml's extension for non-human identities: kind, owner,
	// backupOwners, environment, tools.
	NHISchema   = "urn:jml:params:scim:schemas:extension:nhi:2.0:User"
	ListSchema  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	ErrorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"
	PatchSchema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
)

// attrType is what a known attribute of the core User schema holds.
var userAttrs = map[string]string{
	"username": "string", "name": "complex", "displayname": "string", "nickname": "string", "profileurl": "string",
	"title": "string", "usertype": "string", "preferredlanguage": "string", "locale": "string", "timezone": "string",
	"active": "bool", "emails": "multi", "phonenumbers": "multi", "ims": "multi", "photos": "multi", "addresses": "multi",
	"groups": "readonly", "entitlements": "multi", "roles": "multi", "x509certificates": "multi",
	"externalid": "string", "password": "writeonly", "id": "readonly", "meta": "readonly", "schemas": "schemas",
}

var extAttrs = map[string]map[string]string{
	strings.ToLower(EnterpriseSchema): {"employeenumber": "string", "costcenter": "string", "organization": "string", "division": "string", "department": "string", "manager": "complex"},
	strings.ToLower(NHISchema):        {"kind": "string", "owner": "complex", "backupowners": "multi", "environment": "string", "tools": "strings"},
}

// subAttrs are the sub-attributes of the complex and multi-valued
// attributes (RFC 7643 §4.1, §4.2, §4.3 and jml's NHI extension), by
// attribute, each with its type: string or bool. A value with any other
// sub-attribute, or of another type, is refused. /Schemas describes exactly
// these (discovery.go; TestSchemasDescribeWhatIsAccepted).
var subAttrs = func() map[string]map[string]string {
	multi := map[string]string{"value": "string", "display": "string", "type": "string", "primary": "bool"}
	ref := map[string]string{"value": "string", "$ref": "string", "displayname": "string"}
	return map[string]map[string]string{
		"name":   {"formatted": "string", "familyname": "string", "givenname": "string", "middlename": "string", "honorificprefix": "string", "honorificsuffix": "string"},
		"emails": multi, "phonenumbers": multi, "ims": multi, "photos": multi, "entitlements": multi, "roles": multi, "x509certificates": multi,
		"addresses": {"formatted": "string", "streetaddress": "string", "locality": "string", "region": "string", "postalcode": "string", "country": "string", "type": "string", "primary": "bool"},
		"manager":   ref, "owner": ref,
		"backupowners": {"value": "string", "$ref": "string", "display": "string"},
		// A Group's members: the server gives $ref and type itself (render).
		"members": {"value": "string", "$ref": "string", "display": "string", "type": "string"},
	}
}()

// checkSubAttrs checks one complex value of attribute name against its
// sub-attributes, turning Entra's string booleans into booleans.
func checkSubAttrs(name string, m map[string]any) error {
	key := strings.ToLower(name[strings.LastIndex(name, ":")+1:])
	subs, ok := subAttrs[key]
	if !ok {
		return nil
	}
	for k, v := range m {
		typ, ok := subs[strings.ToLower(k)]
		if !ok {
			return errf(400, "invalidSyntax", "%s.%s is not a sub-attribute of %s", name, k, name)
		}
		if v == nil {
			continue
		}
		switch typ {
		case "string":
			if _, ok := v.(string); !ok {
				return errf(400, "invalidValue", "%s.%s: must be a string", name, k)
			}
		case "bool":
			b, err := checkType(name+"."+k, "bool", v)
			if err != nil {
				return err
			}
			m[k] = b
		}
	}
	return nil
}

// canonical returns the attribute's name as the schema spells it, for
// keys a client sent in another case.
var canonicalNames = map[string]string{}

func init() {
	for _, n := range []string{"userName", "name", "displayName", "nickName", "profileUrl", "title", "userType", "preferredLanguage", "locale",
		"timezone", "active", "emails", "phoneNumbers", "ims", "photos", "addresses", "groups", "entitlements", "roles", "x509Certificates",
		"externalId", "password", "id", "meta", "schemas",
		"employeeNumber", "costCenter", "organization", "division", "department", "manager",
		"kind", "owner", "backupOwners", "environment", "tools"} {
		canonicalNames[strings.ToLower(n)] = n
	}
}

func canonical(k string) string {
	if c, ok := canonicalNames[strings.ToLower(k)]; ok {
		return c
	}
	return k
}

// normalize checks a User document from a client (POST, PUT, or the result
// of a PATCH) and returns it in canonical form: known attributes spelled as
// the schema does, Entra's string booleans made booleans, read-only and
// write-only attributes dropped, extensions under their URN keys.
func normalize(in map[string]any) (map[string]any, error) {
	out := map[string]any{}
	schemas, err := stringList(in["schemas"])
	if err != nil || len(schemas) == 0 {
		return nil, errf(400, "invalidSyntax", "schemas: a list of schema URIs including %s is required", UserSchema)
	}
	hasCore := false
	for _, s := range schemas {
		switch strings.ToLower(s) {
		case strings.ToLower(UserSchema):
			hasCore = true
		case strings.ToLower(EnterpriseSchema), strings.ToLower(NHISchema):
		default:
			return nil, errf(400, "invalidValue", "schemas: %q is not a schema of this server's Users", s)
		}
	}
	if !hasCore {
		return nil, errf(400, "invalidValue", "schemas: %s is required", UserSchema)
	}
	for k, v := range in {
		lk := strings.ToLower(k)
		if ext, ok := extAttrs[lk]; ok {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, errf(400, "invalidValue", "%s: must be an object", k)
			}
			em := map[string]any{}
			for ek, ev := range m {
				typ, ok := ext[strings.ToLower(ek)]
				if !ok {
					return nil, errf(400, "invalidSyntax", "%s:%s is not an attribute of that schema", k, ek)
				}
				nv, err := checkType(k+":"+ek, typ, ev)
				if err != nil {
					return nil, err
				}
				if m, ok := nv.(map[string]any); ok && typ == "complex" {
					if v, _ := lookup(m, "value").(string); strings.TrimSpace(v) == "" {
						nv = nil // a manager or owner with no value is none
					}
				}
				if nv != nil {
					em[canonical(ek)] = nv
				}
			}
			canon := EnterpriseSchema
			if lk == strings.ToLower(NHISchema) {
				canon = NHISchema
			}
			if !slices.ContainsFunc(schemas, func(s string) bool { return strings.EqualFold(s, canon) }) {
				return nil, errf(400, "invalidValue", "%s is used but not listed in schemas", canon)
			}
			if len(em) == 0 {
				// Nothing left in it (its last attribute removed): the
				// resource no longer carries the extension.
				schemas = slices.DeleteFunc(schemas, func(s string) bool { return strings.EqualFold(s, canon) })
				continue
			}
			out[canon] = em
			continue
		}
		typ, ok := userAttrs[lk]
		if !ok {
			return nil, errf(400, "invalidSyntax", "%s is not an attribute of %s", k, UserSchema)
		}
		switch typ {
		case "readonly", "writeonly", "schemas":
			continue // id and meta are jml's; passwords are not kept
		}
		nv, err := checkType(k, typ, v)
		if err != nil {
			return nil, err
		}
		if nv != nil {
			out[canonical(k)] = nv
		}
	}
	out["schemas"] = canonicalSchemas(schemas)
	un, _ := out["userName"].(string)
	if strings.TrimSpace(un) == "" {
		return nil, errf(400, "invalidValue", "userName is required")
	}
	if _, ok := out["active"]; !ok {
		out["active"] = true
	}
	return out, nil
}

func canonicalSchemas(in []string) []string {
	var out []string
	for _, s := range []string{UserSchema, EnterpriseSchema, NHISchema} {
		if slices.ContainsFunc(in, func(x string) bool { return strings.EqualFold(x, s) }) {
			out = append(out, s)
		}
	}
	return out
}

// checkType checks v against typ; nil means "absent" (a JSON null).
func checkType(name, typ string, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case "string":
		s, ok := v.(string)
		if !ok {
			return nil, errf(400, "invalidValue", "%s: must be a string", name)
		}
		return s, nil
	case "bool":
		switch b := v.(type) {
		case bool:
			return b, nil
		case string: // Entra ID sends "True"/"False"
			switch strings.ToLower(b) {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
		}
		return nil, errf(400, "invalidValue", "%s: must be a boolean", name)
	case "complex":
		m, ok := v.(map[string]any)
		if !ok {
			if s, ok := v.(string); ok && (strings.HasSuffix(name, "manager") || strings.HasSuffix(name, "owner")) {
				return map[string]any{"value": s}, nil // Entra sends the manager's id as a string
			}
			return nil, errf(400, "invalidValue", "%s: must be an object", name)
		}
		if err := checkSubAttrs(name, m); err != nil {
			return nil, err
		}
		return m, nil
	case "multi":
		arr, ok := v.([]any)
		if !ok {
			return nil, errf(400, "invalidValue", "%s: must be a list", name)
		}
		return canonicalValues(name, arr)
	case "strings":
		l, err := stringList(v)
		if err != nil {
			return nil, errf(400, "invalidValue", "%s: must be a list of strings", name)
		}
		return l, nil
	}
	return v, nil
}

// canonicalValues checks a multi-valued attribute's values: objects, at
// most one of them primary (RFC 7643 §2.4 MUST), and each (type, value)
// pair once (a repeated pair is dropped: §2.4 has duplicates not returned).
func canonicalValues(name string, arr []any) ([]any, error) {
	out := arr[:0:0]
	seen := map[string]bool{}
	primaries := 0
	for _, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, errf(400, "invalidValue", "%s: must be a list of objects", name)
		}
		if err := checkSubAttrs(name, m); err != nil {
			return nil, err
		}
		if key, ok := valueKey(m); ok {
			if seen[key] {
				continue
			}
			seen[key] = true
		}
		if p, _ := lookup(m, "primary").(bool); p {
			primaries++
		}
		out = append(out, m)
	}
	if primaries > 1 {
		return nil, errf(400, "invalidValue", "%s: %d values are primary; at most one may be (RFC 7643 §2.4)", name, primaries)
	}
	return out, nil
}

// valueKey is what makes two values of a multi-valued attribute one: their
// type and value, case-insensitively; false for a value without a value.
func valueKey(m map[string]any) (string, bool) {
	v := lookup(m, "value")
	if v == nil {
		return "", false
	}
	typ, _ := lookup(m, "type").(string)
	val, _ := json.Marshal(v)
	return strings.ToLower(typ) + "\x00" + strings.ToLower(string(val)), true
}

func stringList(v any) ([]string, error) {
	switch x := v.(type) {
	case []string:
		return x, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("not a string")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("not a list")
}

// view is what jml reads of a normalized User for the lifecycle.
type view struct {
	userName, externalID, displayName string
	active                            bool
	kind, owner, manager              string
	attributes                        map[string]any
}

// mappedAttributes are the identity attributes a User gives; each is in
// every event, null when absent, so that a mover removes what the User no
// longer has (the event's attributes are a merge patch).
var mappedAttributes = []string{"userName", "title", "email", "employeeNumber", "costCenter", "organization", "division", "department", "environment", "tools", "backupOwners", "groups"}

func viewOf(doc map[string]any) view {
	v := view{attributes: map[string]any{}}
	for _, k := range mappedAttributes {
		v.attributes[k] = nil
	}
	v.userName, _ = doc["userName"].(string)
	v.externalID, _ = doc["externalId"].(string)
	v.displayName, _ = doc["displayName"].(string)
	if v.displayName == "" {
		if n, ok := doc["name"].(map[string]any); ok {
			v.displayName, _ = n["formatted"].(string)
		}
	}
	v.active, _ = doc["active"].(bool)
	v.attributes["userName"] = v.userName
	if g := groupsOf(doc); len(g) > 0 {
		v.attributes["groups"] = g
	}
	if t, ok := doc["title"].(string); ok {
		v.attributes["title"] = t
	}
	if emails, ok := doc["emails"].([]any); ok {
		for i, e := range emails {
			m := e.(map[string]any)
			if p, _ := m["primary"].(bool); p || i == 0 {
				v.attributes["email"] = m["value"]
			}
		}
	}
	if ent, ok := doc[EnterpriseSchema].(map[string]any); ok {
		for _, k := range []string{"employeeNumber", "costCenter", "organization", "division", "department"} {
			if s, ok := ent[k].(string); ok {
				v.attributes[k] = s
			}
		}
		if m, ok := ent["manager"].(map[string]any); ok {
			v.manager, _ = m["value"].(string)
		}
	}
	if nhi, ok := doc[NHISchema].(map[string]any); ok {
		v.kind, _ = nhi["kind"].(string)
		if m, ok := nhi["owner"].(map[string]any); ok {
			v.owner, _ = m["value"].(string)
		}
		if env, ok := nhi["environment"].(string); ok {
			v.attributes["environment"] = env
		}
		if tools, err := stringList(nhi["tools"]); err == nil {
			v.attributes["tools"] = tools
		}
		if backups, ok := nhi["backupOwners"].([]any); ok && len(backups) > 0 {
			var ids []string
			for _, b := range backups {
				if m, ok := b.(map[string]any); ok {
					if id, ok := m["value"].(string); ok {
						ids = append(ids, id)
					}
				}
			}
			v.attributes["backupOwners"] = ids
		}
	}
	return v
}

// view is viewOf with the source's attribute mapping, when it has one.
func (sc SourceConfig) view(doc map[string]any) view {
	v := viewOf(doc)
	if sc.paths == nil {
		return v
	}
	v.attributes = map[string]any{"groups": v.attributes["groups"]}
	for attr, p := range sc.paths {
		v.attributes[attr] = resolve(doc, p)
	}
	return v
}

// resolve reads the value at a SCIM attribute path in doc, nil if none:
// for a value-filter path, the first element that matches.
func resolve(doc map[string]any, p filter.Path) any {
	holder := doc
	if uri := p.AttributePath.URI(); uri != "" && !strings.EqualFold(uri, UserSchema) {
		ext, ok := canonicalExt(uri)
		if !ok {
			return nil
		}
		holder, _ = doc[ext].(map[string]any)
	}
	var v any
	for k, x := range holder {
		if strings.EqualFold(k, p.AttributePath.AttributeName) {
			v = x
		}
	}
	if sub := p.AttributePath.SubAttribute; sub != nil {
		m, _ := v.(map[string]any)
		v = lookup(m, *sub)
	}
	if p.ValueExpression != nil {
		list, _ := v.([]any)
		v = nil
		for _, e := range list {
			if m, ok := e.(map[string]any); ok && matches(m, p.ValueExpression) {
				v = m
				if p.SubAttribute != nil {
					v = lookup(m, *p.SubAttribute)
				}
				break
			}
		}
	}
	switch x := v.(type) {
	case map[string]any:
		return x["value"] // a complex value stands for its value
	case []any:
		if s, err := stringList(x); err == nil {
			return s
		}
		return nil
	}
	return v
}

func lookup(m map[string]any, key string) any {
	for k, x := range m {
		if strings.EqualFold(k, key) {
			return x
		}
	}
	return nil
}
