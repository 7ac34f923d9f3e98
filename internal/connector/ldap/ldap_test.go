package ldap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/connectortest"
	"github.com/jml-dev/jml/internal/testsvc"
)

var server *testsvc.Server

const (
	devs = "cn=devs," + testsvc.SlapdGroups
	ops  = "cn=ops," + testsvc.SlapdGroups
	misc = "cn=misc," + testsvc.SlapdGroups
	// placeholder keeps groupOfNames groups non-empty.
	placeholder = "cn=placeholder," + testsvc.SlapdSuffix
)

func TestMain(m *testing.M) {
	s, err := testsvc.StartSlapd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "connector/ldap tests need a private OpenLDAP server:", err)
		os.Exit(1)
	}
	server = s
	l := adminConn()
	for _, g := range []string{devs, ops, misc} {
		req := ldap.NewAddRequest(g, nil)
		req.Attribute("objectClass", []string{"groupOfNames"})
		req.Attribute("member", []string{placeholder})
		if err := l.Add(req); err != nil {
			fmt.Fprintln(os.Stderr, "seed", g, err)
			os.Exit(1)
		}
	}
	l.Close()
	code := m.Run()
	s.Stop()
	os.Exit(code)
}

func adminConn() *ldap.Conn {
	l, err := ldap.DialURL(server.URL)
	if err != nil {
		panic(err)
	}
	if err := l.Bind(testsvc.SlapdAdminDN, server.Password); err != nil {
		panic(err)
	}
	return l
}

var testTargets = map[string]map[string]any{
	"devs": {"group": devs},
	"ops":  {"group": ops},
}

