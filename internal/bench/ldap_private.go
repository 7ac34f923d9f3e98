//go:build benchsvc

package bench

import "github.com/jml-dev/jml/internal/testsvc"

// systemsAvailable: this build can start the systems part's directory.
const systemsAvailable = true

func startLDAP() (*ldapServer, error) {
	s, err := testsvc.StartSlapd()
	if err != nil {
		return nil, err
	}
	return &ldapServer{URL: s.URL, AdminDN: testsvc.SlapdAdminDN, Password: s.Password, People: testsvc.SlapdPeople,
		Groups: testsvc.SlapdGroups, Suffix: testsvc.SlapdSuffix, stop: s.Stop}, nil
}
