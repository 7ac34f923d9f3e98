package bench

// ldapServer is the directory the systems part revokes in: a private
// slapd started for the run (ldap_private.go), which only a build with the
// benchsvc tag contains. jml itself ships no test servers, and builds on
// every platform Go targets.
type ldapServer struct {
	URL, AdminDN, Password string
	People, Groups, Suffix string
	stop                   func() error
}

// devsGroup is the directory group the systems part's entitlement names.
func (l *ldapServer) devsGroup() string { return "cn=jmlbench-devs," + l.Groups }
