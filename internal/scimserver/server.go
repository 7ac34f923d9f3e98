// Package scimserver is jml's SCIM 2.0 service provider (RFC 7643, RFC
// 7644) for identity providers and HR systems that provision over SCIM:
// Users at /scim/{source}/v2/Users, with the enterprise extension and
// jml's extension for non-human identities, and discovery. Every write is
// a lifecycle event accepted in the same transaction that stores the
// resource: create is a joiner, a change of a mapped attribute a mover,
// active=false a leaver (or suspend, per source), DELETE a leaver,
// reactivation a resume or a rehire.
//
// Filters and PATCH paths are parsed by github.com/scim2/filter-parser; a
// filter reaches SQL only through an allow-list of attributes mapped to
// fixed columns, with every value a bound parameter. The resource id is
// jml's: a client's id or externalId never becomes or replaces it.
package scimserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/httpedge"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// SourceConfig is one SCIM source in jml.yaml. Its tokens are API tokens
// of role source named after it.
type SourceConfig struct {
	Name string `yaml:"name"`
	// Deactivate is what active=false means: leaver (default) or suspend.
	Deactivate string `yaml:"deactivate"`
	// Attributes, when set, replaces the default mapping from User to
	// identity attributes: identity attribute name -> SCIM attribute path
	// (e.g. "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
	// "emails[type eq \"work\"].value", "name.familyName"). groups is
	// always mapped.
	Attributes map[string]string `yaml:"attributes"`

	paths map[string]filter.Path
}

// MaxBody bounds a request body.
const MaxBody = 256 << 10

// maxCount bounds a page.
const maxCount = 1000

// Server serves /scim/{source}/v2/.
type Server struct {
	e       *engine.Engine
	st      Store
	sources map[string]SourceConfig
	log     *slog.Logger
	mux     *http.ServeMux
}

