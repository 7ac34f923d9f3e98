package httpapi

import (
	"net/http"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

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
