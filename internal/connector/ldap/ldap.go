// Package ldap is the connector for LDAP directories (tested against
// OpenLDAP). An account is an entry RDN=name under a base DN with
// configurable object classes (inetOrgPerson by default); an entitlement
// is membership in a group (groupOfNames by default; the member attribute
// and whether it holds DNs or names are configurable); a credential is
// userPassword, stored as a salted hash ({SSHA}) computed by jml.
//
// Disable locks the entry (pwdAccountLockedTime with the ppolicy overlay,
// as OpenLDAP does it), removes it from every group under the group base,
// and deletes its password. LDAP cannot close another client's
// connection, so cutting a live session is the directory's ACL's job:
// docs/connectors.md gives the OpenLDAP ACL under which a locked entry can
// read nothing on connections it bound earlier; the tests run with it.
//
// Active Directory (lockMode: ad) sets userAccountControl's
// ACCOUNTDISABLE bit instead; it is documented, not tested here (no AD
// server can run on the test machines).
//
// Names are escaped as DN values (RFC 4514) and filter values (RFC 4515)
// by go-ldap; no name is spliced into a DN or filter unescaped.
package ldap

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
)

// Type is the connector type name in a policy.
const Type = "ldap"

type settings struct {
	URL          string        `yaml:"url"` // ldap://host:389 or ldaps://host:636
	StartTLS     bool          `yaml:"startTLS"`
	TLS          connector.TLS `yaml:"tls"`
	BindDN       string        `yaml:"bindDN"`
	BindPassword string        `yaml:"bindPassword"` // env:NAME or file:PATH
	// BaseDN holds the accounts; GroupBaseDN the groups whose membership
	// disable removes (default: BaseDN's parent).
	BaseDN        string   `yaml:"baseDN"`
	GroupBaseDN   string   `yaml:"groupBaseDN"`
	RDNAttribute  string   `yaml:"rdnAttribute"`  // default uid
	ObjectClasses []string `yaml:"objectClasses"` // default [inetOrgPerson]
	// MemberAttribute of groups (default member), holding entry DNs, or
	// account names when MemberIsName (posixGroup's memberUid).
	MemberAttribute string `yaml:"memberAttribute"`
	MemberIsName    bool   `yaml:"memberIsName"`
	// LockMode: ppolicy (default: pwdAccountLockedTime), ad
	// (userAccountControl), none (password removal only).
	LockMode string `yaml:"lockMode"`
}

type target struct {
	Group string `yaml:"group"` // the group's DN
}

// permanentLock is ppolicy's value for "locked until an administrator
// unlocks".
const permanentLock = "000001010000Z"

// adDisabled is userAccountControl's ACCOUNTDISABLE bit.
const adDisabled = 0x2

// Conn is an LDAP connector. It keeps a few bound connections for reuse;
// one that the server closed meanwhile is replaced by a fresh one and the
// operation tried once more (every operation here is idempotent).
type Conn struct {
	idle    chan *ldap.Conn
	st      settings
	groups  map[string]string // entitlement -> group DN
	tls     *tls.Config
	bindPW  string
	timeout time.Duration
}

