// Package postgres is the connector for PostgreSQL servers. An account is
// a LOGIN role; an entitlement is membership in a role, or privileges on a
// schema or a table; a credential is the role's password, sent to the
// server only as a SCRAM-SHA-256 verifier (the secret itself never
// reaches the server or its logs), valid until the credential's expiry.
// Disable is NOLOGIN plus terminating the role's sessions; delete
// reassigns and drops what the role owns in the connected database, then
// drops the role.
//
// Every name is validated and quoted as an identifier by pgx; passwords
// and expiry times are the only literals, and they are built by jml from
// characters that need no escaping.
package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
)

// Type is the connector type name in a policy.
const Type = "postgres"

// settings is a postgres system's config block.
type settings struct {
	// URL is a reference (env:NAME or file:PATH) to a postgres:// URL of a
	// role that may create roles and terminate backends. TLS is set in
	// the URL (sslmode, sslrootcert, sslcert, sslkey).
	URL string `yaml:"url"`
	// ReassignOwnedTo receives what a deleted role owned; default: the
	// connecting role.
	ReassignOwnedTo string `yaml:"reassignOwnedTo"`
	// MaxConns bounds the connector's pool (default 4).
	MaxConns int32 `yaml:"maxConns"`
}

// target is an entitlement's target block: a role to be a member of, or
// privileges on one schema or table.
type target struct {
	Role       string   `yaml:"role"`
	Schema     string   `yaml:"schema"`
	Table      string   `yaml:"table"` // "table" or "schema.table"
	Privileges []string `yaml:"privileges"`
}

var (
	schemaPrivileges = []string{"CREATE", "USAGE"}
	tablePrivileges  = []string{"DELETE", "INSERT", "REFERENCES", "SELECT", "TRIGGER", "TRUNCATE", "UPDATE"}
)

// Conn is a PostgreSQL connector.
type Conn struct {
	pool     *pgxpool.Pool
	targets  map[string]target
	groups   map[string]bool // roles that are role targets: never accounts
	reassign string
	self     string // the connecting role
}

// Open validates cfg and returns a connector; it connects lazily.
func Open(ctx context.Context, cfg connector.Config) (connector.Connector, error) {
	var st settings
	if err := connector.Decode(cfg.Settings, &st); err != nil {
		return nil, cfg.Errorf("config: %v", err)
	}
	c := &Conn{groups: map[string]bool{}}
	targets, err := connector.DecodeTargets(cfg, target.validate)
	if err != nil {
		return nil, err
	}
	c.targets = targets
	for _, tg := range targets {
		if tg.Role != "" {
			c.groups[tg.Role] = true
		}
	}
	if st.ReassignOwnedTo != "" {
		if err := checkName("reassignOwnedTo", st.ReassignOwnedTo); err != nil {
			return nil, cfg.Errorf("%v", err)
		}
	}
	if st.MaxConns < 0 {
		return nil, cfg.Errorf("maxConns must not be negative")
	}
	if cfg.CheckOnly {
		return nil, cfg.CheckRef("url", st.URL)
	}
	url, err := cfg.Secret("url", st.URL)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, cfg.Errorf("url: not a valid PostgreSQL connection URL")
	}
	pc.MaxConns = 4
	if st.MaxConns > 0 {
		pc.MaxConns = st.MaxConns
	}
	c.self = pc.ConnConfig.User
	c.reassign = st.ReassignOwnedTo
	if c.reassign == "" {
		c.reassign = c.self
	}
	c.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, cfg.Errorf("%v", err)
	}
	return c, nil
}

// Close closes the pool.
func (c *Conn) Close() error {
	c.pool.Close()
	return nil
}

func (tg target) validate() error {
	switch {
	case tg.Role != "":
		if tg.Schema != "" || tg.Table != "" || len(tg.Privileges) > 0 {
			return errors.New("role excludes schema, table and privileges")
		}
		return checkName("role", tg.Role)
	case tg.Schema != "" && tg.Table != "":
		return errors.New("give schema or table, not both")
	case tg.Schema != "":
		if err := checkName("schema", tg.Schema); err != nil {
			return err
		}
		return checkPrivileges(tg.Privileges, schemaPrivileges)
	case tg.Table != "":
		for _, part := range strings.SplitN(tg.Table, ".", 2) {
			if err := checkName("table", part); err != nil {
				return err
			}
		}
		return checkPrivileges(tg.Privileges, tablePrivileges)
	}
	return errors.New("needs role, or schema or table with privileges")
}

