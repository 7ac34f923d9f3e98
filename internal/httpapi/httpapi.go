// Package httpapi is jml's REST API: lifecycle events in, identities, cases
// and findings out, approvals, reveal-once secrets, RFC 7662 introspection,
// health, readiness, Prometheus metrics and the OpenAPI document.
//
// Every route but health, readiness, metrics, the OpenAPI document and the
// signed webhooks requires a bearer token whose role the route's action
// allows (the table in engine's authz.go). A role whose reach is Own (a
// member's token) is served only by the routes that limit it to its own.
// This package alone maps error codes to HTTP status codes.
package httpapi

import (
	"bytes"
	"context"

	_ "embed"
	"encoding/json"
	"errors"
	"fmt"

	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jsonin"
	"github.com/jml-dev/jml/internal/source"
	"github.com/jml-dev/jml/internal/store"
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
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: 200}
		r.Body = http.MaxBytesReader(sw, r.Body, MaxBody)
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
		elapsed := time.Since(start)
		s.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Observe(elapsed.Seconds())
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "route", name, "status", sw.code, "principal", p.ID, "duration", elapsed)
	})
}

func (s *Server) authenticate(r *http.Request) (engine.Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return engine.Principal{}, identity.Errorf(identity.Unauthorized, "missing bearer token: send Authorization: Bearer <token>")
	}
	return s.e.Authenticate(r.Context(), strings.TrimSpace(tok))
}

var statusOf = map[identity.Code]int{
	identity.Invalid:      http.StatusBadRequest,
	identity.NotFound:     http.StatusNotFound,
	identity.Conflict:     http.StatusConflict,
	identity.Forbidden:    http.StatusForbidden,
	identity.Unauthorized: http.StatusUnauthorized,
	identity.Gone:         http.StatusGone,
	identity.TooLarge:     http.StatusRequestEntityTooLarge,
	identity.Unsupported:  http.StatusUnsupportedMediaType,
	identity.Unavailable:  http.StatusServiceUnavailable,
	identity.Internal:     http.StatusInternalServerError,
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
		w.Header().Set("WWW-Authenticate", `Bearer realm="jml"`)
	}
	writeJSON(w, statusOf[body.Error.Code], body)
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// decode reads a JSON body strictly: sent as JSON (415 otherwise), one
// object, no unknown fields, no key twice, valid UTF-8 without NUL
// (package jsonin), within MaxBody. Errors name the field or position at
// fault.
func decode(r *http.Request, v any) error {
	if err := jsonin.ContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return jsonError(err)
	}
	if err := jsonin.Check(data); err != nil {
		return err
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

func jsonError(err error) error {
	var maxErr *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tim *time.ParseError
	switch {
	case errors.As(err, &maxErr):
		return identity.Errorf(identity.TooLarge, "body is larger than %d bytes", maxErr.Limit)
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

// ---- handlers

func (s *Server) submitEvent(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var ev identity.Event
	if err := decode(r, &ev); err != nil {
		return err
	}
	res, err := s.e.Submit(r.Context(), p, ev)
	if err != nil {
		return err
	}
	if res.CaseID != "" {
		w.Header().Set("Location", "/v1/cases/"+res.CaseID)
	}
	code := http.StatusAccepted
	if res.Duplicate {
		code = http.StatusOK
	}
	return writeJSON(w, code, res)
}

// sourceWebhook accepts an event from a webhook source. The request is
// authenticated by its signature with the source's secret, not a bearer
// token; the event is submitted as the source, with the source role.
func (s *Server) sourceWebhook(w http.ResponseWriter, r *http.Request, _ engine.Principal) error {
	name := r.PathValue("name")
	src := s.webhooks[name]
	if src == nil {
		return identity.Errorf(identity.NotFound, "no webhook source %q", name)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return identity.Errorf(identity.TooLarge, "body is larger than %d bytes", maxErr.Limit)
		}
		return err
	}
	if err := src.Verify(r.Header, body, time.Now()); err != nil {
		return err
	}
	if err := jsonin.ContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	if err := jsonin.Check(body); err != nil {
		return err
	}
	ev, ignored, err := src.Map(body)
	if err != nil {
		return err
	}
	if ignored {
		return writeJSON(w, http.StatusOK, map[string]bool{"ignored": true})
	}
	res, err := s.e.Submit(r.Context(), engine.Principal{ID: "source:" + name, Role: engine.RoleSource, Source: name, Endpoint: name}, ev)
	if err != nil {
		return mappingOutput(name, err)
	}
	code := http.StatusAccepted
	if res.Duplicate {
		code = http.StatusOK
	}
	return writeJSON(w, code, res)
}

// mappingOutput says of an event refused for one of its fields that the
// field is the output of the source's mapping (the sender sent a payload,
// not the event): "attributes.tools: … (the output of source ci's
// mapping, map.attributes)". Other errors pass as they are.
func mappingOutput(source string, err error) error {
	var ie *identity.Error
	if !errors.As(err, &ie) || ie.Code != identity.Invalid || ie.Field == "" {
		return err
	}
	expr, _, _ := strings.Cut(ie.Field, ".")
	expr, _, _ = strings.Cut(expr, "[")
	return &identity.Error{Code: ie.Code, Field: ie.Field, Err: ie.Err,
		Message: fmt.Sprintf("%s (the output of source %s's mapping, map.%s)", ie.Message, source, expr)}
}

// listQuery reads allow-listed query parameters; any other is an error, so
// a typo does not silently widen a listing.
func listQuery(r *http.Request, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
			}
		}
		if !ok {
			return nil, identity.FieldError(k, "unknown query parameter (allowed: %s)", strings.Join(allowed, ", "))
		}
		if len(v) != 1 {
			return nil, identity.FieldError(k, "give it once")
		}
		out[k] = v[0]
	}
	return out, nil
}

