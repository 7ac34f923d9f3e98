package httpapi

import (
	"net/http"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// CaseList is a page of cases, newest first, without their steps.
type CaseList struct {
	Items []cases.Case `json:"items"`
	// Next is the cursor for the following page (pass it as after=), empty
	// on the last page.
	Next string `json:"next,omitempty"`
}

func (s *Server) listCases(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := listQuery(r, "status", "type", "identity", "since", "after", "limit")
	if err != nil {
		return err
	}
	f := store.CaseFilter{Status: cases.Status(q["status"]), Type: identity.EventType(q["type"]), IdentityID: q["identity"], After: q["after"]}
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

func (s *Server) retry(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	c, err := s.e.Retry(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}