func checkPrivileges(ps, allowed []string) error {
	if len(ps) == 0 {
		return errors.New("privileges: at least one is required")
	}
	for _, p := range ps {
		if !slices.Contains(allowed, p) {
			return fmt.Errorf("privileges: %q is not one of %s", p, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// checkName validates an identifier before quoting: PostgreSQL truncates
// names beyond 63 bytes (two long names would become one role) and
// reserves the pg_ prefix.
func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s: empty name", what)
	case len(name) > 63:
		return fmt.Errorf("%s: %q is %d bytes; PostgreSQL names are at most 63", what, trunc(name), len(name))
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return fmt.Errorf("%s: %q is not valid UTF-8 text", what, trunc(name))
	case strings.HasPrefix(name, "pg_"):
		return fmt.Errorf("%s: %q: the pg_ prefix is reserved", what, name)
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// accountName validates an account name; an invalid one is a permanent,
// Invalid error (retrying cannot fix it).
func accountName(a connector.Account) (string, error) {
	if err := checkName("account", a.Name); err != nil {
		return "", &identity.Error{Code: identity.Invalid, Field: "account", Message: strings.TrimPrefix(err.Error(), "account: ")}
	}
	return a.Name, nil
}

// CheckName implements connector.NameChecker: the name rules, the
// connector's own role and the roles entitlements grant (whether a role is
// a superuser is the server's to say, when the step runs).
func (c *Conn) CheckName(name string) error {
	if _, err := accountName(connector.Account{Name: name}); err != nil {
		return err
	}
	return c.guard(name, role{})
}

var _ connector.NameChecker = (*Conn)(nil)

// role is what the server says of a role.
type role struct {
	exists, super, login bool
}

func (c *Conn) role(ctx context.Context, q querier, name string) (role, error) {
	var r role
	err := q.QueryRow(ctx, "SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = $1", name).Scan(&r.super, &r.login)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, nil
	}
	r.exists = err == nil
	return r, err
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// guard refuses to manage roles jml must never touch: superusers, the
// connector's own role and the roles entitlements grant.
func (c *Conn) guard(name string, r role) error {
	switch {
	case name == c.self:
		return identity.Errorf(identity.Forbidden, "account %q is the connector's own role", name)
	case r.super:
		return identity.Errorf(identity.Forbidden, "account %q is a superuser; jml does not manage superusers", name)
	case c.groups[name]:
		return identity.Errorf(identity.Forbidden, "account %q is a role that an entitlement grants", name)
	}
	return nil
}

func (c *Conn) EnsureAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, err := accountName(a)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		r, err := c.role(ctx, tx, name)
		if err != nil {
			return err
		}
		if err := c.guard(name, r); err != nil {
			return err
		}
		if !r.exists {
			_, err = tx.Exec(ctx, "CREATE ROLE "+ident(name)+" LOGIN")
			return err
		}
		if !r.login {
			_, err = tx.Exec(ctx, "ALTER ROLE "+ident(name)+" LOGIN")
		}
		return err
	})
}

// existing returns the account's name and whether its role exists, after
// the guard; for operations where a missing account is success.
func (c *Conn) existing(ctx context.Context, a connector.Account) (string, bool, error) {
	name, err := accountName(a)
	if err != nil {
		return "", false, err
	}
	r, err := c.role(ctx, c.pool, name)
	if err != nil || !r.exists {
		return name, false, err
	}
	return name, true, c.guard(name, r)
}

// AccountExists implements connector.Prober. A superuser, the
// connector's own role or a role an entitlement grants is a Forbidden
// error, never an account to create.
func (c *Conn) AccountExists(ctx context.Context, a connector.Account) (bool, error) {
	_, ok, err := c.existing(ctx, a)
	return ok, err
}

// Adopt implements connector.Adopter: in one transaction the role loses
// LOGIN, its password and its role attributes, leaves every role it is a
// member of, and loses the privileges the policy's targets grant; its
// sessions are then terminated. Privileges granted to it directly on
// objects no target names are not looked for (jml policy check's targets
// are what jml manages); list them with ListAccounts' Other.
func (c *Conn) Adopt(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	var member []string
	rows, err := c.pool.Query(ctx, "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1 ORDER BY 1", name)
	if err != nil {
		return err
	}
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			rows.Close()
			return err
		}
		member = append(member, ident(g))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue("ALTER ROLE " + ident(name) + " NOLOGIN PASSWORD NULL NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
	if len(member) > 0 {
		b.Queue("REVOKE " + strings.Join(member, ", ") + " FROM " + ident(name))
	}
	for _, tg := range c.targets {
		if tg.Role == "" {
			b.Queue(grantSQL(tg, name, false))
		}
	}
	if err := c.pool.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	return c.terminate(ctx, name)
}

var (
	_ connector.Prober  = (*Conn)(nil)
	_ connector.Adopter = (*Conn)(nil)
)

func (c *Conn) DisableAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	if _, err := c.pool.Exec(ctx, "ALTER ROLE "+ident(name)+" NOLOGIN"); err != nil {
		return err
	}
	return c.terminate(ctx, name)
}