func parseLimit(q map[string]string) (int, error) {
	if q["limit"] == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(q["limit"])
	if err != nil || n < 1 || n > 1000 {
		return 0, identity.FieldError("limit", "must be a whole number from 1 to 1000")
	}
	return n, nil
}

// IdentityList is a page of identities.
type IdentityList struct {
	Items []identity.Identity `json:"items"`
	// Next is the cursor for the following page (pass it as after=), empty
	// on the last page.
	Next string `json:"next,omitempty"`
}

func (s *Server) listIdentities(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := listQuery(r, "kind", "state", "source", "owner", "entitlement", "system", "after", "limit")
	if err != nil {
		return err
	}
	f := store.IdentityFilter{Kind: identity.Kind(q["kind"]), State: identity.State(q["state"]), Source: q["source"], Owner: q["owner"],
		Entitlement: q["entitlement"], System: q["system"], After: q["after"]}
	if f.Kind != "" && !f.Kind.Valid() {
		return identity.FieldError("kind", "unknown kind %q (want one of %v)", f.Kind, identity.Kinds)
	}
	switch f.State {
	case "", identity.Pending, identity.Active, identity.Suspended, identity.Departed:
	default:
		return identity.FieldError("state", "unknown state %q", f.State)
	}
	if f.Limit, err = parseLimit(q); err != nil {
		return err
	}
	var out IdentityList
	if out.Items, err = s.e.Identities(r.Context(), p, f); err != nil {
		return err
	}
	if len(out.Items) == f.Limit {
		out.Next = out.Items[len(out.Items)-1].ID
	}
	return writeJSON(w, http.StatusOK, out)
}

// IdentityView is an identity with its access and history (GET
// /v1/identities/{id}).
type IdentityView = engine.IdentityView