// New checks the sources and returns the server. Events go to e; st is
// the part of e's store the server reads and writes itself (Parts of the
// store e was made with).
func New(e *engine.Engine, st Store, sources []SourceConfig, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{e: e, st: st, sources: map[string]SourceConfig{}, log: log, mux: http.NewServeMux()}
	for _, sc := range sources {
		if err := identity.ValidateName("name", sc.Name); err != nil {
			return nil, fmt.Errorf("scim source: %v", err)
		}
		switch sc.Deactivate {
		case "":
			sc.Deactivate = "leaver"
		case "leaver", "suspend":
		default:
			return nil, fmt.Errorf("scim source %q: deactivate: %q is not leaver or suspend", sc.Name, sc.Deactivate)
		}
		if len(sc.Attributes) > 0 {
			sc.paths = map[string]filter.Path{}
			for attr, path := range sc.Attributes {
				if err := identity.ValidateName("attribute", attr); err != nil || attr == "groups" {
					return nil, fmt.Errorf("scim source %q: attributes: %q is not an attribute name jml maps (groups is always mapped)", sc.Name, attr)
				}
				p, err := filter.ParsePath([]byte(path))
				if err != nil {
					return nil, fmt.Errorf("scim source %q: attributes.%s: %q is not a SCIM attribute path: %v", sc.Name, attr, path, err)
				}
				sc.paths[attr] = p
			}
		}
		if _, dup := s.sources[sc.Name]; dup {
			return nil, fmt.Errorf("scim source %q is defined twice", sc.Name)
		}
		s.sources[sc.Name] = sc
	}
	for pattern, h := range map[string]func(http.ResponseWriter, *http.Request, SourceConfig, engine.Principal) error{
		"GET /scim/{source}/v2/ServiceProviderConfig": s.serviceProviderConfig,
		"GET /scim/{source}/v2/ResourceTypes":         s.resourceTypes,
		"GET /scim/{source}/v2/Schemas":               s.schemas,
		"GET /scim/{source}/v2/Users":                 s.list,
		"POST /scim/{source}/v2/Users":                s.create,
		"GET /scim/{source}/v2/Users/{id}":            s.get,
		"PUT /scim/{source}/v2/Users/{id}":            s.replace,
		"PATCH /scim/{source}/v2/Users/{id}":          s.patch,
		"DELETE /scim/{source}/v2/Users/{id}":         s.delete,
		"GET /scim/{source}/v2/Groups":                s.listGroups,
		"POST /scim/{source}/v2/Groups":               s.createGroup,
		"GET /scim/{source}/v2/Groups/{id}":           s.getGroup,
		"PUT /scim/{source}/v2/Groups/{id}":           s.replaceGroup,
		"PATCH /scim/{source}/v2/Groups/{id}":         s.patchGroup,
		"DELETE /scim/{source}/v2/Groups/{id}":        s.deleteGroup,
		"POST /scim/{source}/v2/Users/.search":        s.search("User"),
		"POST /scim/{source}/v2/Groups/.search":       s.search("Group"),
		"/scim/{source}/v2/Me":                        notImplemented("/Me"),
		"/scim/{source}/v2/Me/":                       notImplemented("/Me"),
		"/scim/{source}/v2/Bulk":                      notImplemented("/Bulk"),
	} {
		s.mux.Handle(pattern, s.wrap(h))
		// /scim/v2/... serves the source the token is named after.
		s.mux.Handle(strings.Replace(pattern, "/{source}", "", 1), s.wrap(h))
	}
	s.mux.HandleFunc("/scim/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errf(404, "", "no SCIM endpoint %s %s", r.Method, r.URL.Path))
	})
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// wrap authenticates (a token of the source, or an admin), limits the
// body and writes errors in SCIM's format.
func (s *Server) wrap(h func(http.ResponseWriter, *http.Request, SourceConfig, engine.Principal) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpedge.LimitBody(w, r, MaxBody)
		err := func() error {
			tok, ok := httpedge.BearerToken(r)
			if !ok {
				return errf(401, "", "missing bearer token")
			}
			p, err := s.e.Authenticate(r.Context(), tok)
			if identity.ErrorCode(err) == identity.Unauthorized {
				return errf(401, "", "%s", identity.ErrorMessage(err))
			}
			if err != nil {
				return err
			}
			if p.Role != engine.RoleSource && p.Role != engine.RoleAdmin {
				return errf(403, "", "role %s may not provision over SCIM (a source token bound to the source does, or an admin)", p.Role)
			}
			name := r.PathValue("source")
			if name == "" {
				if p.Role != engine.RoleSource {
					return errf(400, "invalidSyntax", "/scim/v2 serves the source a source token is bound to; with this token use /scim/{source}/v2")
				}
				name = p.Source
			}
			sc, ok := s.sources[name]
			if !ok {
				return errf(404, "", "no SCIM source %q", name)
			}
			if p.Role != engine.RoleAdmin && (p.Role != engine.RoleSource || p.Source != sc.Name) {
				return errf(403, "", "this token may not provision source %q (it needs role source, bound to source %q: jml token create --role source --source %s)", sc.Name, sc.Name, sc.Name)
			}
			p.Endpoint = sc.Name // the source's own endpoint submits its events
			return h(w, r, sc, p)
		}()
		if err != nil {
			se := toSCIM(err)
			if se.Status >= 500 && se.Status != http.StatusNotImplemented {
				s.log.Error("scim request failed", "method", r.Method, "path", r.URL.Path, "error", err)
			}
			if se.Status == http.StatusUnauthorized {
				httpedge.Challenge(w)
			}
			writeError(w, se)
		}
	})
}

