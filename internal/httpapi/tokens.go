package httpapi

import (
	"net/http"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/store"
)

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
