// Package invariant checks jml's central promise from outside, for tests:
// once jml has quiesced, an identity that is not active has no enabled
// account, working secret or entitlement in any system, and an active one
// holds in each system exactly what jml records. It reads every system as
// its administrator, never through jml.
//
// It is test support: the engine never imports it.
package invariant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-ldap/ldap/v3"
	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// Held is what one system holds for an account.
type Held struct {
	Exists, Enabled, Secret bool
	Entitlements            int
	// SecretOpaque says the system always stores some secret for an
	// account (MariaDB keeps jml's unusable hash when none was issued), so
	// whether it is one jml issued cannot be told from outside. Only an
	// enabled account's Secret counts then.
	SecretOpaque bool
}

func (h Held) String() string {
	return fmt.Sprintf("exists=%v enabled=%v secret=%v entitlements=%d", h.Exists, h.Enabled, h.Secret, h.Entitlements)
}

// Target reads what one system holds for an account.
type Target interface {
	Read(ctx context.Context, account string) (Held, error)
}

// Redis reads ACL users. Entitlements are the user's selectors.
type Redis struct{ Client *goredis.Client }

func (r Redis) Read(ctx context.Context, account string) (Held, error) {
	var h Held
	res, err := r.Client.Do(ctx, "ACL", "GETUSER", account).Result()
	switch {
	case errors.Is(err, goredis.Nil) || (err == nil && res == nil):
		return h, nil
	case err != nil:
		return h, fmt.Errorf("redis ACL GETUSER %s: %w", account, err)
	}
	fields, ok := res.([]any)
	if !ok {
		return h, fmt.Errorf("redis ACL GETUSER %s: reply %T (use RESP2)", account, res)
	}
	h.Exists = true
	for i := 0; i+1 < len(fields); i += 2 {
		list, _ := fields[i+1].([]any)
		switch fields[i] {
		case "flags":
			for _, f := range list {
				h.Enabled = h.Enabled || f == "on"
			}
		case "passwords":
			h.Secret = len(list) > 0
		case "selectors":
			h.Entitlements = len(list)
		}
	}
	return h, nil
}

// Postgres reads roles (as a superuser, for pg_authid). Entitlements are
// memberships in Roles.
type Postgres struct {
	URL   string
	Roles []string
}

func (p Postgres) Read(ctx context.Context, account string) (Held, error) {
	var h Held
	c, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		return h, err
	}
	defer c.Close(ctx)
	err = c.QueryRow(ctx, `SELECT rolcanlogin, rolpassword IS NOT NULL,
		(SELECT count(*) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = a.oid AND g.rolname = ANY($2))
		FROM pg_authid a WHERE rolname = $1`, account, p.Roles).Scan(&h.Enabled, &h.Secret, &h.Entitlements)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return h, nil
	case err != nil:
		return h, fmt.Errorf("postgres role %s: %w", account, err)
	}
	h.Exists = true
	return h, nil
}

// MariaDB reads accounts user@Host. Entitlements are schema privileges.
type MariaDB struct {
	DB   *sql.DB
	Host string
}

func (m MariaDB) Read(ctx context.Context, account string) (Held, error) {
	h := Held{SecretOpaque: true}
	var locked, auth sql.NullString
	err := m.DB.QueryRowContext(ctx, `SELECT JSON_VALUE(Priv, '$.account_locked'), JSON_VALUE(Priv, '$.authentication_string')
		FROM mysql.global_priv WHERE User = ? AND Host = ?`, account, m.Host).Scan(&locked, &auth)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return h, nil
	case err != nil:
		return h, fmt.Errorf("mariadb user %s: %w", account, err)
	}
	h.Exists, h.Enabled = true, locked.String != "1" && locked.String != "true"
	h.Secret = h.Enabled && auth.String != ""
	grantee := "'" + account + "'@'" + m.Host + "'"
	err = m.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?", grantee).Scan(&h.Entitlements)
	return h, err
}

// LDAP reads entries RDNAttribute=account,People as BindDN. An entry is
// enabled unless ppolicy locked it (pwdAccountLockedTime); its
// entitlements are the groups under Groups that list it as a member.
type LDAP struct {
	URL, BindDN, Password string
	People, Groups        string
	RDNAttribute          string // default uid
}

