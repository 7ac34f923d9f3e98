package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
)

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
