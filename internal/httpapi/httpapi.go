// Package httpapi is jml's REST API: lifecycle events in, identities, cases
// and findings out, approvals, reveal-once secrets, RFC 7662 introspection,
// health, readiness, Prometheus metrics and the OpenAPI document.
//
// Every route but health, readiness, metrics, the OpenAPI document and the
// signed webhooks requires a bearer token whose role the route's action
// allows (the table in engine's authz.go). A role whose reach is Own (a
// member's token) is served only by the routes that limit it to its own.
// Error codes become HTTP statuses through httpedge's one map, which the
// SCIM server uses too; this package renders them in its error shape
// (ErrorBody).
//
// This file holds the route table, authentication and authorisation, and
// the error shape; the handlers are in a file per resource (events.go,
// identities.go, cases.go, holds.go, findings.go, credentials.go,
// tokens.go, audit.go, health.go), and the query parameters of lists in
// lists.go.
package httpapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/httpedge"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/source"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

//go:embed openapi.json
var openAPI []byte

// Server serves the API.
type Server struct {
	e        *engine.Engine
	log      *slog.Logger
	gatherer prometheus.Gatherer
	mux      *http.ServeMux
	requests *prometheus.HistogramVec
	webhooks map[string]*source.Webhook // by source name
	scim     http.Handler
}

// route is one API operation. The table drives both the mux and the test
// that holds the OpenAPI document to the handlers.
type route struct {
	method, path string
	// action is the permission required; "" means no token is needed.
	action engine.Permission
	// own: the handler limits a principal whose reach is engine.Own to
	// what is its own; other routes refuse such a principal.
	own     bool
	handler func(*Server, http.ResponseWriter, *http.Request, engine.Principal) error
}

var routes = []route{
	{"POST", "/v1/events", engine.PermSubmit, true, (*Server).submitEvent},
	{"GET", "/v1/identities", engine.PermRead, true, (*Server).listIdentities},
	{"GET", "/v1/identities/{id}", engine.PermRead, true, (*Server).getIdentity},
	{"GET", "/v1/cases", engine.PermRead, true, (*Server).listCases},
	{"GET", "/v1/cases/{id}", engine.PermRead, true, (*Server).getCase},
	{"POST", "/v1/cases/{id}/approve", engine.PermDecide, false, (*Server).approve},
	{"POST", "/v1/cases/{id}/deny", engine.PermDecide, false, (*Server).deny},
	{"POST", "/v1/cases/{id}/retry", engine.PermOperate, false, (*Server).retry},
	{"POST", "/v1/credentials/{id}/reveal", engine.PermReveal, true, (*Server).reveal},
	{"POST", "/v1/introspect", engine.PermIntrospect, false, (*Server).introspect},
	{"GET", "/v1/findings", engine.PermRead, false, (*Server).listFindings},
	{"POST", "/v1/findings/{id}/acknowledge", engine.PermOperate, false, (*Server).acknowledgeFinding},
	{"POST", "/v1/sources/{name}/webhook", "", false, (*Server).sourceWebhook},
	{"GET", "/v1/holds", engine.PermRead, false, (*Server).listHolds},
	{"POST", "/v1/holds/{id}/release", engine.PermOperate, false, (*Server).releaseHold},
	{"POST", "/v1/holds/{id}/discard", engine.PermOperate, false, (*Server).discardHold},
	{"GET", "/v1/scheduled", engine.PermOperate, false, (*Server).listScheduled},
	{"GET", "/v1/audit", engine.PermAudit, false, (*Server).exportAudit},
	{"POST", "/v1/tokens", engine.PermTokens, false, (*Server).createToken},
	{"GET", "/v1/tokens", engine.PermTokens, false, (*Server).listTokens},
	{"DELETE", "/v1/tokens/{id}", engine.PermTokens, false, (*Server).revokeToken},
	{"GET", "/healthz", "", false, (*Server).healthz},
	{"GET", "/readyz", "", false, (*Server).readyz},
	{"GET", "/openapi.json", "", false, (*Server).openapi},
}

// decisions are the routes that decide something, by route: a refusal of
// one is audited (engine.RecordRefusal), whether the role check here
// refuses it or the engine does (a self-approval).
var decisions = map[string]string{
	"POST /v1/cases/{id}/approve":        engine.DecisionApprove,
	"POST /v1/cases/{id}/deny":           engine.DecisionDeny,
	"POST /v1/holds/{id}/release":        engine.DecisionRelease,
	"POST /v1/holds/{id}/discard":        engine.DecisionDiscard,
	"POST /v1/findings/{id}/acknowledge": engine.DecisionAcknowledge,
}

// Option configures a Server.
type Option func(*Server)

// WithWebhooks serves POST /v1/sources/{name}/webhook for these sources.
func WithWebhooks(ws []*source.Webhook) Option {
	return func(s *Server) {
		for _, w := range ws {
			s.webhooks[w.Name] = w
		}
	}
}

// WithSCIM serves SCIM (package scimserver) under /scim/.
func WithSCIM(h http.Handler) Option {
	return func(s *Server) { s.scim = h }
}