func (d LDAP) Read(ctx context.Context, account string) (Held, error) {
	var h Held
	l, err := ldap.DialURL(d.URL)
	if err != nil {
		return h, err
	}
	defer l.Close()
	if err := l.Bind(d.BindDN, d.Password); err != nil {
		return h, err
	}
	rdn := d.RDNAttribute
	if rdn == "" {
		rdn = "uid"
	}
	dn := rdn + "=" + ldap.EscapeDN(account) + "," + d.People
	res, err := l.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)",
		[]string{"userPassword", "pwdAccountLockedTime"}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("ldap %s: %w", dn, err)
	}
	if len(res.Entries) == 1 {
		e := res.Entries[0]
		h.Exists = true
		h.Enabled = e.GetAttributeValue("pwdAccountLockedTime") == ""
		h.Secret = len(e.GetRawAttributeValues("userPassword")) > 0
	}
	groups, err := l.Search(ldap.NewSearchRequest(d.Groups, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(member="+ldap.EscapeFilter(dn)+")", []string{"1.1"}, nil))
	if err != nil {
		return h, fmt.Errorf("ldap groups of %s: %w", dn, err)
	}
	h.Entitlements = len(groups.Entries)
	return h, nil
}

// Recorded is what jml's store says of an identity.
type Recorded struct {
	Identity    *identity.Identity // State None when jml has none
	Grants      []identity.Grant
	Credentials []identity.Credential // active ones
	Accounts    []identity.Account
}

// Read returns what st records of the identity (source, externalID).
func Read(ctx context.Context, st store.Store, source, externalID string) (*Recorded, error) {
	r := &Recorded{}
	err := st.View(ctx, func(tx store.Tx) error {
		id, err := tx.GetIdentityByExternalID(ctx, source, externalID)
		if store.IsNotFound(err) {
			r.Identity = &identity.Identity{State: identity.None, ExternalID: externalID}
			return nil
		}
		if err != nil {
			return err
		}
		r.Identity = id
		if r.Grants, err = tx.ListGrants(ctx, id.ID); err != nil {
			return err
		}
		if r.Credentials, err = tx.ListCredentials(ctx, id.ID, true); err != nil {
			return err
		}
		r.Accounts, err = tx.ListAccounts(ctx, id.ID)
		return err
	})
	return r, err
}

// Want is what system should hold for the recorded identity: nothing
// enabled, no secret, no entitlement unless it is active; exactly its
// recorded account, grants and credentials when it is.
func (r *Recorded) Want(system string) Held {
	var w Held
	if r.Identity.State != identity.Active {
		return w
	}
	for _, a := range r.Accounts {
		if a.System == system && a.Status != identity.AccountDeleted {
			w.Exists, w.Enabled = true, a.Status == identity.AccountActive
		}
	}
	for _, g := range r.Grants {
		if g.System == system {
			w.Entitlements++
		}
	}
	for _, c := range r.Credentials {
		if c.System == system {
			w.Secret = true
		}
	}
	return w
}

// Violation is one way a system disagrees with the invariant.
type Violation struct {
	Account, System string
	State           identity.State
	Want, Got       Held
}

func (v Violation) String() string {
	switch v.State {
	case identity.Suspended, identity.Pending:
		return fmt.Sprintf("%s is %s in jml, so its account must be disabled, but %s holds: %s", v.Account, v.State, v.System, v.Got)
	case identity.Departed, identity.None:
		return fmt.Sprintf("%s is %s in jml, so none of its access may remain, but %s holds: %s", v.Account, v.State, v.System, v.Got)
	}
	return fmt.Sprintf("%s is active in jml, which records in %s: %s; the system holds: %s", v.Account, v.System, v.Want, v.Got)
}

// Check reads every target for each account of source and returns the
// violations, in account and system order.
func Check(ctx context.Context, st store.Store, source string, accounts []string, targets map[string]Target) ([]Violation, error) {
	systems := make([]string, 0, len(targets))
	for s := range targets {
		systems = append(systems, s)
	}
	sort.Strings(systems)
	var out []Violation
	for _, name := range accounts {
		rec, err := Read(ctx, st, source, name)
		if err != nil {
			return nil, err
		}
		if (rec.Identity.State == identity.Departed || rec.Identity.State == identity.None) && len(rec.Credentials) > 0 {
			// jml's own: an active credential of a departed identity must
			// not exist (a suspended one's introspects inactive by its
			// identity's state, and works again on resume).
			out = append(out, Violation{Account: name, System: "jml", State: rec.Identity.State,
				Got: Held{Secret: true, Entitlements: len(rec.Credentials)}})
		}
		for _, sys := range systems {
			got, err := targets[sys].Read(ctx, name)
			if err != nil {
				return nil, err
			}
			want := rec.Want(sys)
			switch rec.Identity.State {
			case identity.Suspended, identity.Pending:
				// Its account is disabled, so nothing it holds works; its
				// entitlements and secret stay behind the lock for a
				// resume to restore.
				if got.Enabled {
					out = append(out, Violation{Account: name, System: sys, State: rec.Identity.State, Want: want, Got: got})
				}
				continue
			case identity.Departed, identity.None:
				// Whether a disabled account remains does not matter; that
				// it works, holds a secret or access does.
				if got.Enabled || got.Secret || got.Entitlements > 0 {
					out = append(out, Violation{Account: name, System: sys, State: rec.Identity.State, Want: want, Got: got})
				}
				continue
			}
			cmp := got
			cmp.SecretOpaque = false
			if got.SecretOpaque {
				cmp.Secret = want.Secret
			}
			if cmp != want {
				out = append(out, Violation{Account: name, System: sys, State: rec.Identity.State, Want: want, Got: got})
			}
		}
	}
	return out, nil
}

// History describes the identity's cases, oldest first, with their steps:
// what a failing test prints to explain a violation.
func History(ctx context.Context, st store.Store, source, externalID string) string {
	var b strings.Builder
	err := st.View(ctx, func(tx store.Tx) error {
		id, err := tx.GetIdentityByExternalID(ctx, source, externalID)
		if err != nil {
			return err
		}
		caseList, err := tx.ListCases(ctx, id.ID, 1000)
		if err != nil {
			return err
		}
		for i := len(caseList) - 1; i >= 0; i-- {
			c, err := tx.GetCase(ctx, caseList[i].ID)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "  %s %s %s %s %s\n", c.CreatedAt.Format("15:04:05.000"), c.ID, c.Type, c.Status, c.Reason)
			for _, s := range c.Steps {
				fmt.Fprintf(&b, "    %d %s [%s] %s %s\n", s.Seq, s.Step.String(), s.Status, s.Result, s.LastError)
			}
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(&b, "  (history: %v)\n", err)
	}
	return b.String()
}
