package identity

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies an error for the layers that translate it (HTTP status,
// SCIM scimType, CLI exit). The set is closed; add codes here only.
type Code string

const (
	Invalid      Code = "invalid"      // the input is wrong; the message names the field
	NotFound     Code = "not_found"    // the thing asked for does not exist
	Conflict     Code = "conflict"     // the request contradicts current state
	Forbidden    Code = "forbidden"    // the principal may not do this
	Unauthorized Code = "unauthorized" // no or unknown credentials
	Gone         Code = "gone"         // it existed but is no longer available
	TooLarge     Code = "too_large"    // the input exceeds a size limit
	Unsupported  Code = "unsupported"  // the body's media type is not one the route takes
	Unavailable  Code = "unavailable"  // a dependency is down; retrying may help
	Internal     Code = "internal"     // a bug or an unexpected failure
)

// Error is jml's error. Message is safe to show to the caller; Field, when
// set, names the input field at fault (JSON path style, "owner",
// "attributes.env"). Err is the internal cause and is never shown to API
// callers.
type Error struct {
	Code    Code
	Field   string
	Message string
	Err     error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil && !strings.Contains(msg, e.Err.Error()) {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the code and a formatted, caller-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an Invalid error that names the field at fault.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Code: Invalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or Internal
// when there is none (an unclassified error is a bug or an I/O failure).
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// ErrorMessage returns the caller-safe message of err: the message of the
// first *Error in its chain, or a generic text for unclassified errors, so
// that internal causes never leak to API callers.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if e.Field != "" {
			return e.Field + ": " + e.Message
		}
		return e.Message
	}
	return "internal error"
}
