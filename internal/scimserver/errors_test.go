package scimserver

import (
	"errors"
	"testing"

	"github.com/jml-dev/jml/internal/httpedge"
	"github.com/jml-dev/jml/internal/identity"
)

// TestErrorStatusesAreTheOneMap: an identity.Error becomes a SCIM error
// whose status is the one map's for its code (httpedge.Status), as the
// REST API's is. The one exception is NotFound: what the engine does not
// find is something a resource names (a manager, an owner), a bad value
// (400 invalidValue), since SCIM's 404 says the resource at the URL is
// missing.
func TestErrorStatusesAreTheOneMap(t *testing.T) {
	for _, code := range []identity.Code{identity.Invalid, identity.NotFound, identity.Conflict, identity.Forbidden, identity.Unauthorized,
		identity.Gone, identity.TooLarge, identity.Unsupported, identity.Unavailable, identity.Internal} {
		se := toSCIM(identity.Errorf(code, "the message"))
		want, wantType, wantDetail := httpedge.Status(code), "", "the message"
		switch code {
		case identity.NotFound:
			want, wantType = 400, "invalidValue"
		case identity.Invalid:
			wantType = "invalidValue"
		case identity.Internal:
			wantDetail = "internal error"
		}
		if se.Status != want || se.ScimType != wantType || se.Detail != wantDetail {
			t.Errorf("%s: %d %q %q, want %d %q %q", code, se.Status, se.ScimType, se.Detail, want, wantType, wantDetail)
		}
	}
	// An error that is no identity.Error says nothing of its cause.
	if se := toSCIM(errors.New("disk on fire")); se.Status != 500 || se.Detail != "internal error" {
		t.Errorf("plain error: %+v", se)
	}
}