// terminate ends every session of the role. A session that connects
// between NOLOGIN and this cannot exist: NOLOGIN refuses it.
func (c *Conn) terminate(ctx context.Context, name string) error {
	rows, err := c.pool.Query(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()", name)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

func (c *Conn) DeleteAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	if _, err := c.pool.Exec(ctx, "ALTER ROLE "+ident(name)+" NOLOGIN"); err != nil {
		return err
	}
	if err := c.terminate(ctx, name); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			"REASSIGN OWNED BY " + ident(name) + " TO " + ident(c.reassign),
			"DROP OWNED BY " + ident(name),
			"DROP ROLE IF EXISTS " + ident(name),
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

func (c *Conn) target(entitlement string) (target, error) {
	tg, ok := c.targets[entitlement]
	if !ok {
		return tg, identity.Errorf(identity.Invalid, "entitlement %q has no target in this system", entitlement)
	}
	return tg, nil
}

// grantSQL returns the GRANT (or REVOKE) statement of a target.
func grantSQL(tg target, name string, grant bool) string {
	to, verb := " TO ", "GRANT "
	if !grant {
		to, verb = " FROM ", "REVOKE "
	}
	switch {
	case tg.Role != "":
		return verb + ident(tg.Role) + to + ident(name)
	case tg.Schema != "":
		return verb + strings.Join(tg.Privileges, ", ") + " ON SCHEMA " + ident(tg.Schema) + to + ident(name)
	default:
		return verb + strings.Join(tg.Privileges, ", ") + " ON TABLE " + ident(strings.SplitN(tg.Table, ".", 2)...) + to + ident(name)
	}
}

func (c *Conn) Grant(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	tg, err := c.target(entitlement)
	if err != nil {
		return err
	}
	name, ok, err := c.existing(ctx, a)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("grant %s: account %q does not exist", entitlement, name)
	}
	_, err = c.pool.Exec(ctx, grantSQL(tg, name, true))
	return err
}

func (c *Conn) Revoke(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	tg, err := c.target(entitlement)
	if err != nil {
		return err
	}
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	_, err = c.pool.Exec(ctx, grantSQL(tg, name, false))
	return err
}

// RevokeAll implements connector.RevokeAller: in one round trip after the
// lookup, the role loses LOGIN and its password, every role and privilege
// the policy's targets grant is revoked, and its sessions are terminated.
func (c *Conn) RevokeAll(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	b := &pgx.Batch{}
	b.Queue("ALTER ROLE " + ident(name) + " NOLOGIN PASSWORD NULL")
	var roles []string
	for _, tg := range c.targets {
		if tg.Role != "" {
			roles = append(roles, ident(tg.Role))
		} else {
			b.Queue(grantSQL(tg, name, false))
		}
	}
	if len(roles) > 0 {
		slices.Sort(roles)
		b.Queue("REVOKE " + strings.Join(roles, ", ") + " FROM " + ident(name))
	}
	b.Queue("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()", name)
	// A batch runs as one implicit transaction: all of it or none.
	return c.pool.SendBatch(ctx, b).Close()
}

// SetCredential sets the role's password as a SCRAM-SHA-256 verifier,
// valid until the credential expires.
func (c *Conn) SetCredential(ctx context.Context, _ connector.Op, a connector.Account, cred connector.Credential) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("set password: account %q does not exist", name)
	}
	verifier, err := scramVerifier(cred.Secret, rand.Reader)
	if err != nil {
		return err
	}
	until := "infinity"
	if !cred.ExpiresAt.IsZero() {
		until = cred.ExpiresAt.UTC().Format(time.RFC3339)
	}
	_, err = c.pool.Exec(ctx, "ALTER ROLE "+ident(name)+" PASSWORD '"+verifier+"' VALID UNTIL '"+until+"'")
	return err
}