// toSCIM renders an error as SCIM's error (RFC 7644 §3.12). Errors of
// SCIM's own (errf: a precondition, a uniqueness clash, an unknown
// resource) keep their status; an identity.Error's code gets its status
// from the one map (httpedge.Status) and, for a bad value, scimType
// invalidValue.
func toSCIM(err error) *scimError {
	var se *scimError
	if errors.As(err, &se) {
		return se
	}
	var fe *store.FilterError
	if errors.As(err, &fe) {
		return errf(400, "invalidFilter", "%s", fe.Msg)
	}
	var tm *store.TooManyConditions
	if errors.As(err, &tm) {
		return errf(400, "tooMany", "%s", tm.Error())
	}
	err = httpedge.BodyError(err)
	code := identity.ErrorCode(err)
	if code == identity.NotFound {
		// What the engine does not find is something the resource names
		// (a manager, an owner): a bad value in the request. A resource
		// missing at the URL is this server's own 404 (errf).
		code = identity.Invalid
	}
	status := httpedge.Status(code)
	switch code {
	case identity.Internal:
		return errf(status, "", "internal error")
	case identity.Invalid:
		return errf(status, "invalidValue", "%s", identity.ErrorMessage(err))
	}
	return errf(status, "", "%s", identity.ErrorMessage(err))
}

func writeError(w http.ResponseWriter, e *scimError) {
	body := map[string]any{"schemas": []string{ErrorSchema}, "status": strconv.Itoa(e.Status), "detail": e.Detail}
	if e.ScimType != "" {
		body["scimType"] = e.ScimType
	}
	writeJSON(w, e.Status, body)
}

// writeJSON writes SCIM's answers: application/scim+json (RFC 7644 §3.1).
var writeJSON = httpedge.JSON{ContentType: "application/scim+json"}.Write

func readObject(r *http.Request) (map[string]any, error) {
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, errf(400, "invalidSyntax", "the body is not a JSON object")
	}
	return m, nil
}

func etag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// render is the resource as returned: the stored document with id and meta.
func render(r *http.Request, res *store.SCIMResource) (map[string]any, error) {
	var doc map[string]any
	if err := json.Unmarshal(res.Data, &doc); err != nil {
		return nil, err
	}
	doc["id"] = res.ID
	// Times to the microsecond jml stores: two changes within a second
	// carry different lastModified values (and versions).
	doc["meta"] = map[string]any{"resourceType": res.Type, "created": res.CreatedAt.UTC().Format(time.RFC3339Nano),
		"lastModified": res.UpdatedAt.UTC().Format(time.RFC3339Nano), "location": location(r, res), "version": etag(res.Version)}
	if m, ok := doc["members"]; ok && m == nil {
		delete(doc, "members") // unassigned is omitted (RFC 7643 §2.5), not null
	}
	if members, ok := doc["members"].([]any); ok {
		for _, m := range members {
			if mm, ok := m.(map[string]any); ok {
				id, _ := mm["value"].(string)
				mm["$ref"] = baseURL(r, res.Source) + "/Users/" + id
				mm["type"] = "User"
			}
		}
	}
	return doc, nil
}

// baseURL is the source's SCIM base URL as the request reached it.
func baseURL(r *http.Request, source string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/scim/" + source + "/v2"
}

func location(r *http.Request, res *store.SCIMResource) string {
	return baseURL(r, res.Source) + "/" + res.Type + "s/" + res.ID
}

// renderOne writes one resource with its ETag (and Location when created).
func (s *Server) renderOne(w http.ResponseWriter, r *http.Request, res *store.SCIMResource, status int) error {
	out, err := render(r, res)
	if err != nil {
		return err
	}
	if status == http.StatusCreated {
		w.Header().Set("Location", location(r, res))
	}
	w.Header().Set("ETag", etag(res.Version))
	writeJSON(w, status, out)
	return nil
}

// readBody reads a request's JSON body as every jml edge does (package
// jsonin): sent as JSON (application/scim+json or application/json), valid
// UTF-8 without NUL, no key twice.
func readBody(r *http.Request) ([]byte, error) {
	data, err := httpedge.ReadJSON(r)
	if identity.ErrorCode(err) == identity.Unsupported {
		// SCIM's media type named first (RFC 7644 §3.1).
		return nil, errf(415, "", "the body must be JSON, sent with Content-Type: application/scim+json (or application/json); this request's is %q", r.Header.Get("Content-Type"))
	}
	return data, err
}

