package scimserver

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/jml-dev/jml/internal/httpedge"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// scimError is an error in SCIM's format.
type scimError struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *scimError) Error() string { return e.Detail }

func errf(status int, scimType, format string, args ...any) *scimError {
	return &scimError{Status: status, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

// toSCIM renders an error as SCIM's error (RFC 7644 §3.12). Errors of
// SCIM's own (errf: a precondition, a uniqueness clash, an unknown
// resource) keep their status; an identity.Error's code gets its status
// from the one map (httpedge.Status) and, for a bad value, scimType
// invalidValue.
func toSCIM(err error) *scimError {
	var se *scimError
	if errors.As(err, &se) {
		return se
	}
	var fe *store.FilterError
	if errors.As(err, &fe) {
		return errf(400, "invalidFilter", "%s", fe.Msg)
	}
	var tm *store.TooManyConditions
	if errors.As(err, &tm) {
		return errf(400, "tooMany", "%s", tm.Error())
	}
	err = httpedge.BodyError(err)
	code := identity.ErrorCode(err)
	if code == identity.NotFound {
		// What the engine does not find is something the resource names
		// (a manager, an owner): a bad value in the request. A resource
		// missing at the URL is this server's own 404 (errf).
		code = identity.Invalid
	}
	status := httpedge.Status(code)
	switch code {
	case identity.Internal:
		return errf(status, "", "internal error")
	case identity.Invalid:
		return errf(status, "invalidValue", "%s", identity.ErrorMessage(err))
	}
	return errf(status, "", "%s", identity.ErrorMessage(err))
}

func writeError(w http.ResponseWriter, e *scimError) {
	body := map[string]any{"schemas": []string{ErrorSchema}, "status": strconv.Itoa(e.Status), "detail": e.Detail}
	if e.ScimType != "" {
		body["scimType"] = e.ScimType
	}
	writeJSON(w, e.Status, body)
}