func open(t testing.TB) *Conn {
	t.Helper()
	c, err := Open(context.Background(), connector.Config{System: "dir", Type: Type,
		Settings: map[string]any{"url": server.URL, "bindDN": testsvc.SlapdAdminDN, "bindPassword": "env:LDAP_PW", "baseDN": testsvc.SlapdPeople},
		Targets:  testTargets,
		Getenv: func(k string) string {
			if k == "LDAP_PW" {
				return server.Password
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Conn)
}

func userDN(name string) string { return "uid=" + ldap.EscapeDN(name) + "," + testsvc.SlapdPeople }

type session struct {
	l  *ldap.Conn
	dn string
}

// Check reads the session's own entry: a locked entry can read nothing
// under the test server's ACLs.
func (s session) Check(context.Context) error {
	res, err := s.l.Search(ldap.NewSearchRequest(s.dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"cn"}, nil))
	if err != nil {
		return err
	}
	if len(res.Entries) == 0 {
		return errors.New("own entry not readable")
	}
	return nil
}

func (s session) Close() { s.l.Close() }

func login(_ context.Context, name, secret string) (connectortest.Session, error) {
	l, err := ldap.DialURL(server.URL)
	if err != nil {
		return nil, err
	}
	dn := userDN(name)
	if err := l.Bind(dn, secret); err != nil {
		l.Close()
		return nil, err
	}
	return session{l, dn}, nil
}

func TestConformance(t *testing.T) {
	c := open(t)
	connectortest.Run(t, connectortest.Harness{
		Conn:         c,
		Entitlements: [2]string{"devs", "ops"},
		Prefix:       "ct-",
		Login:        login,
		// The connector's rule allows names of up to 512 bytes; this slapd
		// (MDB) refuses an entry whose name is longer than about 240 with
		// result code 80, "Other".
		ServerRefuses: func(name string) bool { return len(name) > 240 },
		CreateForeign: func(_ context.Context, name string) error {
			l := adminConn()
			defer l.Close()
			req := ldap.NewAddRequest(userDN(name), nil)
			req.Attribute("objectClass", []string{"inetOrgPerson"})
			for _, a := range []string{"uid", "cn", "sn"} {
				req.Attribute(a, []string{name})
			}
			req.Attribute("userPassword", []string{"foreign-pw"})
			if err := l.Add(req); err != nil {
				return err
			}
			m := ldap.NewModifyRequest(devs, nil)
			m.Add("member", []string{userDN(name)})
			return l.Modify(m)
		},
	})
}

// TestDisableLeavesEveryGroup: disable removes the entry from groups jml
// does not manage too, and locks it with ppolicy.
func TestDisableLeavesEveryGroup(t *testing.T) {
	c := open(t)
	ctx := context.Background()
	a := connector.Account{Name: "leaver"}
	t.Cleanup(func() { c.DeleteAccount(ctx, connector.Op{}, a) })
	if err := c.EnsureAccount(ctx, connector.Op{}, a); err != nil {
		t.Fatal(err)
	}
	if err := c.Grant(ctx, connector.Op{}, a, "devs"); err != nil {
		t.Fatal(err)
	}
	l := adminConn()
	defer l.Close()
	m := ldap.NewModifyRequest(misc, nil)
	m.Add("member", []string{userDN("leaver")})
	if err := l.Modify(m); err != nil {
		t.Fatal(err)
	}
	states, err := c.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Name == "leaver" && (fmt.Sprint(s.Entitlements) != "[devs]" || fmt.Sprint(s.Other) != "[group:"+misc+"]") {
			t.Fatalf("before disable: %+v", s)
		}
	}
	if err := c.DisableAccount(ctx, connector.Op{}, a); err != nil {
		t.Fatal(err)
	}
	res, err := l.Search(ldap.NewSearchRequest(testsvc.SlapdGroups, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(member="+ldap.EscapeFilter(userDN("leaver"))+")", []string{"1.1"}, nil))
	if err != nil || len(res.Entries) != 0 {
		t.Fatalf("after disable the entry is still in %d groups (%v)", len(res.Entries), err)
	}
	res, err = l.Search(ldap.NewSearchRequest(userDN("leaver"), ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"pwdAccountLockedTime", "userPassword"}, nil))
	if err != nil || res.Entries[0].GetAttributeValue("pwdAccountLockedTime") != permanentLock || res.Entries[0].GetAttributeValue("userPassword") != "" {
		t.Fatalf("after disable: %v, %v", err, res.Entries)
	}
}

func TestConfigErrors(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"url": "ldap://h", "bindDN": "cn=a,dc=x", "bindPassword": "env:P", "baseDN": "ou=p,dc=x"}
	}
	with := func(k string, v any) map[string]any { m := base(); m[k] = v; return m }
	for _, tc := range []struct {
		settings map[string]any
		targets  map[string]map[string]any
		want     string
	}{
		{with("url", "http://h"), nil, "url must start with ldap://"},
		{with("bindPassword", "secret"), nil, "must be a reference"},
		{with("baseDN", "not a dn"), nil, "baseDN"},
		{with("lockMode", "freeze"), nil, "lockMode"},
		{with("memberAttribute", "member)(x"), nil, "not an attribute name"},
		{base(), map[string]map[string]any{"e": {"group": "nope"}}, "is not a DN"},
	} {
		_, err := Open(context.Background(), connector.Config{System: "dir", Type: Type, Settings: tc.settings, Targets: tc.targets, CheckOnly: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%v) = %v, want error containing %q", tc.settings, err, tc.want)
		}
	}
}

// TestTLS: ldaps:// and StartTLS, each verified against the CA the
// settings name; a server another CA signed is refused.
func TestTLS(t *testing.T) {
	srv, err := testsvc.StartSlapd(true)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	open := func(url string, startTLS bool, ca string) *Conn {
		t.Helper()
		c, err := Open(context.Background(), connector.Config{System: "dir", Type: Type,
			Settings: map[string]any{"url": url, "startTLS": startTLS, "tls": map[string]any{"caFile": ca},
				"bindDN": testsvc.SlapdAdminDN, "bindPassword": "env:P", "baseDN": testsvc.SlapdPeople},
			Getenv: func(string) string { return srv.Password }})
		if err != nil {
			t.Fatal(err)
		}
		return c.(*Conn)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		url      string
		startTLS bool
	}{{srv.TLSURL, false}, {srv.URL, true}} {
		c := open(tc.url, tc.startTLS, srv.TLS.CA)
		if err := c.EnsureAccount(ctx, connector.Op{}, connector.Account{Name: "tls-user"}); err != nil {
			t.Fatalf("%s (startTLS %v): %v", tc.url, tc.startTLS, err)
		}
		c.Close()
	}
	other, err := testsvc.WriteTLSFiles(t.TempDir(), os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	bad := open(srv.TLSURL, false, other.CA)
	defer bad.Close()
	if err := bad.EnsureAccount(ctx, connector.Op{}, connector.Account{Name: "tls-user2"}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server signed by another CA was accepted: %v", err)
	}
}
