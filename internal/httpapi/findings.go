package httpapi

import (
	"net/http"
	"time"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

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