// RevokeCredential removes the role's password.
func (c *Conn) RevokeCredential(ctx context.Context, _ connector.Op, a connector.Account, _ string) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	_, err = c.pool.Exec(ctx, "ALTER ROLE "+ident(name)+" PASSWORD NULL")
	return err
}

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for
// password (RFC 5802, RFC 7677): only base64 text and separators, safe in
// a literal. jml's passwords are ASCII, which SASLprep leaves unchanged.
func scramVerifier(password string, rnd interface{ Read([]byte) (int, error) }) (string, error) {
	salt := make([]byte, 16)
	if _, err := rnd.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(stored[:]), b64(server)), nil
}

// ListAccounts lists every role that is an account: all roles but the
// pg_ built-ins, the connector's own role and the roles entitlements
// grant; a role that cannot log in is listed as disabled. Memberships map
// to entitlements through role targets; privilege targets are checked on
// their schema or table.
func (c *Conn) ListAccounts(ctx context.Context) ([]connector.AccountState, error) {
	rows, err := c.pool.Query(ctx, `
SELECT r.rolname, r.rolcanlogin,
       COALESCE(array_agg(g.rolname ORDER BY g.rolname) FILTER (WHERE g.rolname IS NOT NULL), '{}')
FROM pg_roles r
LEFT JOIN pg_auth_members m ON m.member = r.oid
LEFT JOIN pg_roles g ON g.oid = m.roleid
WHERE r.rolname NOT LIKE 'pg\_%'
GROUP BY r.rolname, r.rolcanlogin
ORDER BY r.rolname`)
	if err != nil {
		return nil, err
	}
	byRole := map[string][]string{} // role -> entitlements granting it
	for name, tg := range c.targets {
		if tg.Role != "" {
			byRole[tg.Role] = append(byRole[tg.Role], name)
		}
	}
	var out []connector.AccountState
	index := map[string]int{}
	for rows.Next() {
		var name string
		var login bool
		var member []string
		if err := rows.Scan(&name, &login, &member); err != nil {
			rows.Close()
			return nil, err
		}
		if name == c.self || c.groups[name] {
			continue
		}
		st := connector.AccountState{Name: name, Disabled: !login}
		for _, g := range member {
			if ents, ok := byRole[g]; ok {
				st.Entitlements = append(st.Entitlements, ents...)
			} else {
				st.Other = append(st.Other, "role:"+g)
			}
		}
		index[name] = len(out)
		out = append(out, st)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for name, tg := range c.targets {
		if tg.Role != "" {
			continue
		}
		holders, err := c.privilegeHolders(ctx, tg)
		if err != nil {
			return nil, fmt.Errorf("entitlement %s: %w", name, err)
		}
		for _, h := range holders {
			if i, ok := index[h]; ok {
				out[i].Entitlements = append(out[i].Entitlements, name)
			}
		}
	}
	for i := range out {
		slices.Sort(out[i].Entitlements)
		out[i].Entitlements = slices.Compact(out[i].Entitlements)
	}
	return out, nil
}

// privilegeHolders returns the roles granted every privilege of tg
// directly on its schema or table. A missing object has no holders.
func (c *Conn) privilegeHolders(ctx context.Context, tg target) ([]string, error) {
	var q string
	var obj string
	if tg.Schema != "" {
		q = `SELECT a.grantee::regrole::text, a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a
WHERE n.nspname = $1 AND a.grantee <> 0`
		obj = tg.Schema
	} else {
		q = `SELECT a.grantee::regrole::text, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a
WHERE c.oid = to_regclass($1) AND a.grantee <> 0`
		obj = ident(strings.SplitN(tg.Table, ".", 2)...)
	}
	rows, err := c.pool.Query(ctx, q, obj)
	if err != nil {
		return nil, err
	}
	held := map[string]map[string]bool{}
	for rows.Next() {
		var grantee, priv string
		if err := rows.Scan(&grantee, &priv); err != nil {
			rows.Close()
			return nil, err
		}
		// regrole text quotes names that need it; unquote to compare.
		grantee = unquoteIdent(grantee)
		if held[grantee] == nil {
			held[grantee] = map[string]bool{}
		}
		held[grantee][priv] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []string
	for g, ps := range held {
		all := true
		for _, p := range tg.Privileges {
			all = all && ps[p]
		}
		if all {
			out = append(out, g)
		}
	}
	return out, nil
}

func unquoteIdent(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return s
}

var (
	_ connector.CredentialSetter = (*Conn)(nil)
	_ connector.Lister           = (*Conn)(nil)
	_ connector.RevokeAller      = (*Conn)(nil)
)