func (s *Server) getIdentity(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	id := r.PathValue("id")
	v, err := s.e.IdentityView(r.Context(), p, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// CaseList is a page of cases, newest first, without their steps.
type CaseList struct {
	Items []store.Case `json:"items"`
	// Next is the cursor for the following page (pass it as after=), empty
	// on the last page.
	Next string `json:"next,omitempty"`
}

func (s *Server) listCases(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := listQuery(r, "status", "type", "identity", "since", "after", "limit")
	if err != nil {
		return err
	}
	f := store.CaseFilter{Status: store.CaseStatus(q["status"]), Type: identity.EventType(q["type"]), IdentityID: q["identity"], After: q["after"]}
	if v := q["since"]; v != "" {
		if f.Since, err = time.Parse(time.RFC3339, v); err != nil {
			return identity.FieldError("since", "must be an RFC 3339 time such as 2026-01-02T09:00:00Z")
		}
	}
	if f.Limit, err = parseLimit(q); err != nil {
		return err
	}
	var out CaseList
	if out.Items, err = s.e.Cases(r.Context(), p, f); err != nil {
		return err
	}
	if len(out.Items) == f.Limit {
		out.Next = out.Items[len(out.Items)-1].ID
	}
	return writeJSON(w, http.StatusOK, out)
}

// ScheduleList is what is due, soonest first.
type ScheduleList struct {
	Items []engine.Due `json:"items"`
}

func (s *Server) listScheduled(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := listQuery(r, "kind", "until", "limit")
	if err != nil {
		return err
	}
	f := engine.ScheduleFilter{Kind: engine.DueKind(q["kind"]), Limit: 100}
	if v := q["until"]; v != "" {
		if f.Until, err = time.Parse(time.RFC3339, v); err != nil {
			return identity.FieldError("until", "must be an RFC 3339 time such as 2026-01-02T09:00:00Z")
		}
	}
	if v := q["limit"]; v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil {
			return identity.FieldError("limit", "must be a whole number from 1 to %d", engine.MaxScheduleLimit)
		}
	}
	var out ScheduleList
	if out.Items, err = s.e.Schedule(r.Context(), p, f); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getCase(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	c, err := s.e.Case(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

// Decision is the optional body of approve and deny.
type Decision struct {
	Comment string `json:"comment"`
}

func (s *Server) decide(w http.ResponseWriter, r *http.Request, p engine.Principal, approve bool) error {
	var d Decision
	if r.ContentLength != 0 {
		if err := decode(r, &d); err != nil {
			return err
		}
	}
	if len(d.Comment) > 1024 {
		return identity.FieldError("comment", "is longer than 1024 bytes")
	}
	c, err := s.e.Decide(r.Context(), p, r.PathValue("id"), approve, d.Comment)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) approve(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	return s.decide(w, r, p, true)
}

func (s *Server) deny(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	return s.decide(w, r, p, false)
}

// Revealed is the one-time answer of reveal.
type Revealed struct {
	Credential *identity.Credential `json:"credential"`
	Secret     string               `json:"secret"`
}

func (s *Server) reveal(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	secret, c, err := s.e.Reveal(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, Revealed{Credential: c, Secret: secret})
}

func (s *Server) introspect(w http.ResponseWriter, r *http.Request, _ engine.Principal) error {
	var token string
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/json") {
		var body struct {
			Token         string `json:"token"`
			TokenTypeHint string `json:"token_type_hint"`
		}
		if err := decode(r, &body); err != nil {
			return err
		}
		token = body.Token
	} else {
		if err := r.ParseForm(); err != nil {
			return jsonError(err)
		}
		if len(r.PostForm["token"]) > 1 {
			return identity.FieldError("token", "is given %d times; give it once", len(r.PostForm["token"]))
		}
		token = r.PostForm.Get("token")
	}
	if token == "" {
		return identity.FieldError("token", "is required (RFC 7662: token=<the credential>)")
	}
	res, err := s.e.Introspect(r.Context(), token)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, res)
}

// FindingList is a list of findings.
type FindingList struct {
	Items []identity.Finding `json:"items"`
}

func (s *Server) listFindings(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := listQuery(r, "kind", "identity", "open", "state", "limit")
	if err != nil {
		return err
	}
	f := store.FindingFilter{Kind: q["kind"], IdentityID: q["identity"], OpenOnly: q["open"] == "true", State: identity.FindingState(q["state"])}
	if o := q["open"]; o != "" && o != "true" && o != "false" {
		return identity.FieldError("open", "must be true or false")
	}
	switch f.State {
	case "", identity.FindingOpen, identity.FindingAcknowledged, identity.FindingResolved:
	case "all":
		f.State = ""
	default:
		return identity.FieldError("state", "must be open, acknowledged, resolved or all")
	}
	if f.Limit, err = parseLimit(q); err != nil {
		return err
	}
	var out FindingList
	if out.Items, err = s.e.Findings(r.Context(), p, f); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// Acknowledgement is the body of POST /v1/findings/{id}/acknowledge.
type Acknowledgement struct {
	Reason string `json:"reason"`
	// Until is an RFC 3339 time.
	Until string `json:"until"`
}

func (s *Server) acknowledgeFinding(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var a Acknowledgement
	if err := decode(r, &a); err != nil {
		return err
	}
	var until time.Time
	if a.Until != "" {
		var err error
		if until, err = time.Parse(time.RFC3339, a.Until); err != nil {
			return identity.FieldError("until", "must be an RFC 3339 time such as 2026-01-02T09:00:00Z")
		}
	}
	f, err := s.e.AcknowledgeFinding(r.Context(), p, r.PathValue("id"), a.Reason, until)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, f)
}

// exportAudit streams audit records as JSON lines.
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := listQuery(r, "identity")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	return s.e.ScanAudit(r.Context(), p, q["identity"], func(rec *audit.Record) error { return enc.Encode(rec) })
}

// TokenRequest creates an API token.
type TokenRequest struct {
	Name string      `json:"name"`
	Role engine.Role `json:"role"`
	// Source binds a source token to its one source.
	Source string `json:"source"`
	// Identity binds the token to an identity (jml ID or SOURCE/EXTERNAL_ID).
	Identity string `json:"identity"`
}

// TokenCreated is the one-time answer with a new token's secret.
type TokenCreated struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	Token  string `json:"token"`
	Notice string `json:"notice"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req TokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	secret, tk, err := s.e.IssueToken(r.Context(), p, engine.TokenSpec{Name: req.Name, Role: req.Role, Source: req.Source, Identity: req.Identity})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, TokenCreated{ID: tk.ID, Role: tk.Role, Token: secret, Notice: "shown once; jml keeps only its hash"})
}

func (s *Server) retry(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	c, err := s.e.Retry(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

// HoldList is held batches, newest first.
type HoldList struct {
	Items []store.Hold `json:"items"`
}

func (s *Server) listHolds(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := listQuery(r, "status")
	if err != nil {
		return err
	}
	status := store.HoldStatus(q["status"])
	switch status {
	case "", store.HoldHeld, store.HoldReleased, store.HoldDiscarded:
	default:
		return identity.FieldError("status", "must be held, released or discarded")
	}
	items, err := s.e.Holds(r.Context(), p, status)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, HoldList{Items: items})
}

// HoldDecision is a hold after release or discard, and for a release what
// applying its events did.
type HoldDecision struct {
	Hold       *store.Hold `json:"hold"`
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
}

func (s *Server) releaseHold(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	h, res, err := s.e.DecideHold(r.Context(), p, r.PathValue("id"), true)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, HoldDecision{Hold: h, Accepted: res.Accepted, Duplicates: res.Duplicates})
}

func (s *Server) discardHold(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	h, _, err := s.e.DecideHold(r.Context(), p, r.PathValue("id"), false)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, HoldDecision{Hold: h})
}

// TokenList is every API token (never a secret or hash).
type TokenList struct {
	Items []store.Token `json:"items"`
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	items, err := s.e.ListTokens(r.Context(), p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, TokenList{Items: items})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := s.e.RevokeToken(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ engine.Principal) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ engine.Principal) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	backend, err := s.e.Ready(ctx)
	if err != nil {
		return &identity.Error{Code: identity.Unavailable, Message: "database is not reachable", Err: err}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "store": backend})
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request, _ engine.Principal) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openAPI)
	return err
}
