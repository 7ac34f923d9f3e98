package testsvc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Slapd names in a private OpenLDAP server.
const (
	SlapdSuffix  = "dc=jml,dc=test"
	SlapdAdminDN = "cn=admin," + SlapdSuffix
	SlapdPeople  = "ou=people," + SlapdSuffix
	SlapdGroups  = "ou=groups," + SlapdSuffix
)

// slapdConf is the server's configuration: an MDB database with the
// password policy overlay (default policy below, so that
// pwdAccountLockedTime locks an account), and ACLs under which a locked
// account can read nothing, not even on a connection it bound before the
// lock: LDAP has no command to close another client's connection.
const slapdConf = `{{tls}}include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {{dir}}/slapd.pid
argsfile {{dir}}/slapd.args

database mdb
suffix "{{suffix}}"
rootdn "{{admin}}"
rootpw {{password}}
directory {{dir}}/data
maxsize 268435456
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{{suffix}}"

access to attrs=userPassword
  by set="user/pwdAccountLockedTime" none
  by self write
  by anonymous auth
  by * none
access to *
  by set="user/pwdAccountLockedTime" none
  by users read
  by * none
`

// StartSlapd starts a private OpenLDAP server (Debian's slapd package) on
// a free port with its own data directory, seeded with the suffix,
// ou=people, ou=groups and a default password policy. Its URL is
// ldap://127.0.0.1:PORT; the administrator is SlapdAdminDN with the
// password Server.Password. With withTLS it also serves StartTLS and
// ldaps:// (Server.TLSURL) with a certificate from a CA in Server.TLS.CA.
func StartSlapd(withTLS ...bool) (*Server, error) {
	bin, err := exec.LookPath("slapd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/slapd"); serr != nil {
			return nil, fmt.Errorf("slapd not found: install Debian's slapd package (scripts/test.sh does)")
		}
		bin = "/usr/sbin/slapd"
	}
	s, err := newServer("slapd")
	if err != nil {
		return nil, err
	}
	dir := s.dir
	fail := func(err error) (*Server, error) {
		s.Stop()
		return nil, fmt.Errorf("private slapd: %w", err)
	}
	password := randomPassword()
	s.Password = password
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		return fail(err)
	}
	tlsConf := ""
	tlsPort := 0
	if len(withTLS) > 0 && withTLS[0] {
		if s.TLS, err = WriteTLSFiles(dir, os.Getuid(), os.Getgid()); err != nil {
			return fail(err)
		}
		if tlsPort, err = freePort(); err != nil {
			return fail(err)
		}
		tlsConf = "TLSCACertificateFile " + s.TLS.CA + "\nTLSCertificateFile " + s.TLS.Cert + "\nTLSCertificateKeyFile " + s.TLS.Key + "\n"
	}
	conf := strings.NewReplacer("{{tls}}", tlsConf, "{{dir}}", dir, "{{suffix}}", SlapdSuffix, "{{admin}}", SlapdAdminDN, "{{password}}", password).Replace(slapdConf)
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(conf), 0o600); err != nil {
		return fail(err)
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	url := "ldap://127.0.0.1:" + strconv.Itoa(port)
	listen := url + "/"
	if tlsPort != 0 {
		s.TLSURL = "ldaps://127.0.0.1:" + strconv.Itoa(tlsPort)
		listen += " " + s.TLSURL + "/"
	}
	// -d 0 keeps slapd in the foreground, so the test owns its process.
	if err := s.start(nil, bin, "-d", "0", "-f", filepath.Join(dir, "slapd.conf"), "-h", listen); err != nil {
		return fail(err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = url
	var conn *ldap.Conn
	err = s.waitFor(30*time.Second, func() error {
		c, err := ldap.DialURL(url)
		if err != nil {
			return err
		}
		if err := c.Bind(SlapdAdminDN, password); err != nil {
			c.Close()
			return err
		}
		conn = c
		return nil
	})
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	seed := []struct {
		dn    string
		attrs map[string][]string
	}{
		{SlapdSuffix, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"jml"}, "o": {"jml test"}}},
		{SlapdPeople, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"people"}}},
		{SlapdGroups, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"groups"}}},
		{"ou=policies," + SlapdSuffix, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"policies"}}},
		{"cn=default,ou=policies," + SlapdSuffix, map[string][]string{"objectClass": {"organizationalRole", "pwdPolicy"}, "cn": {"default"},
			"pwdAttribute": {"userPassword"}, "pwdLockout": {"TRUE"}}},
	}
	for _, e := range seed {
		req := ldap.NewAddRequest(e.dn, nil)
		for k, v := range e.attrs {
			req.Attribute(k, v)
		}
		if err := conn.Add(req); err != nil {
			return fail(fmt.Errorf("seed %s: %w", e.dn, err))
		}
	}
	return s, nil
}
