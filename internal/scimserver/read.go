package scimserver

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/store"
)

// maxCount bounds a page.
const maxCount = 1000

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