// project keeps (attributes) or drops (excludedAttributes) attributes,
// down to sub-attributes of complex ones ("name.givenName",
// "urn:...:enterprise:2.0:User:department"); id and schemas are always
// returned.
func project(doc map[string]any, attributes, excluded string) {
	// paths parses a list into top-level key -> sub-attributes ("" for
	// the whole attribute), keys lower-cased.
	paths := func(list string) map[string]map[string]bool {
		out := map[string]map[string]bool{}
		add := func(top, sub string) {
			top = strings.ToLower(top)
			if out[top] == nil {
				out[top] = map[string]bool{}
			}
			out[top][strings.ToLower(sub)] = true
		}
		for _, a := range strings.Split(list, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			if ext, ok := canonicalExt(a); ok {
				add(ext, "")
				continue
			}
			if i := strings.LastIndex(a, ":"); i > 0 {
				if ext, ok := canonicalExt(a[:i]); ok { // urn:...:User:department
					add(ext, a[i+1:])
					continue
				}
				a = a[i+1:] // the core schema's URN
			}
			top, sub, _ := strings.Cut(a, ".")
			add(top, sub)
		}
		return out
	}
	if attributes != "" {
		keep := paths(attributes)
		for k, v := range doc {
			if k == "id" || k == "schemas" {
				continue
			}
			subs, ok := keep[strings.ToLower(k)]
			switch m, isMap := v.(map[string]any); {
			case !ok:
				delete(doc, k)
			case subs[""] || !isMap:
			default:
				for sk := range m {
					if !subs[strings.ToLower(sk)] {
						delete(m, sk)
					}
				}
			}
		}
	}
	if excluded != "" {
		drop := paths(excluded)
		for k, v := range doc {
			subs, ok := drop[strings.ToLower(k)]
			if !ok || k == "id" || k == "schemas" {
				continue
			}
			if m, isMap := v.(map[string]any); isMap && !subs[""] {
				for sk := range m {
					if subs[strings.ToLower(sk)] {
						delete(m, sk)
					}
				}
				continue
			}
			delete(doc, k)
		}
	}
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	return s.getType(w, r, sc, "User")
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	return s.getType(w, r, sc, "Group")
}

