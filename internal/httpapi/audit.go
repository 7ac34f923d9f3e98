package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/engine"
)

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