// Open validates cfg and returns a connector.
func Open(_ context.Context, cfg connector.Config) (connector.Connector, error) {
	var st settings
	if err := connector.Decode(cfg.Settings, &st); err != nil {
		return nil, cfg.Errorf("config: %v", err)
	}
	if !strings.HasPrefix(st.URL, "ldap://") && !strings.HasPrefix(st.URL, "ldaps://") {
		return nil, cfg.Errorf("url must start with ldap:// or ldaps://")
	}
	if st.StartTLS && strings.HasPrefix(st.URL, "ldaps://") {
		return nil, cfg.Errorf("startTLS is for ldap:// URLs; ldaps:// is TLS already")
	}
	base, err := ldap.ParseDN(st.BaseDN)
	if err != nil || st.BaseDN == "" {
		return nil, cfg.Errorf("baseDN: %q is not a DN", st.BaseDN)
	}
	if st.GroupBaseDN == "" {
		if len(base.RDNs) < 2 {
			return nil, cfg.Errorf("groupBaseDN is required when baseDN has no parent")
		}
		st.GroupBaseDN = (&ldap.DN{RDNs: base.RDNs[1:]}).String()
	} else if _, err := ldap.ParseDN(st.GroupBaseDN); err != nil {
		return nil, cfg.Errorf("groupBaseDN: %q is not a DN", st.GroupBaseDN)
	}
	if st.BindDN == "" {
		return nil, cfg.Errorf("bindDN is required")
	}
	if _, err := ldap.ParseDN(st.BindDN); err != nil {
		return nil, cfg.Errorf("bindDN: %q is not a DN", st.BindDN)
	}
	if st.RDNAttribute == "" {
		st.RDNAttribute = "uid"
	}
	if len(st.ObjectClasses) == 0 {
		st.ObjectClasses = []string{"inetOrgPerson"}
	}
	if st.MemberAttribute == "" {
		st.MemberAttribute = "member"
	}
	for what, v := range map[string]string{"rdnAttribute": st.RDNAttribute, "memberAttribute": st.MemberAttribute} {
		if !validAttr(v) {
			return nil, cfg.Errorf("%s: %q is not an attribute name", what, v)
		}
	}
	switch st.LockMode {
	case "":
		st.LockMode = "ppolicy"
	case "ppolicy", "ad", "none":
	default:
		return nil, cfg.Errorf("lockMode: %q is not one of ppolicy, ad, none", st.LockMode)
	}
	c := &Conn{st: st, groups: map[string]string{}, timeout: 10 * time.Second, idle: make(chan *ldap.Conn, 4)}
	targets, err := connector.DecodeTargets(cfg, func(tg target) error {
		if _, err := ldap.ParseDN(tg.Group); err != nil || tg.Group == "" {
			return fmt.Errorf("group: %q is not a DN", tg.Group)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name, tg := range targets {
		c.groups[name] = tg.Group
	}
	if err := cfg.CheckRef("bindPassword", st.BindPassword); err != nil {
		return nil, err
	}
	if cfg.CheckOnly {
		return nil, nil
	}
	if c.bindPW, err = cfg.Secret("bindPassword", st.BindPassword); err != nil {
		return nil, err
	}
	if strings.HasPrefix(st.URL, "ldaps://") || st.StartTLS {
		host := ""
		if u, err := url.Parse(st.URL); err == nil {
			host = u.Hostname()
		}
		if c.tls, err = st.TLS.ClientConfig(host); err != nil {
			return nil, cfg.Errorf("%v", err)
		}
	}
	return c, nil
}

func validAttr(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '-')) {
			return false
		}
	}
	return true
}

// dial connects and binds as the connector's account. (go-ldap dials
// without a context; the dial and every operation have c.timeout.)
func (c *Conn) dial(_ context.Context) (*ldap.Conn, error) {
	opts := []ldap.DialOpt{ldap.DialWithDialer(&net.Dialer{Timeout: c.timeout})}
	if c.tls != nil && strings.HasPrefix(c.st.URL, "ldaps://") {
		opts = append(opts, ldap.DialWithTLSConfig(c.tls))
	}
	l, err := ldap.DialURL(c.st.URL, opts...)
	if err != nil {
		return nil, err
	}
	l.SetTimeout(c.timeout)
	if c.st.StartTLS {
		if err := l.StartTLS(c.tls); err != nil {
			l.Close()
			return nil, err
		}
	}
	if err := l.Bind(c.st.BindDN, c.bindPW); err != nil {
		l.Close()
		return nil, fmt.Errorf("bind as %s: %w", c.st.BindDN, err)
	}
	return l, nil
}

func (c *Conn) with(ctx context.Context, fn func(*ldap.Conn) error) error {
	var l *ldap.Conn
	select {
	case l = <-c.idle:
		if l.IsClosing() {
			l.Close()
			l = nil
		}
	default:
	}
	reused := l != nil
	if !reused {
		var err error
		if l, err = c.dial(ctx); err != nil {
			return err
		}
	}
	err := fn(l)
	if err != nil && reused && is(err, ldap.ErrorNetwork) {
		l.Close()
		if l, err = c.dial(ctx); err != nil {
			return err
		}
		err = fn(l)
	}
	if err != nil && is(err, ldap.ErrorNetwork) {
		l.Close()
		return err
	}
	select {
	case c.idle <- l:
	default:
		l.Close()
	}
	return err
}

// Close closes the idle connections.
func (c *Conn) Close() error {
	for {
		select {
		case l := <-c.idle:
			l.Close()
		default:
			return nil
		}
	}
}

// dn returns the account's DN, its RDN value escaped.
func (c *Conn) dn(a connector.Account) (string, error) {
	if a.Name == "" || !utf8.ValidString(a.Name) || strings.ContainsRune(a.Name, 0) || len(a.Name) > 512 {
		return "", &identity.Error{Code: identity.Invalid, Field: "account", Message: fmt.Sprintf("%q is not a name for a directory entry (UTF-8 text, at most 512 bytes)", a.Name)}
	}
	return c.st.RDNAttribute + "=" + ldap.EscapeDN(a.Name) + "," + c.st.BaseDN, nil
}