func (s *Server) getType(w http.ResponseWriter, r *http.Request, sc SourceConfig, typ string) error {
	res, err := s.loadType(r, sc, r.PathValue("id"), typ)
	if err != nil {
		return err
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag(res.Version) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	doc, err := render(r, res)
	if err != nil {
		return err
	}
	project(doc, r.URL.Query().Get("attributes"), r.URL.Query().Get("excludedAttributes"))
	w.Header().Set("ETag", etag(res.Version))
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *Server) load(r *http.Request, sc SourceConfig, id string) (*store.SCIMResource, error) {
	return s.loadType(r, sc, id, "User")
}

func (s *Server) loadType(r *http.Request, sc SourceConfig, id, typ string) (*store.SCIMResource, error) {
	var res *store.SCIMResource
	err := s.st.View(r.Context(), func(tx Tx) error {
		var err error
		res, err = tx.GetSCIM(r.Context(), sc.Name, id)
		return err
	})
	if store.IsNotFound(err) || (err == nil && res.Type != typ) {
		return nil, errf(404, "", "no %s %q", typ, id)
	}
	return res, err
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, sc SourceConfig, _ engine.Principal) error {
	return s.listType(w, r, sc, "User")
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request, sc SourceConfig, _ engine.Principal) error {
	return s.listType(w, r, sc, "Group")
}

func (s *Server) listType(w http.ResponseWriter, r *http.Request, sc SourceConfig, typ string) error {
	return s.query(w, r, sc, typ, r.URL.Query())
}

// SearchSchema is the schema of a POST .search body (RFC 7644 §3.4.3).
const SearchSchema = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"

// search answers POST /Users/.search and /Groups/.search: the query in
// the body, as a GET would take it in its URL (RFC 7644 §3.4.3), so that
// filters need not appear in URLs and logs.
func (s *Server) search(typ string) func(http.ResponseWriter, *http.Request, SourceConfig, engine.Principal) error {
	return func(w http.ResponseWriter, r *http.Request, sc SourceConfig, _ engine.Principal) error {
		if r.URL.RawQuery != "" {
			return errf(400, "invalidSyntax", "POST .search takes its query in the body, not the URL (%q)", r.URL.RawQuery)
		}
		in, err := readObject(r)
		if err != nil {
			return err
		}
		q := url.Values{}
		for k, v := range in {
			switch k {
			case "schemas":
				l, err := stringList(v)
				if err != nil || len(l) != 1 || l[0] != SearchSchema {
					return errf(400, "invalidSyntax", "schemas: must be [%q]", SearchSchema)
				}
			case "filter", "sortBy", "sortOrder":
				str, ok := v.(string)
				if !ok {
					return errf(400, "invalidValue", "%s: must be a string", k)
				}
				q.Set(k, str)
			case "startIndex", "count":
				n, ok := v.(float64)
				if !ok || n != float64(int(n)) {
					return errf(400, "invalidValue", "%s: must be an integer", k)
				}
				q.Set(k, strconv.Itoa(int(n)))
			case "attributes", "excludedAttributes":
				l, err := stringList(v)
				if err != nil {
					return errf(400, "invalidValue", "%s: must be a list of attribute paths", k)
				}
				q.Set(k, strings.Join(l, ","))
			default:
				return errf(400, "invalidSyntax", "%s is not a member of a SearchRequest", k)
			}
		}
		if _, ok := in["schemas"]; !ok {
			return errf(400, "invalidSyntax", "schemas: must be [%q]", SearchSchema)
		}
		return s.query(w, r, sc, typ, q)
	}
}

// notImplemented answers endpoints RFC 7644 names that this server does
// not provide (ServiceProviderConfig says so too): 501 (§3.11 for /Me).
func notImplemented(what string) func(http.ResponseWriter, *http.Request, SourceConfig, engine.Principal) error {
	return func(http.ResponseWriter, *http.Request, SourceConfig, engine.Principal) error {
		return errf(501, "", "%s is not implemented by this service provider", what)
	}
}

func (s *Server) query(w http.ResponseWriter, r *http.Request, sc SourceConfig, typ string, q url.Values) error {
	for k := range q {
		switch k {
		case "filter", "startIndex", "count", "sortBy", "sortOrder", "attributes", "excludedAttributes":
		default:
			return errf(400, "invalidSyntax", "unknown query parameter %q", k)
		}
	}
	sq := store.SCIMQuery{Source: sc.Name, Type: typ, Limit: 100, Offset: 0}
	if f := q.Get("filter"); f != "" {
		expr, err := parseFilter(f)
		if err != nil {
			return err
		}
		sq.Filter = expr
	}
	start := 1
	if v := q.Get("startIndex"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errf(400, "invalidValue", "startIndex: %q is not an integer", v)
		}
		start = max(n, 1)
	}
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errf(400, "invalidValue", "count: %q is not an integer", v)
		}
		sq.Limit = min(max(n, 0), maxCount)
	}
	sq.Offset = start - 1
	sq.SortBy = q.Get("sortBy")
	switch q.Get("sortOrder") {
	case "", "ascending":
	case "descending":
		sq.Descending = true
	default:
		return errf(400, "invalidValue", "sortOrder: %q is not ascending or descending", q.Get("sortOrder"))
	}
	var total int
	var items []store.SCIMResource
	err := s.st.View(r.Context(), func(tx Tx) error {
		var err error
		total, items, err = tx.ListSCIM(r.Context(), sq)
		return err
	})
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(items))
	for i := range items {
		doc, err := render(r, &items[i])
		if err != nil {
			return err
		}
		project(doc, q.Get("attributes"), q.Get("excludedAttributes"))
		out = append(out, doc)
	}
	writeJSON(w, http.StatusOK, map[string]any{"schemas": []string{ListSchema}, "totalResults": total, "startIndex": start,
		"itemsPerPage": len(out), "Resources": out})
	return nil
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	in, err := readObject(r)
	if err != nil {
		return err
	}
	doc, err := normalize(in)
	if err != nil {
		return err
	}
	now := s.e.Now().UTC().Truncate(time.Microsecond)
	res := &store.SCIMResource{ID: s.e.NewID(""), Source: sc.Name, Type: "User", Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := fill(res, doc); err != nil {
		return err
	}
	write := func(tx Tx) error {
		if _, err := tx.GetSCIMByUserName(r.Context(), sc.Name, "User", res.UserName); err == nil {
			return errf(409, "uniqueness", "userName %q is taken", doc["userName"])
		} else if !store.IsNotFound(err) {
			return err
		}
		return tx.InsertSCIM(r.Context(), res)
	}
	v := sc.view(doc)
	if v.active {
		ev := event(sc, res.ID, 1, identity.Joiner, v)
		if _, err := s.e.SubmitWith(r.Context(), p, ev, func(tx store.Tx, _ *engine.Result) error { return write(tx) }); err != nil {
			return sc.attributeError(err)
		}
	} else if err := s.st.Update(r.Context(), write); err != nil {
		return err // created inactive: provisioned on activation
	}
	return s.renderOne(w, r, res, http.StatusCreated)
}

