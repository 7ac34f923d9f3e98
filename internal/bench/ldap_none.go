//go:build !benchsvc

package bench

import "errors"

// systemsAvailable: a build without the benchsvc tag has no directory to
// start, so the systems part is left out of a default run.
const systemsAvailable = false

// errNoSystems says how to run the systems part.
var errNoSystems = errors.New("the systems part starts a private slapd for its LDAP system, and this build has no test servers (jml ships none): run it from a source checkout with go run -tags benchsvc ./cmd/jml bench --only systems")

func startLDAP() (*ldapServer, error) { return nil, errNoSystems }
