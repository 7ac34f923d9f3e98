package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/httpedge"
	"github.com/jml-dev/jml/internal/identity"
)

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
	body, err := httpedge.ReadAll(r)
	if err != nil {
		return err
	}
	// Signed before judged: a sender that cannot sign learns nothing of
	// what jml would make of its body.
	if err := src.Verify(r.Header, body, s.e.Now()); err != nil {
		return err
	}
	if err := httpedge.CheckJSON(r, body); err != nil {
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