// CheckName implements connector.NameChecker.
func (c *Conn) CheckName(name string) error {
	_, err := c.dn(connector.Account{Name: name})
	return err
}

var _ connector.NameChecker = (*Conn)(nil)

func (c *Conn) memberValue(dn, name string) string {
	if c.st.MemberIsName {
		return name
	}
	return dn
}

func is(err error, codes ...uint16) bool {
	for _, code := range codes {
		if ldap.IsErrorWithCode(err, code) {
			return true
		}
	}
	return false
}

func (c *Conn) EnsureAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	dn, err := c.dn(a)
	if err != nil {
		return err
	}
	return c.with(ctx, func(l *ldap.Conn) error {
		req := ldap.NewAddRequest(dn, nil)
		req.Attribute("objectClass", c.st.ObjectClasses)
		req.Attribute(c.st.RDNAttribute, []string{a.Name})
		if slices.Contains(c.st.ObjectClasses, "inetOrgPerson") || slices.Contains(c.st.ObjectClasses, "person") {
			req.Attribute("cn", []string{a.Name})
			req.Attribute("sn", []string{a.Name})
		}
		err := l.Add(req)
		if err == nil {
			return nil
		}
		if !is(err, ldap.LDAPResultEntryAlreadyExists) {
			return fmt.Errorf("add %s: %w", dn, err)
		}
		return c.unlock(l, dn)
	})
}

func (c *Conn) unlock(l *ldap.Conn, dn string) error {
	switch c.st.LockMode {
	case "ppolicy":
		m := ldap.NewModifyRequest(dn, nil)
		m.Delete("pwdAccountLockedTime", nil)
		if err := l.Modify(m); err != nil && !is(err, ldap.LDAPResultNoSuchAttribute) {
			return err
		}
	case "ad":
		return c.setUAC(l, dn, false)
	}
	return nil
}

// setUAC sets or clears ACCOUNTDISABLE in userAccountControl.
func (c *Conn) setUAC(l *ldap.Conn, dn string, disable bool) error {
	res, err := l.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"userAccountControl"}, nil))
	if err != nil {
		return err
	}
	uac, _ := strconv.Atoi(res.Entries[0].GetAttributeValue("userAccountControl"))
	if disable {
		uac |= adDisabled
	} else {
		uac &^= adDisabled
	}
	m := ldap.NewModifyRequest(dn, nil)
	m.Replace("userAccountControl", []string{strconv.Itoa(uac)})
	return l.Modify(m)
}

func (c *Conn) DisableAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	dn, err := c.dn(a)
	if err != nil {
		return err
	}
	return c.with(ctx, func(l *ldap.Conn) error {
		// Two chains at once on the one connection (go-ldap multiplexes
		// requests): the password, then the lock (OpenLDAP's ppolicy
		// clears pwdAccountLockedTime when a password changes, so the lock
		// must come after); and the groups.
		var wg sync.WaitGroup
		var lockErr, groupErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			groupErr = c.leaveAllGroups(l, dn, a.Name)
		}()
		lockErr = func() error {
			m := ldap.NewModifyRequest(dn, nil)
			m.Delete("userPassword", nil)
			if err := l.Modify(m); err != nil {
				if is(err, ldap.LDAPResultNoSuchObject) {
					return nil
				}
				if !is(err, ldap.LDAPResultNoSuchAttribute) {
					return fmt.Errorf("remove password: %w", err)
				}
			}
			switch c.st.LockMode {
			case "ppolicy":
				m := ldap.NewModifyRequest(dn, nil)
				m.Replace("pwdAccountLockedTime", []string{permanentLock})
				if err := l.Modify(m); err != nil && !is(err, ldap.LDAPResultNoSuchObject) {
					return fmt.Errorf("lock: %w", err)
				}
			case "ad":
				if err := c.setUAC(l, dn, true); err != nil && !is(err, ldap.LDAPResultNoSuchObject) {
					return fmt.Errorf("lock: %w", err)
				}
			}
			return nil
		}()
		wg.Wait()
		return errors.Join(lockErr, groupErr)
	})
}

