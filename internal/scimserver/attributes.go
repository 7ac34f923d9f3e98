package scimserver

import (
	"errors"
	"strings"

	"github.com/jml-dev/jml/internal/identity"
)

// defaultPaths names the User attribute each identity attribute comes
// from under the default mapping (viewOf), for errors about its value.
var defaultPaths = map[string]string{
	"userName": "userName", "title": "title", "email": "emails (the primary one's value)", "groups": "groups",
	"employeeNumber": EnterpriseSchema + ":employeeNumber", "costCenter": EnterpriseSchema + ":costCenter",
	"organization": EnterpriseSchema + ":organization", "division": EnterpriseSchema + ":division",
	"department": EnterpriseSchema + ":department", "environment": NHISchema + ":environment",
	"tools": NHISchema + ":tools", "backupOwners": NHISchema + ":backupOwners",
}

// attributeError turns a refusal of an identity attribute's value (the
// policy declares another type or other values) into a SCIM 400
// invalidValue naming the User's attribute the value came from; other
// errors pass as they are.
func (sc SourceConfig) attributeError(err error) error {
	var ie *identity.Error
	if !errors.As(err, &ie) || ie.Code != identity.Invalid {
		return err
	}
	attr, ok := strings.CutPrefix(ie.Field, "attributes.")
	if !ok {
		return err
	}
	attr, _, _ = strings.Cut(attr, "[")
	path := sc.Attributes[attr]
	if sc.paths == nil {
		path = defaultPaths[attr]
	}
	if path == "" {
		path = ie.Field
	}
	return errf(400, "invalidValue", "%s (identity attribute %s): %s", path, attr, ie.Message)
}
