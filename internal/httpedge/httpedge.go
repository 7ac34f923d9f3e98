// Package httpedge is what jml's two HTTP edges, the REST API (httpapi)
// and the SCIM service provider (scimserver), do alike: bound a request's
// body, read a JSON body with the check every edge runs (package jsonin),
// take a bearer token, write a JSON response, and turn an identity.Error's
// code into an HTTP status through the one map below. Each edge keeps its
// own error shape (httpapi's {"error": {...}}, SCIM's RFC 7644 §3.12
// error with scimType), but a code has one status wherever it is rendered.
//
// It must not import the engine, the store or either edge: it knows
// codes, bodies and headers, never routes, principals or resources, so
// that both edges (and any later one) can use it without a cycle. It
// imports only identity (the codes) and jsonin (the JSON check).
package httpedge

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jsonin"
)

// statuses is the one map from error codes to HTTP statuses.
var statuses = map[identity.Code]int{
	identity.Invalid:      http.StatusBadRequest,
	identity.NotFound:     http.StatusNotFound,
	identity.Conflict:     http.StatusConflict,
	identity.Forbidden:    http.StatusForbidden,
	identity.Unauthorized: http.StatusUnauthorized,
	identity.Gone:         http.StatusGone,
	identity.TooLarge:     http.StatusRequestEntityTooLarge,
	identity.Unsupported:  http.StatusUnsupportedMediaType,
	identity.Unavailable:  http.StatusServiceUnavailable,
	identity.Internal:     http.StatusInternalServerError,
}

// Status is the HTTP status of an error code; a code the map does not
// know (none today: the set is closed) is a server error.
func Status(c identity.Code) int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Challenge sets the header a 401 answer carries (RFC 6750 §3).
func Challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="jml"`)
}

// BearerToken is the token of an "Authorization: Bearer <token>" header
// (the scheme in any case); false when the request carries none. Each
// edge says in its own words what is missing.
func BearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// LimitBody bounds r's body to n bytes: reading past them fails, and
// BodyError reports that failure as identity.TooLarge.
func LimitBody(w http.ResponseWriter, r *http.Request, n int64) {
	r.Body = http.MaxBytesReader(w, r.Body, n)
}

// BodyError is an error from reading a request's body as the edges report
// it: a body over the limit LimitBody set is identity.TooLarge naming the
// limit; any other error is returned as it is, for the caller to judge.
func BodyError(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return identity.Errorf(identity.TooLarge, "body is larger than %d bytes", maxErr.Limit)
	}
	return err
}

// ReadAll reads r's whole body (errors as BodyError says). A route that
// must authenticate the raw bytes before judging them (a signed webhook)
// reads them with ReadAll and checks them with CheckJSON after.
func ReadAll(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, BodyError(err)
	}
	return data, nil
}

// CheckJSON checks a body already read: sent as JSON (identity.Unsupported
// otherwise) and passing jsonin.Check (identity.Invalid naming the field).
func CheckJSON(r *http.Request, data []byte) error {
	if err := jsonin.ContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	return jsonin.Check(data)
}

// ReadJSON reads a JSON body as every edge does, in this order: sent as
// JSON (identity.Unsupported, before any byte is read), within the limit
// (identity.TooLarge), valid UTF-8 without NUL and no key twice
// (identity.Invalid). A read that fails otherwise (the client went away,
// or sent less than it announced) returns the read's error as it is.
func ReadJSON(r *http.Request) ([]byte, error) {
	if err := jsonin.ContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	data, err := ReadAll(r)
	if err != nil {
		return nil, err
	}
	if err := jsonin.Check(data); err != nil {
		return nil, err
	}
	return data, nil
}

// JSON is how an edge writes its JSON answers: their media type and
// indentation ("" for none).
type JSON struct {
	ContentType string
	Indent      string
}

// Write writes v as the answer, with status. The status is sent before v
// is encoded, so an error encoding v (returned) cannot change it.
func (j JSON) Write(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", j.ContentType)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	if j.Indent != "" {
		enc.SetIndent("", j.Indent)
	}
	return enc.Encode(v)
}