// multiValues turns a multi-valued attribute into rows for value filters.
func multiValues(attr string, v any) []store.SCIMValue {
	list, _ := v.([]any)
	var out []store.SCIMValue
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		str := func(k string) string { s, _ := lookup(m, k).(string); return strings.ToLower(s) }
		p, _ := lookup(m, "primary").(bool)
		out = append(out, store.SCIMValue{Attr: attr, Type: str("type"), Value: str("value"), Display: str("display"), Primary: p})
	}
	return out
}

// fill sets a resource's indexed columns and data from a normalized doc.
func fill(res *store.SCIMResource, doc map[string]any) error {
	v := viewOf(doc)
	res.UserName, res.ExternalID, res.DisplayName, res.Active = strings.ToLower(v.userName), v.externalID, v.displayName, v.active
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return strings.ToLower(s) }
	res.Title, res.UserType = str(doc, "title"), str(doc, "userType")
	if n, ok := doc["name"].(map[string]any); ok {
		res.FamilyName, res.GivenName = str(n, "familyName"), str(n, "givenName")
	}
	res.Emails = ""
	if emails, ok := doc["emails"].([]any); ok && len(emails) > 0 {
		var b strings.Builder
		b.WriteByte('\x1f')
		for _, e := range emails {
			if m, ok := e.(map[string]any); ok {
				b.WriteString(strings.ReplaceAll(str(m, "value"), "\x1f", ""))
				b.WriteByte('\x1f')
			}
		}
		res.Emails = b.String()
	}
	res.Values = nil
	for _, attr := range []string{"emails", "phoneNumbers", "ims", "photos", "entitlements", "roles", "x509Certificates"} {
		res.Values = append(res.Values, multiValues(strings.ToLower(attr), doc[attr])...)
	}
	data, err := json.Marshal(doc)
	res.Data = data
	return err
}

// immutable refuses a change a User's identity cannot take: its kind is
// fixed (a new kind is a new identity), and a non-human identity always has
// an owner (it may get another, not none).
func immutable(was, now view) error {
	kind := func(v view) string {
		if v.kind == "" {
			return string(identity.Human)
		}
		return v.kind
	}
	if kind(was) != kind(now) {
		return errf(400, "mutability", "%s:kind is %s and cannot change (a %s is a new User)", NHISchema, kind(was), kind(now))
	}
	if kind(now) != string(identity.Human) && was.owner != "" && now.owner == "" {
		return errf(400, "invalidValue", "%s:owner: a %s always has an owner; replace it with another, do not remove it", NHISchema, kind(now))
	}
	return nil
}

