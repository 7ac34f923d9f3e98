package scimserver

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/httpedge"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

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
