package scimserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlite"
	"github.com/jml-dev/jml/internal/vault"
)

type fixture struct {
	t      *testing.T
	e      *engine.Engine
	s      store.Store
	url    string
	tokens map[string]string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "jml.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	pol, err := policy.LoadFile("../../examples/quickstart/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := vault.NewSealer(bytes.Repeat([]byte{7}, 32))
	e, err := engine.New(engine.Config{Store: s, Policy: pol, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(e, Parts(s), []SourceConfig{{Name: "entra"}, {Name: "okta", Deactivate: "suspend"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	f := &fixture{t: t, e: e, s: s, url: hs.URL, tokens: map[string]string{}}
	admin := engine.Principal{ID: "tok_admin", Role: engine.RoleAdmin}
	for _, tc := range []struct{ name, role string }{{"entra", "source"}, {"okta", "source"}, {"hr", "source"}, {"admin", "admin"}, {"auditor", "auditor"}} {
		spec := engine.TokenSpec{Name: tc.name, Role: engine.Role(tc.role)}
		if spec.Role == engine.RoleSource {
			spec.Source = tc.name
		}
		secret, _, err := e.IssueToken(ctx, admin, spec)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[tc.name] = secret
	}
	return f
}

// do sends a request with the named token and returns the status, the
// headers and the decoded body.
func (f *fixture) do(method, path, token string, body any, hdr ...string) (int, http.Header, map[string]any) {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, f.url+path, rd)
	req.Header.Set("Content-Type", "application/scim+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+f.tokens[token])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			f.t.Fatalf("%s %s: body %q is not JSON", method, path, data)
		}
	}
	return resp.StatusCode, resp.Header, out
}

// want checks a status and, for errors, the scimType.
func (f *fixture) want(code int, scimType string, got int, body map[string]any) {
	f.t.Helper()
	if got != code {
		f.t.Fatalf("status %d, want %d: %v", got, code, body)
	}
	if scimType != "" && body["scimType"] != scimType {
		f.t.Fatalf("scimType %v, want %s: %v", body["scimType"], scimType, body)
	}
	if code >= 400 && body["schemas"].([]any)[0] != ErrorSchema {
		f.t.Fatalf("error body not in SCIM's format: %v", body)
	}
}

func (f *fixture) identity(id string) *identity.Identity {
	f.t.Helper()
	var got *identity.Identity
	err := f.s.View(context.Background(), func(tx store.Tx) error {
		var err error
		got, err = tx.GetIdentityByExternalID(context.Background(), "entra", id)
		return err
	})
	if err != nil {
		f.t.Fatalf("identity %s: %v", id, err)
	}
	return got
}

// rfcUser is RFC 7643 §8.2's full User, with the enterprise extension of
// §8.3, as a client sends it (its id and meta are ignored).
const rfcUser = `{
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
  "id": "2819c223-7f76-453a-919d-413861904646",
  "externalId": "701984",
  "userName": "bjensen@example.com",
  "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara", "middleName": "Jane",
           "honorificPrefix": "Ms.", "honorificSuffix": "III"},
  "displayName": "Babs Jensen",
  "nickName": "Babs",
  "profileUrl": "https://login.example.com/bjensen",
  "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}],
  "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood", "region": "CA",
                 "postalCode": "91608", "country": "USA", "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA", "primary": true}],
  "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
  "userType": "Employee",
  "title": "Tour Guide",
  "preferredLanguage": "en-US",
  "locale": "en-US",
  "timezone": "America/Los_Angeles",
  "active": true,
  "password": "t1meMa$heen",
  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
    "employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios", "division": "Theme Park",
    "department": "Engineering", "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
  },
  "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "version": "W/\"a330bc54f0671c9\""}
}`

func TestUserLifecycle(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// The manager the example names does not exist: the joiner is refused
	// with the field named, and nothing is stored.
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", rfcUser)
	f.want(400, "invalidValue", code, body)
	if !strings.Contains(body["detail"].(string), "manager") {
		t.Fatalf("detail = %v", body["detail"])
	}
	// Without the manager it is accepted.
	user := strings.Replace(rfcUser, `, "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}`, "", 1)
	code, hdr, body := f.do("POST", "/scim/entra/v2/Users", "entra", user)
	f.want(201, "", code, body)
	id := body["id"].(string)
	if id == "2819c223-7f76-453a-919d-413861904646" || body["externalId"] != "701984" || body["password"] != nil {
		t.Fatalf("created: id %s (a client's id must not be used), externalId %v, password %v", id, body["externalId"], body["password"])
	}
	if hdr.Get("ETag") != `W/"1"` || !strings.HasSuffix(hdr.Get("Location"), "/scim/entra/v2/Users/"+id) {
		t.Fatalf("ETag %q Location %q", hdr.Get("ETag"), hdr.Get("Location"))
	}
	idn := f.identity(id)
	if idn.State != identity.Active || idn.Attributes["department"] != "Engineering" || idn.DisplayName != "Babs Jensen" || idn.Attributes["email"] != "bjensen@example.com" {
		t.Fatalf("identity = %+v", idn)
	}
	// The engineering birthright applied.
	var grants []identity.Grant
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		var err error
		grants, err = tx.ListGrants(context.Background(), idn.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(grants) == 0 {
		t.Fatal("no birthright grants for an engineer")
	}

	// userName is unique, case-insensitively.
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "BJensen@Example.com"})
	f.want(409, "uniqueness", code, body)

	// GET, with ETag.
	code, hdr, body = f.do("GET", "/scim/entra/v2/Users/"+id, "entra", nil)
	f.want(200, "", code, body)
	if body["userName"] != "bjensen@example.com" || body["meta"].(map[string]any)["version"] != `W/"1"` {
		t.Fatalf("GET = %v", body)
	}
	code, _, _ = f.do("GET", "/scim/entra/v2/Users/"+id, "entra", nil, "If-None-Match", `W/"1"`)
	if code != 304 {
		t.Fatalf("If-None-Match current version = %d, want 304", code)
	}

	// Entra's PATCH: capitalised op, value without path, string booleans,
	// an extension attribute by its URN path.
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
	  "Operations": [{"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
	                 {"op": "Replace", "value": {"displayName": "Barbara Jensen"}},
	                 {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@example.com"}]}`)
	f.want(200, "", code, body)
	if idn := f.identity(id); idn.Attributes["department"] != "Sales" || idn.DisplayName != "Barbara Jensen" || idn.Attributes["email"] != "barbara@example.com" {
		t.Fatalf("after the mover PATCH: %+v", idn)
	}
	// A stale If-Match is refused.
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}`, "If-Match", `W/"1"`)
	f.want(412, "", code, body)

	// Deactivation as Entra sends it is a leaver.
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}`)
	f.want(200, "", code, body)
	if body["active"] != false || f.identity(id).State != identity.Departed {
		t.Fatalf("after active=False: %v, state %s", body["active"], f.identity(id).State)
	}
	// Reactivation is a rehire.
	code, _, body = f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": true}}]}`)
	f.want(200, "", code, body)
	if f.identity(id).State != identity.Active {
		t.Fatalf("after reactivation: %s", f.identity(id).State)
	}
	// DELETE is a leaver; the resource is gone.
	code, _, body = f.do("DELETE", "/scim/entra/v2/Users/"+id, "entra", nil)
	if code != 204 {
		t.Fatalf("DELETE = %d %v", code, body)
	}
	if f.identity(id).State != identity.Departed {
		t.Fatal("DELETE did not make a leaver")
	}
	code, _, body = f.do("GET", "/scim/entra/v2/Users/"+id, "entra", nil)
	f.want(404, "", code, body)
}

// TestOktaDeactivates: Okta replaces the user with PUT and active false;
// this source suspends instead of a leaver, and reactivation resumes.
func TestOktaDeactivates(t *testing.T) {
	t.Parallel()
	f := setup(t)
	u := map[string]any{"schemas": []string{UserSchema}, "userName": "dave@example.com", "name": map[string]any{"givenName": "Dave", "familyName": "Ray"}, "active": true}
	code, _, body := f.do("POST", "/scim/okta/v2/Users", "okta", u)
	f.want(201, "", code, body)
	id := body["id"].(string)
	state := func() identity.State {
		var got *identity.Identity
		f.s.View(context.Background(), func(tx store.Tx) error {
			got, _ = tx.GetIdentityByExternalID(context.Background(), "okta", id)
			return nil
		})
		return got.State
	}
	u["active"] = false
	code, _, body = f.do("PUT", "/scim/okta/v2/Users/"+id, "okta", u)
	f.want(200, "", code, body)
	if state() != identity.Suspended {
		t.Fatalf("after PUT active=false: %s", state())
	}
	u["active"] = true
	u["title"] = "Lead"
	code, _, body = f.do("PUT", "/scim/okta/v2/Users/"+id, "okta", u)
	f.want(200, "", code, body)
	if state() != identity.Active {
		t.Fatalf("after PUT active=true: %s", state())
	}
}

func TestListAndFilter(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, u := range []struct{ name, display string }{{"ann@example.com", "Ann Lee"}, {"bob@example.com", "Bob Stone"}, {"bea@example.com", "Bea Stone"}, {"carl@example.com", "Carl Bay"}} {
		first, last, _ := strings.Cut(u.display, " ")
		code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": u.name, "displayName": u.display, "externalId": "x-" + u.name,
			"name": map[string]any{"givenName": first, "familyName": last}, "userType": map[bool]string{true: "Employee", false: "Contractor"}[first != "Carl"],
			"emails": []map[string]any{{"value": u.name, "type": "work"}, {"value": strings.ToLower(first) + "@home.example.org", "type": "home"}}})
		f.want(201, "", code, body)
	}
	names := func(body map[string]any) string {
		var out []string
		for _, r := range body["Resources"].([]any) {
			out = append(out, r.(map[string]any)["userName"].(string))
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct{ query, want string }{
		{`filter=userName eq "BOB@example.com"`, "bob@example.com"},
		{`filter=userName sw "b" and displayName co "stone"&sortBy=userName`, "bea@example.com,bob@example.com"},
		{`filter=not (userName sw "b")&sortBy=userName`, "ann@example.com,carl@example.com"},
		{`filter=(displayName ew "Lee") or externalId eq "x-carl@example.com"&sortBy=userName`, "ann@example.com,carl@example.com"},
		{`filter=userName pr and active eq true&sortBy=userName&sortOrder=descending&count=2`, "carl@example.com,bob@example.com"},
		{`sortBy=userName&startIndex=3&count=10`, "bob@example.com,carl@example.com"},
		{`filter=userName eq "x' OR 1=1 --"`, ""},
		{`filter=userName co "%"`, ""},
		{`filter=meta.created gt "2000-01-01T00:00:00Z"&count=0`, ""},
		// RFC 7644 §3.4.2.2's examples that name attributes this server filters.
		{`filter=name.familyName co "Stone"&sortBy=name.givenName`, "bea@example.com,bob@example.com"},
		{`filter=urn:ietf:params:scim:schemas:core:2.0:User:userName sw "c"`, "carl@example.com"},
		{`filter=userType eq "Employee" and (emails co "bob" or emails.value co "bea@home")&sortBy=userName`, "bea@example.com,bob@example.com"},
		{`filter=userType ne "Employee" and not (emails co "ann" or emails.value co "bea")`, "carl@example.com"},
		{`filter=emails eq "ANN@example.com"`, "ann@example.com"},
		{`filter=emails ew "@home.example.org" and emails sw "carl@"`, "carl@example.com"},
		{`filter=title pr`, ""},
		// Value filters, as RFC 7644 §3.4.2.2 writes them.
		{`filter=emails[type eq "work" and value co "@example.com"]&sortBy=userName`, "ann@example.com,bea@example.com,bob@example.com,carl@example.com"},
		{`filter=emails[type eq "home" and value sw "BEA"]`, "bea@example.com"},
		{`filter=emails[type eq "home"] and userName sw "c"`, "carl@example.com"},
		{`filter=emails[type eq "work" and value co "@home"]`, ""},
		{`filter=not (emails[value ew "org"])`, ""},
		{`filter=meta.lastModified ge "2011-05-13T04:42:34Z" and meta.lastModified lt "2999-01-01T00:00:00Z"&sortBy=userName&count=1`, "ann@example.com"},
	} {
		code, _, body := f.do("GET", "/scim/entra/v2/Users?"+strings.ReplaceAll(url.PathEscape(tc.query), "&", "&"), "entra", nil)
		f.want(200, "", code, body)
		if got := names(body); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.query, got, tc.want)
		}
	}
	code, _, body := f.do("GET", "/scim/entra/v2/Users?count=0", "entra", nil)
	if code != 200 || body["totalResults"] != float64(4) {
		t.Fatalf("count=0: %v", body)
	}
	for _, tc := range []struct{ query, scimType string }{
		{`filter=userName eq`, "invalidFilter"},
		{`filter=roles eq "admin"`, "invalidFilter"},
		{`filter=name[givenName eq "Ann"]`, "invalidFilter"},
		{`filter=emails[colour eq "red"]`, "invalidFilter"},
		{`filter=password eq "x"`, "invalidFilter"},
		{`filter=active eq "yes"`, "invalidFilter"},
		{`sortBy=emails`, "invalidFilter"},
		{`filter=emails gt "a"`, "invalidFilter"},
		{`filter=ims.value eq "x"`, "invalidFilter"},
		{`sortOrder=sideways`, "invalidValue"},
		{`count=lots`, "invalidValue"},
		{`colour=blue`, "invalidSyntax"},
		{"filter=" + strings.TrimSuffix(strings.Repeat(`userName eq "x" or `, 65), " or "), "tooMany"},
	} {
		code, _, body := f.do("GET", "/scim/entra/v2/Users?"+url.PathEscape(tc.query), "entra", nil)
		f.want(400, tc.scimType, code, body)
	}
	// attributes and excludedAttributes.
	code, _, body = f.do("GET", "/scim/entra/v2/Users?"+url.PathEscape(`filter=userName eq "ann@example.com"&attributes=userName`), "entra", nil)
	r := body["Resources"].([]any)[0].(map[string]any)
	if code != 200 || r["displayName"] != nil || r["userName"] != "ann@example.com" || r["id"] == nil {
		t.Fatalf("attributes=userName: %v", r)
	}
	code, _, body = f.do("GET", "/scim/entra/v2/Users?"+url.PathEscape(`filter=userName eq "ann@example.com"&attributes=name.givenName,emails`), "entra", nil)
	r = body["Resources"].([]any)[0].(map[string]any)
	if n := r["name"].(map[string]any); n["givenName"] != "Ann" || n["familyName"] != nil || r["emails"] == nil || r["userName"] != nil {
		t.Fatalf("attributes=name.givenName,emails: %v", r)
	}
	code, _, body = f.do("GET", "/scim/entra/v2/Users?"+url.PathEscape(`filter=userName eq "ann@example.com"&excludedAttributes=name.familyName`), "entra", nil)
	r = body["Resources"].([]any)[0].(map[string]any)
	if n := r["name"].(map[string]any); n["givenName"] != "Ann" || n["familyName"] != nil || r["userName"] == nil {
		t.Fatalf("excludedAttributes=name.familyName: %v", r)
	}
	code, _, body = f.do("GET", "/scim/entra/v2/Users?"+url.PathEscape(`filter=userName eq "ann@example.com"&excludedAttributes=displayName,meta`), "entra", nil)
	r = body["Resources"].([]any)[0].(map[string]any)
	if r["displayName"] != nil || r["meta"] != nil || r["userName"] == nil {
		t.Fatalf("excludedAttributes: %v", r)
	}
}

func TestBadInputAndSecurity(t *testing.T) {
	t.Parallel()
	f := setup(t)
	user := func(edit func(map[string]any)) map[string]any {
		u := map[string]any{"schemas": []string{UserSchema}, "userName": "eve@example.com"}
		edit(u)
		return u
	}
	for _, tc := range []struct {
		body     any
		code     int
		scimType string
	}{
		{`{"userName": `, 400, "invalidSyntax"},
		{`[1, 2]`, 400, "invalidSyntax"},
		{user(func(u map[string]any) { delete(u, "schemas") }), 400, "invalidSyntax"},
		{user(func(u map[string]any) { u["schemas"] = []string{UserSchema, "urn:example:unknown"} }), 400, "invalidValue"},
		{user(func(u map[string]any) { u["active"] = "maybe" }), 400, "invalidValue"},
		{user(func(u map[string]any) { u["emails"] = "eve@example.com" }), 400, "invalidValue"},
		{user(func(u map[string]any) { u["favouriteColour"] = "blue" }), 400, "invalidSyntax"},
		{user(func(u map[string]any) { delete(u, "userName") }), 400, "invalidValue"},
		{user(func(u map[string]any) { u[EnterpriseSchema] = map[string]any{"department": "x"} }), 400, "invalidValue"}, // not in schemas
		{strings.Repeat(" ", MaxBody+1), 413, ""},
	} {
		code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", tc.body)
		f.want(tc.code, tc.scimType, code, body)
	}
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "", user(func(map[string]any) {}))
	f.want(401, "", code, body)
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "okta", user(func(map[string]any) {}))
	f.want(403, "", code, body) // another source's token
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "auditor", user(func(map[string]any) {}))
	f.want(403, "", code, body)
	code, _, body = f.do("GET", "/scim/nope/v2/Users", "entra", nil)
	f.want(404, "", code, body)
	// /scim/v2 is the token's own source.
	code, _, body = f.do("POST", "/scim/v2/Users", "entra", user(func(u map[string]any) { u["userName"] = "via-default-path" }))
	f.want(201, "", code, body)
	code, _, body = f.do("GET", "/scim/entra/v2/Users/"+body["id"].(string), "entra", nil)
	f.want(200, "", code, body)
	code, _, body = f.do("GET", "/scim/v2/Users", "admin", nil)
	f.want(400, "invalidSyntax", code, body)
	code, _, body = f.do("GET", "/scim/v2/Users", "hr", nil) // a source token with no SCIM source of its name
	f.want(404, "", code, body)

	code, _, body = f.do("POST", "/scim/entra/v2/Users", "admin", user(func(map[string]any) {}))
	f.want(201, "", code, body)
	id := body["id"].(string)
	patch := func(ops string) (int, map[string]any) {
		code, _, body := f.do("PATCH", "/scim/entra/v2/Users/"+id, "entra", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": `+ops+`}`)
		return code, body
	}
	for _, tc := range []struct{ ops, scimType string }{
		{`[{"op": "remove"}]`, "noTarget"},
		{`[{"op": "replace", "path": "groups", "value": []}]`, "mutability"},
		{`[{"op": "replace", "path": "id", "value": "mine"}]`, "mutability"},
		{`[{"op": "replace", "path": "emails[type eq", "value": "x"}]`, "invalidPath"},
		{`[{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x"}]`, "noTarget"},
		{`[{"op": "move", "path": "title", "value": "x"}]`, "invalidSyntax"},
		{`[]`, "invalidSyntax"},
		{`[{"op": "replace", "path": "active", "value": "perhaps"}]`, "invalidValue"},
	} {
		code, body := patch(tc.ops)
		f.want(400, tc.scimType, code, body)
	}
	// None of that changed the resource.
	_, hdr, _ := f.do("GET", "/scim/entra/v2/Users/"+id, "entra", nil)
	if hdr.Get("ETag") != `W/"1"` {
		t.Fatalf("a refused PATCH changed the version: %s", hdr.Get("ETag"))
	}
	// A client cannot choose the id by PUT either.
	code, _, body = f.do("PUT", "/scim/entra/v2/Users/"+id, "entra", user(func(u map[string]any) { u["id"] = "chosen" }))
	f.want(200, "", code, body)
	if body["id"] != id {
		t.Fatalf("PUT changed the id to %v", body["id"])
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, path := range []string{"ServiceProviderConfig", "ResourceTypes", "Schemas"} {
		code, _, body := f.do("GET", "/scim/entra/v2/"+path, "entra", nil)
		f.want(200, "", code, body)
	}
	_, _, body := f.do("GET", "/scim/entra/v2/ServiceProviderConfig", "entra", nil)
	if body["patch"].(map[string]any)["supported"] != true || body["etag"].(map[string]any)["supported"] != true {
		t.Fatalf("ServiceProviderConfig = %v", body)
	}
}

// TestAttributeMapping: a source's own mapping from SCIM paths to identity
// attributes replaces the default one.
func TestAttributeMapping(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv, err := New(f.e, Parts(f.s), []SourceConfig{{Name: "hr", Attributes: map[string]string{
		"costCentre": EnterpriseSchema + ":costCenter",
		"workEmail":  `emails[type eq "work"].value`,
		"surname":    "name.familyName",
		"boss":       EnterpriseSchema + ":manager",
	}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	f.url = hs.URL
	user := map[string]any{"schemas": []string{UserSchema, EnterpriseSchema}, "userName": "gil", "title": "Chef",
		"name":           map[string]any{"familyName": "Gil", "givenName": "Ana"},
		"emails":         []map[string]any{{"value": "ana@home.example", "type": "home"}, {"value": "ana@work.example", "type": "work"}},
		EnterpriseSchema: map[string]any{"costCenter": "4130"}}
	code, _, body := f.do("POST", "/scim/hr/v2/Users", "hr", user)
	f.want(201, "", code, body)
	id := body["id"].(string)
	attrs := func() map[string]any {
		var got *identity.Identity
		f.s.View(context.Background(), func(tx store.Tx) error {
			got, _ = tx.GetIdentityByExternalID(context.Background(), "hr", id)
			return nil
		})
		return got.Attributes
	}
	a := attrs()
	if a["costCentre"] != "4130" || a["workEmail"] != "ana@work.example" || a["surname"] != "Gil" || a["title"] != nil || a["userName"] != nil {
		t.Fatalf("mapped attributes = %v", a)
	}
	code, _, body = f.do("PATCH", "/scim/hr/v2/Users/"+id, "hr", `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
	  "Operations": [{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ana@new.example"}]}`)
	f.want(200, "", code, body)
	if a := attrs(); a["workEmail"] != "ana@new.example" {
		t.Fatalf("after PATCH: %v", a)
	}
	for _, bad := range []map[string]string{{"x": "emails[type eq"}, {"groups": "title"}, {"bad name": "title"}} {
		if _, err := New(f.e, Parts(f.s), []SourceConfig{{Name: "y", Attributes: bad}}, nil); err == nil {
			t.Errorf("New accepted attributes %v", bad)
		}
	}
}

// TestNonHumanIdentity: a pipeline provisioned with jml's extension gets
// its kind, owner, environment, tools and backup owners.
func TestNonHumanIdentity(t *testing.T) {
	t.Parallel()
	f := setup(t)
	code, _, body := f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "alice"})
	f.want(201, "", code, body)
	alice := body["id"].(string)
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema}, "userName": "bob"})
	f.want(201, "", code, body)
	bob := body["id"].(string)
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema, NHISchema}, "userName": "deploy-web",
		NHISchema: map[string]any{"kind": "pipeline", "owner": map[string]any{"value": alice}, "environment": "prod", "tools": []string{"search-docs"},
			"backupOwners": []map[string]any{{"value": bob}}}})
	f.want(201, "", code, body)
	nhi := f.identity(body["id"].(string))
	if nhi.Kind != "pipeline" || nhi.OwnerID != f.identity(alice).ID || nhi.Attributes["environment"] != "prod" {
		t.Fatalf("pipeline = %+v", nhi)
	}
	if b, _ := nhi.Attributes["backupOwners"].([]any); len(b) != 1 || b[0] != bob {
		t.Fatalf("backupOwners = %v", nhi.Attributes["backupOwners"])
	}
	// A pipeline without an owner is refused, naming the field.
	code, _, body = f.do("POST", "/scim/entra/v2/Users", "entra", map[string]any{"schemas": []string{UserSchema, NHISchema}, "userName": "orphan",
		NHISchema: map[string]any{"kind": "pipeline"}})
	f.want(400, "invalidValue", code, body)
}