// event builds the lifecycle event of a User change.
func event(sc SourceConfig, id string, version int64, typ identity.EventType, v view) identity.Event {
	ev := identity.Event{Source: sc.Name, ID: fmt.Sprintf("scim-%s-%d-%s", id, version, typ), Type: typ, ExternalID: id}
	switch typ {
	case identity.Joiner, identity.Mover:
		ev.DisplayName, ev.Manager, ev.Owner, ev.Attributes = v.displayName, v.manager, v.owner, v.attributes
		// The User is the whole truth about its manager: none is none.
		ev.RemoveManager = typ == identity.Mover && v.manager == ""
		if typ == identity.Joiner { // nulls remove attributes, which only a mover may
			ev.Attributes = map[string]any{}
			for k, x := range v.attributes {
				if x != nil {
					ev.Attributes[k] = x
				}
			}
			ev.Kind = identity.Kind(v.kind)
			if ev.Kind == "" {
				ev.Kind = identity.Human
			}
		}
	}
	return ev
}

func (s *Server) replace(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	in, err := readObject(r)
	if err != nil {
		return err
	}
	return s.update(w, r, sc, p, func(map[string]any) (map[string]any, error) { return normalize(in) })
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return s.update(w, r, sc, p, func(cur map[string]any) (map[string]any, error) {
		doc, err := applyPatch(cur, body, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		return normalize(doc)
	})
}

// update runs a PUT or PATCH: the new document from change, then the
// event the difference makes, with the resource, in one transaction.
func (s *Server) update(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal, change func(map[string]any) (map[string]any, error)) error {
	id := r.PathValue("id")
	old, err := s.load(r, sc, id)
	if err != nil {
		return err
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != etag(old.Version) {
		return errf(412, "", "If-Match %s: the resource is at %s", im, etag(old.Version))
	}
	var cur map[string]any
	if err := json.Unmarshal(old.Data, &cur); err != nil {
		return err
	}
	groups := cur["groups"] // server-managed: kept across PUT and PATCH
	doc, err := change(cur)
	if err != nil {
		return err
	}
	if groups != nil {
		doc["groups"] = groups
	}
	if unchangedDoc(old.Data, doc) {
		// Nothing changes (RFC 7644 §3.5.2.1: adding a value already there
		// "SHALL NOT change the modify timestamp"): no write, no event, and
		// the version a client holds stays current for its next If-Match.
		return s.renderOne(w, r, old, http.StatusOK)
	}
	res := *old
	// Microseconds, as the store keeps them: a write's answer and a later
	// read show the same lastModified.
	res.Version, res.UpdatedAt = old.Version+1, s.e.Now().UTC().Truncate(time.Microsecond)
	if err := fill(&res, doc); err != nil {
		return err
	}
	var oldDoc map[string]any
	json.Unmarshal(old.Data, &oldDoc)
	was, now := sc.view(oldDoc), sc.view(doc)
	if err := immutable(was, now); err != nil {
		return err
	}
	write := func(tx Tx) error {
		again, err := tx.GetSCIM(r.Context(), sc.Name, id)
		if err != nil {
			return err
		}
		if again.Version != old.Version {
			return errf(412, "", "the resource changed meanwhile (now %s)", etag(again.Version))
		}
		if res.UserName != old.UserName {
			if other, err := tx.GetSCIMByUserName(r.Context(), sc.Name, "User", res.UserName); err == nil && other.ID != id {
				return errf(409, "uniqueness", "userName %q is taken", doc["userName"])
			}
		}
		return tx.UpdateSCIM(r.Context(), &res)
	}
	typ, follow, err := s.transition(r, sc, id, was, now)
	if err != nil {
		return err
	}
	if follow || typ == identity.Joiner || typ == identity.Mover {
		// The engine checks each event's attributes as it takes it; a
		// resume followed by a mover would commit the resume before the
		// mover's check, so the User's values are checked here first.
		if err := s.e.Policy().CheckAttributes(now.attributes); err != nil {
			return sc.attributeError(err)
		}
	}
	if typ == "" {
		err = s.st.Update(r.Context(), write)
	} else {
		_, err = s.e.SubmitWith(r.Context(), p, event(sc, id, res.Version, typ, now), func(tx store.Tx, _ *engine.Result) error { return write(tx) })
	}
	if err != nil {
		return sc.attributeError(err)
	}
	if follow {
		// A resume does not carry attributes; changed ones follow as a mover.
		if _, err := s.e.Submit(r.Context(), p, event(sc, id, res.Version, identity.Mover, now)); err != nil {
			return sc.attributeError(err)
		}
	}
	out, err := render(r, &res)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(res.Version))
	writeJSON(w, http.StatusOK, out)
	return nil
}

// unchangedDoc reports whether doc, a resource after a PUT or PATCH, is
// the stored one: equal once unassigned attributes are dropped (RFC 7643
// §2.5: null, an empty list and no attribute are one thing).
func unchangedDoc(stored []byte, doc map[string]any) bool {
	var was, now any
	data, err := json.Marshal(doc)
	if err != nil || json.Unmarshal(stored, &was) != nil || json.Unmarshal(data, &now) != nil {
		return false
	}
	return reflect.DeepEqual(assigned(was), assigned(now))
}

// assigned is v without its unassigned attributes, at every depth.
func assigned(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if e = assigned(e); e != nil {
				out[k] = e
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if len(x) == 0 {
			return nil
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = assigned(e)
		}
		return out
	}
	return v
}

// transition is the event a change from was to now makes ("" for none),
// and whether a mover must follow it.
func (s *Server) transition(r *http.Request, sc SourceConfig, id string, was, now view) (identity.EventType, bool, error) {
	changed := was.displayName != now.displayName || was.manager != now.manager || was.owner != now.owner || !sameAttrs(was.attributes, now.attributes)
	switch {
	case was.active && !now.active:
		if sc.Deactivate == "suspend" {
			return identity.Suspend, false, nil
		}
		return identity.Leaver, false, nil
	case !was.active && now.active:
		var cur *identity.Identity
		err := s.st.View(r.Context(), func(tx Tx) error {
			var err error
			cur, err = tx.GetIdentityByExternalID(r.Context(), sc.Name, id)
			return err
		})
		switch {
		case store.IsNotFound(err), err == nil && cur.State == identity.Departed:
			return identity.Joiner, false, nil
		case err != nil:
			return "", false, err
		case cur.State == identity.Suspended:
			return identity.Resume, changed, nil
		}
		return identity.Mover, false, nil
	case now.active && changed:
		return identity.Mover, false, nil
	}
	return "", false, nil
}

func sameAttrs(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	id := r.PathValue("id")
	old, err := s.load(r, sc, id)
	if err != nil {
		return err
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != etag(old.Version) {
		return errf(412, "", "If-Match %s: the resource is at %s", im, etag(old.Version))
	}
	del := func(tx Tx) error {
		ok, err := tx.DeleteSCIM(r.Context(), sc.Name, id)
		if err == nil && !ok {
			return errf(404, "", "no User %q", id)
		}
		return err
	}
	var cur *identity.Identity
	err = s.st.View(r.Context(), func(tx Tx) error {
		var err error
		cur, err = tx.GetIdentityByExternalID(r.Context(), sc.Name, id)
		return err
	})
	switch {
	case store.IsNotFound(err) || (err == nil && cur.State == identity.Departed):
		err = s.st.Update(r.Context(), del)
	case err == nil:
		_, err = s.e.SubmitWith(r.Context(), p, event(sc, id, old.Version+1, identity.Leaver, view{}), func(tx store.Tx, _ *engine.Result) error { return del(tx) })
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