func (c *Conn) leaveAllGroups(l *ldap.Conn, dn, name string) error {
	value := c.memberValue(dn, name)
	filter := "(" + c.st.MemberAttribute + "=" + ldap.EscapeFilter(value) + ")"
	res, err := l.SearchWithPaging(ldap.NewSearchRequest(c.st.GroupBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, []string{"1.1"}, nil), 500)
	if err != nil {
		return fmt.Errorf("find groups: %w", err)
	}
	errs := make([]error, len(res.Entries))
	var wg sync.WaitGroup
	for i, g := range res.Entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.removeMember(l, g.DN, value)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Conn) removeMember(l *ldap.Conn, group, value string) error {
	m := ldap.NewModifyRequest(group, nil)
	m.Delete(c.st.MemberAttribute, []string{value})
	err := l.Modify(m)
	switch {
	case err == nil, is(err, ldap.LDAPResultNoSuchAttribute, ldap.LDAPResultNoSuchObject):
		return nil
	case is(err, ldap.LDAPResultObjectClassViolation):
		return fmt.Errorf("remove from %s: the group would be left with no %s, which its object class forbids; give it a placeholder member", group, c.st.MemberAttribute)
	}
	return fmt.Errorf("remove from %s: %w", group, err)
}

// RevokeAll implements connector.RevokeAller: DisableAccount already
// removes the password and leaves every group.
func (c *Conn) RevokeAll(ctx context.Context, op connector.Op, a connector.Account) error {
	return c.DisableAccount(ctx, op, a)
}

// DisableRemovesAccess implements connector.DisableResetter: a disabled
// entry leaves every group and loses its password.
func (c *Conn) DisableRemovesAccess() bool { return true }

var _ connector.DisableResetter = (*Conn)(nil)

// AccountExists implements connector.Prober.
func (c *Conn) AccountExists(ctx context.Context, a connector.Account) (bool, error) {
	dn, err := c.dn(a)
	if err != nil {
		return false, err
	}
	found := false
	err = c.with(ctx, func(l *ldap.Conn) error {
		_, err := l.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		switch {
		case err == nil:
			found = true
			return nil
		case is(err, ldap.LDAPResultNoSuchObject):
			return nil
		}
		return err
	})
	return found, err
}

// Adopt implements connector.Adopter: RevokeAll (locked, no password,
// in no group).
func (c *Conn) Adopt(ctx context.Context, op connector.Op, a connector.Account) error {
	return c.RevokeAll(ctx, op, a)
}

var (
	_ connector.Prober  = (*Conn)(nil)
	_ connector.Adopter = (*Conn)(nil)
)

func (c *Conn) DeleteAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	dn, err := c.dn(a)
	if err != nil {
		return err
	}
	return c.with(ctx, func(l *ldap.Conn) error {
		if err := c.leaveAllGroups(l, dn, a.Name); err != nil {
			return err
		}
		if err := l.Del(ldap.NewDelRequest(dn, nil)); err != nil && !is(err, ldap.LDAPResultNoSuchObject) {
			return err
		}
		return nil
	})
}

func (c *Conn) group(entitlement string) (string, error) {
	g, ok := c.groups[entitlement]
	if !ok {
		return "", identity.Errorf(identity.Invalid, "entitlement %q has no target in this system", entitlement)
	}
	return g, nil
}

func (c *Conn) Grant(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	group, err := c.group(entitlement)
	if err != nil {
		return err
	}
	dn, err := c.dn(a)
	if err != nil {
		return err
	}
	return c.with(ctx, func(l *ldap.Conn) error {
		if _, err := l.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"1.1"}, nil)); err != nil {
			if is(err, ldap.LDAPResultNoSuchObject) {
				return fmt.Errorf("grant %s: account %q does not exist", entitlement, a.Name)
			}
			return err
		}
		m := ldap.NewModifyRequest(group, nil)
		m.Add(c.st.MemberAttribute, []string{c.memberValue(dn, a.Name)})
		if err := l.Modify(m); err != nil && !is(err, ldap.LDAPResultAttributeOrValueExists) {
			return fmt.Errorf("add to %s: %w", group, err)
		}
		return nil
	})
}

func (c *Conn) Revoke(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	group, err := c.group(entitlement)
	if err != nil {
		return err
	}
	dn, err := c.dn(a)
	if err != nil {
		return err
	}
	return c.with(ctx, func(l *ldap.Conn) error { return c.removeMember(l, group, c.memberValue(dn, a.Name)) })
}

// ssha returns the {SSHA} form of a password: SHA-1 over the password and
// an 8-byte random salt, then the salt, base64-encoded; what OpenLDAP
// checks binds against without any module.
func ssha(password string) (string, error) {
	salt := make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	h := sha1.New()
	h.Write([]byte(password))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...)), nil
}

