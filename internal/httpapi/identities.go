package httpapi

import (
	"net/http"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

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