// New returns the API server. reg receives the HTTP metrics and gatherer
// serves /metrics (both may be nil).
func New(e *engine.Engine, log *slog.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer, opts ...Option) *Server {
	s := &Server{e: e, log: log, gatherer: gatherer, mux: http.NewServeMux(), webhooks: map[string]*source.Webhook{}}
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jml_http_request_duration_seconds", Help: "API request latency by route and status.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}, []string{"route", "code"})
	if reg != nil {
		reg.MustRegister(s.requests)
	}
	for _, r := range routes {
		s.mux.Handle(r.method+" "+r.path, s.wrap(r))
	}
	if gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	if s.scim != nil {
		s.mux.Handle("/scim/", s.scim)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, identity.Errorf(identity.NotFound, "no route %s %s", r.Method, r.URL.Path))
	})
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }

func (s *Server) wrap(rt route) http.Handler {
	name := rt.method + " " + rt.path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.e.Now()
		sw := &statusWriter{ResponseWriter: w, code: 200}
		httpedge.LimitBody(sw, r, MaxBody)
		var p engine.Principal
		err := func() error {
			if rt.action != "" {
				var err error
				if p, err = s.authenticate(r); err != nil {
					return err
				}
				switch engine.ReachOf(p.Role, rt.action) {
				case engine.Nowhere:
					err := identity.Errorf(identity.Forbidden, "role %s may not %s", p.Role, rt.action.String())
					if d, ok := decisions[name]; ok {
						return s.e.RecordRefusal(r.Context(), p, d, r.PathValue("id"), err)
					}
					return err
				case engine.Own:
					if !rt.own {
						return identity.Errorf(identity.Forbidden, "role %s may %s only of its own, and %s is not limited to those", p.Role, rt.action.String(), name)
					}
				}
			}
			return rt.handler(s, sw, r, p)
		}()
		if err != nil {
			if identity.ErrorCode(err) == identity.Internal {
				s.log.Error("request failed", "route", name, "error", err)
			}
			writeError(sw, err)
		}
		elapsed := s.e.Now().Sub(start)
		s.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Observe(elapsed.Seconds())
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "route", name, "status", sw.code, "principal", p.ID, "duration", elapsed)
	})
}

func (s *Server) authenticate(r *http.Request) (engine.Principal, error) {
	tok, ok := httpedge.BearerToken(r)
	if !ok {
		return engine.Principal{}, identity.Errorf(identity.Unauthorized, "missing bearer token: send Authorization: Bearer <token>")
	}
	return s.e.Authenticate(r.Context(), tok)
}

// ErrorBody is the shape of every error response.
type ErrorBody struct {
	Error struct {
		Code    identity.Code `json:"code"`
		Field   string        `json:"field,omitempty"`
		Message string        `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, err error) {
	var body ErrorBody
	body.Error.Code = identity.ErrorCode(err)
	var ie *identity.Error
	if errors.As(err, &ie) {
		body.Error.Field, body.Error.Message = ie.Field, ie.Message
	} else {
		body.Error.Message = "internal error"
	}
	if body.Error.Code == identity.Unauthorized {
		httpedge.Challenge(w)
	}
	writeJSON(w, httpedge.Status(body.Error.Code), body)
}

// writeJSON writes the API's answers: application/json, indented for a
// person reading curl's output.
var writeJSON = httpedge.JSON{ContentType: "application/json", Indent: "  "}.Write

// decode reads a JSON body strictly: sent as JSON (415 otherwise), one
// object, no unknown fields, no key twice, valid UTF-8 without NUL
// (package jsonin), within MaxBody. Errors name the field or position at
// fault.
func decode(r *http.Request, v any) error {
	data, err := httpedge.ReadJSON(r)
	if err != nil {
		return jsonError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return identity.Errorf(identity.Invalid, "body holds more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return identity.Errorf(identity.Invalid, "body holds more than one JSON value")
	}
	return nil
}

// jsonError names what is wrong with a body that could not be read or
// decoded. An error already coded (by the edge's read: media type, size,
// jsonin's check) passes as it is.
func jsonError(err error) error {
	err = httpedge.BodyError(err)
	var coded *identity.Error
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tim *time.ParseError
	switch {
	case errors.As(err, &coded):
		return err
	case errors.Is(err, io.EOF):
		return identity.Errorf(identity.Invalid, "body is empty: send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return identity.Errorf(identity.Invalid, "malformed JSON: body ends early")
	case errors.As(err, &syn):
		return identity.Errorf(identity.Invalid, "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ) && typ.Field == "":
		return identity.Errorf(identity.Invalid, "body must be a JSON object, not %s", typ.Value)
	case errors.As(err, &typ):
		return identity.FieldError(typ.Field, "must be %s, not %s", typ.Type, typ.Value)
	case errors.As(err, &tim):
		return identity.FieldError("effectiveAt", "must be an RFC 3339 time such as 2026-01-02T09:00:00Z")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return identity.FieldError(f, "unknown field")
	}
	return identity.Errorf(identity.Invalid, "malformed JSON: %v", err)
}
