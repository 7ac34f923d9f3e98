package httpapi

import (
	"net/http"
	"strings"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
)

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