func (c *Conn) SetCredential(ctx context.Context, _ connector.Op, a connector.Account, cred connector.Credential) error {
	dn, err := c.dn(a)
	if err != nil {
		return err
	}
	hashed, err := ssha(cred.Secret)
	if err != nil {
		return err
	}
	return c.with(ctx, func(l *ldap.Conn) error {
		m := ldap.NewModifyRequest(dn, nil)
		m.Replace("userPassword", []string{hashed})
		if err := l.Modify(m); err != nil {
			if is(err, ldap.LDAPResultNoSuchObject) {
				return fmt.Errorf("set password: account %q does not exist", a.Name)
			}
			return err
		}
		return nil
	})
}

func (c *Conn) RevokeCredential(ctx context.Context, _ connector.Op, a connector.Account, _ string) error {
	dn, err := c.dn(a)
	if err != nil {
		return err
	}
	return c.with(ctx, func(l *ldap.Conn) error {
		m := ldap.NewModifyRequest(dn, nil)
		m.Delete("userPassword", nil)
		if err := l.Modify(m); err != nil && !is(err, ldap.LDAPResultNoSuchAttribute, ldap.LDAPResultNoSuchObject) {
			return err
		}
		return nil
	})
}

// ListAccounts lists the entries directly under the base DN that carry
// the first configured object class, with paged searches, and the groups
// under the group base that list them.
func (c *Conn) ListAccounts(ctx context.Context) ([]connector.AccountState, error) {
	var out []connector.AccountState
	err := c.with(ctx, func(l *ldap.Conn) error {
		attrs := []string{c.st.RDNAttribute, "pwdAccountLockedTime", "userAccountControl"}
		res, err := l.SearchWithPaging(ldap.NewSearchRequest(c.st.BaseDN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass="+ldap.EscapeFilter(c.st.ObjectClasses[0])+")", attrs, nil), 1000)
		if err != nil {
			return err
		}
		byMember := map[string]int{} // member value (normalised DN or name) -> index
		for _, e := range res.Entries {
			dn, err := ldap.ParseDN(e.DN)
			if err != nil || len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) != 1 {
				continue
			}
			name := dn.RDNs[0].Attributes[0].Value
			st := connector.AccountState{Name: name}
			switch c.st.LockMode {
			case "ppolicy":
				st.Disabled = e.GetAttributeValue("pwdAccountLockedTime") != ""
			case "ad":
				uac, _ := strconv.Atoi(e.GetAttributeValue("userAccountControl"))
				st.Disabled = uac&adDisabled != 0
			}
			key := name
			if !c.st.MemberIsName {
				key = normDN(e.DN)
			}
			byMember[key] = len(out)
			out = append(out, st)
		}
		byGroup := map[string][]string{} // normalised group DN -> entitlements
		for ent, g := range c.groups {
			byGroup[normDN(g)] = append(byGroup[normDN(g)], ent)
		}
		groups, err := l.SearchWithPaging(ldap.NewSearchRequest(c.st.GroupBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"("+c.st.MemberAttribute+"=*)", []string{c.st.MemberAttribute}, nil), 500)
		if err != nil {
			return fmt.Errorf("list groups: %w", err)
		}
		for _, g := range groups.Entries {
			ents, managed := byGroup[normDN(g.DN)]
			for _, v := range g.GetAttributeValues(c.st.MemberAttribute) {
				key := v
				if !c.st.MemberIsName {
					key = normDN(v)
				}
				i, ok := byMember[key]
				if !ok {
					continue
				}
				if managed {
					out[i].Entitlements = append(out[i].Entitlements, ents...)
				} else {
					out[i].Other = append(out[i].Other, "group:"+g.DN)
				}
			}
		}
		return nil
	})
	for i := range out {
		slices.Sort(out[i].Entitlements)
		out[i].Entitlements = slices.Compact(out[i].Entitlements)
		slices.Sort(out[i].Other)
	}
	return out, err
}

// normDN gives DNs one spelling for comparison: parsed and re-serialised,
// attribute types in lower case. (Values compare as the server returned
// them; OpenLDAP keeps their case.)
func normDN(s string) string {
	dn, err := ldap.ParseDN(s)
	if err != nil {
		return s
	}
	var parts []string
	for _, rdn := range dn.RDNs {
		var avs []string
		for _, a := range rdn.Attributes {
			avs = append(avs, strings.ToLower(a.Type)+"="+ldap.EscapeDN(a.Value))
		}
		parts = append(parts, strings.Join(avs, "+"))
	}
	return strings.Join(parts, ",")
}

var (
	_ connector.CredentialSetter = (*Conn)(nil)
	_ connector.Lister           = (*Conn)(nil)
)
