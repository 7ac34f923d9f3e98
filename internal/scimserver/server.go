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
//
// Where things are: routes, authentication and the source's check
// (server.go); reads and searches (read.go); writes of Users (provision.go)
// and which lifecycle event a change makes (events.go); Groups and their
// members (group.go); the User document and its schema (user.go), PATCH
// (patch.go), filters (filter.go), the attribute mapping (attributes.go),
// discovery (discovery.go); a resource as returned, with id, meta and the
// attributes asked for (resource.go); SCIM's error shape (errors.go); the
// store parts the server uses itself (storage.go).
package scimserver

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/httpedge"
	"github.com/jml-dev/jml/internal/identity"
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
		if err := identity.ValidName("name", sc.Name); err != nil {
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
				if err := identity.ValidName("attribute", attr); err != nil || attr == "groups" {
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

// notImplemented answers endpoints RFC 7644 names that this server does
// not provide (ServiceProviderConfig says so too): 501 (§3.11 for /Me).
func notImplemented(what string) func(http.ResponseWriter, *http.Request, SourceConfig, engine.Principal) error {
	return func(http.ResponseWriter, *http.Request, SourceConfig, engine.Principal) error {
		return errf(501, "", "%s is not implemented by this service provider", what)
	}
}
