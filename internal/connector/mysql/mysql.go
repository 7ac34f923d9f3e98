// Package mysql is the connector for MariaDB and MySQL. An account is
// user@host (the host from the system's settings, '%' by default); an
// entitlement is a role or privileges on a database or a table; a
// credential is the account's password, sent only as its
// mysql_native_password hash. Disable is ACCOUNT LOCK plus killing the
// account's connections; delete is DROP USER after the same kill.
//
// Names cannot be bound as parameters in account statements, so they are
// validated (valid UTF-8, no NUL, within the server's lengths) and quoted
// as identifiers with backticks, a backtick doubled: a quoting that no
// SQL mode changes. Catalog queries bind every value.
package mysql

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	driver "github.com/go-sql-driver/mysql"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
)

// Type is the connector type name in a policy.
const Type = "mysql"

type settings struct {
	// DSN is a reference (env:NAME or file:PATH) to a Go MySQL driver DSN,
	// user:password@tcp(host:3306)/, of an account that may create users,
	// grant and kill connections. TLS is set in the DSN (tls=true, or a
	// name registered for custom CAs, see docs).
	DSN string `yaml:"dsn"`
	// Host is the host part of every account jml makes (default %).
	Host string `yaml:"host"`
	// Protected are user names jml must never manage, besides the
	// connecting user, root, mysql and mariadb.sys.
	Protected []string `yaml:"protected"`
	// TLS with a private CA: the server is verified against CAFile (and
	// ServerName, default the DSN's host). tls=true in the DSN uses the
	// system's CAs instead.
	TLS connector.TLS `yaml:"tls"`
}

type target struct {
	Role       string   `yaml:"role"`
	Database   string   `yaml:"database"`
	Table      string   `yaml:"table"` // within Database
	Privileges []string `yaml:"privileges"`
}

// privColumns maps allowed privileges to their mysql.db columns and
// mysql.tables_priv set members ("" where a table cannot hold it).
var privColumns = map[string][2]string{
	"SELECT":      {"Select_priv", "Select"},
	"INSERT":      {"Insert_priv", "Insert"},
	"UPDATE":      {"Update_priv", "Update"},
	"DELETE":      {"Delete_priv", "Delete"},
	"CREATE":      {"Create_priv", "Create"},
	"DROP":        {"Drop_priv", "Drop"},
	"INDEX":       {"Index_priv", "Index"},
	"ALTER":       {"Alter_priv", "Alter"},
	"REFERENCES":  {"References_priv", "References"},
	"CREATE VIEW": {"Create_view_priv", "Create View"},
	"SHOW VIEW":   {"Show_view_priv", "Show view"},
	"TRIGGER":     {"Trigger_priv", "Trigger"},
	"EXECUTE":     {"Execute_priv", ""},
}

const (
	maxUser = 128 // mysql.global_priv.User
	maxName = 64  // database, table and role identifiers
)

// Conn is a MariaDB/MySQL connector.
type Conn struct {
	db        *sql.DB
	host      string
	targets   map[string]target
	roles     map[string]bool
	protected map[string]bool
}

// Open validates cfg and returns a connector; it connects lazily.
func Open(ctx context.Context, cfg connector.Config) (connector.Connector, error) {
	var st settings
	if err := connector.Decode(cfg.Settings, &st); err != nil {
		return nil, cfg.Errorf("config: %v", err)
	}
	if st.Host == "" {
		st.Host = "%"
	}
	if err := checkName("host", st.Host, 255); err != nil {
		return nil, cfg.Errorf("%v", err)
	}
	c := &Conn{host: st.Host, roles: map[string]bool{},
		protected: map[string]bool{"root": true, "mysql": true, "mariadb.sys": true}}
	for _, p := range st.Protected {
		c.protected[p] = true
	}
	targets, err := connector.DecodeTargets(cfg, target.validate)
	if err != nil {
		return nil, err
	}
	c.targets = targets
	for _, tg := range targets {
		if tg.Role != "" {
			c.roles[tg.Role] = true
		}
	}
	if cfg.CheckOnly {
		return nil, cfg.CheckRef("dsn", st.DSN)
	}
	dsn, err := cfg.Secret("dsn", st.DSN)
	if err != nil {
		return nil, err
	}
	dc, err := driver.ParseDSN(dsn)
	if err != nil {
		return nil, cfg.Errorf("dsn: not a valid MySQL DSN") // the driver's message may quote the password
	}
	if st.TLS.CAFile != "" {
		host, _, _ := net.SplitHostPort(dc.Addr)
		if dc.TLS, err = st.TLS.ClientConfig(host); err != nil {
			return nil, cfg.Errorf("%v", err)
		}
	}
	dc.Timeout, dc.ReadTimeout, dc.WriteTimeout = 5*time.Second, 30*time.Second, 30*time.Second
	dc.ParseTime = true
	conn, err := driver.NewConnector(dc)
	if err != nil {
		return nil, cfg.Errorf("dsn: %v", err)
	}
	c.protected[dc.User] = true
	c.db = sql.OpenDB(conn)
	c.db.SetMaxOpenConns(4)
	c.db.SetConnMaxIdleTime(time.Minute)
	return c, nil
}

// Close closes the pool.
func (c *Conn) Close() error { return c.db.Close() }

func (tg target) validate() error {
	if tg.Role != "" {
		if tg.Database != "" || tg.Table != "" || len(tg.Privileges) > 0 {
			return errors.New("role excludes database, table and privileges")
		}
		return checkName("role", tg.Role, maxName)
	}
	if tg.Database == "" {
		return errors.New("needs role, or database (and optionally table) with privileges")
	}
	if err := checkName("database", tg.Database, maxName); err != nil {
		return err
	}
	if tg.Table != "" {
		if err := checkName("table", tg.Table, maxName); err != nil {
			return err
		}
	}
	if len(tg.Privileges) == 0 {
		return errors.New("privileges: at least one is required")
	}
	for _, p := range tg.Privileges {
		col, ok := privColumns[p]
		if !ok {
			return fmt.Errorf("privileges: %q is not one of %s", p, strings.Join(slices.Sorted(func(y func(string) bool) {
				for k := range privColumns {
					if !y(k) {
						return
					}
				}
			}), ", "))
		}
		if tg.Table != "" && col[1] == "" {
			return fmt.Errorf("privileges: %s cannot be granted on a table", p)
		}
	}
	return nil
}

func checkName(what, name string, max int) error {
	switch {
	case name == "":
		return fmt.Errorf("%s: empty name", what)
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return fmt.Errorf("%s: %q is not valid UTF-8 text", what, name)
	case utf8.RuneCountInString(name) > max:
		return fmt.Errorf("%s: %q is %d characters; at most %d", what, name[:min(len(name), 40)]+"…", utf8.RuneCountInString(name), max)
	}
	return nil
}

// quote quotes an identifier with backticks.
func quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

func (c *Conn) account(name string) string { return quote(name) + "@" + quote(c.host) }

func (c *Conn) name(a connector.Account) (string, error) {
	if err := checkName("account", a.Name, maxUser); err != nil {
		return "", &identity.Error{Code: identity.Invalid, Field: "account", Message: strings.TrimPrefix(err.Error(), "account: ")}
	}
	switch {
	case c.protected[a.Name]:
		return "", identity.Errorf(identity.Forbidden, "account %q is protected in this system", a.Name)
	case c.roles[a.Name]:
		return "", identity.Errorf(identity.Forbidden, "account %q is a role that an entitlement grants", a.Name)
	}
	return a.Name, nil
}

// CheckName implements connector.NameChecker.
func (c *Conn) CheckName(name string) error {
	_, err := c.name(connector.Account{Name: name})
	return err
}

var _ connector.NameChecker = (*Conn)(nil)

// AccountExists implements connector.Prober.
func (c *Conn) AccountExists(ctx context.Context, a connector.Account) (bool, error) {
	_, ok, err := c.existing(ctx, a)
	return ok, err
}

// Adopt implements connector.Adopter: the account is locked with a
// password nobody knows, its connections are killed, and it loses every
// privilege and every role it holds (RevokeAll keeps roles no entitlement
// grants; an adopted account keeps none).
func (c *Conn) Adopt(ctx context.Context, op connector.Op, a connector.Account) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	if err := c.RevokeAll(ctx, op, a); err != nil {
		return err
	}
	var held []string
	if err := eachRow(ctx, c.db, "SELECT Role FROM mysql.roles_mapping WHERE User = ? AND Host = ?", func(v []string) { held = append(held, v[0]) }, name, c.host); err != nil {
		return err
	}
	for _, r := range held {
		if _, err := c.db.ExecContext(ctx, "REVOKE "+quote(r)+" FROM "+c.account(name)); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ connector.Prober  = (*Conn)(nil)
	_ connector.Adopter = (*Conn)(nil)
)

// existing validates a's name and reports whether its account exists.
func (c *Conn) existing(ctx context.Context, a connector.Account) (string, bool, error) {
	name, err := c.name(a)
	if err != nil {
		return "", false, err
	}
	ok, err := c.exists(ctx, name)
	return name, ok, err
}

// lockAndKill locks the account, then ends its connections.
func (c *Conn) lockAndKill(ctx context.Context, name string) error {
	if _, err := c.db.ExecContext(ctx, "ALTER USER "+c.account(name)+" ACCOUNT LOCK"); err != nil {
		return err
	}
	return c.kill(ctx, name)
}

func (c *Conn) exists(ctx context.Context, name string) (bool, error) {
	var n int
	err := c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.global_priv WHERE User = ? AND Host = ?", name, c.host).Scan(&n)
	return n > 0, err
}

// unusableHash is the hash of a random secret nobody keeps: an account
// without a password would accept an empty one.
func unusableHash() string {
	b := make([]byte, 32)
	rand.Read(b)
	return nativeHash(hex.EncodeToString(b))
}

// nativeHash is mysql_native_password's stored form: "*" and the upper-case
// hex of SHA1(SHA1(password)).
func nativeHash(password string) string {
	h1 := sha1.Sum([]byte(password))
	h2 := sha1.Sum(h1[:])
	return "*" + strings.ToUpper(hex.EncodeToString(h2[:]))
}

func (c *Conn) EnsureAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, err := c.name(a)
	if err != nil {
		return err
	}
	if _, err := c.db.ExecContext(ctx, "CREATE USER IF NOT EXISTS "+c.account(name)+" IDENTIFIED BY PASSWORD '"+unusableHash()+"'"); err != nil {
		return err
	}
	_, err = c.db.ExecContext(ctx, "ALTER USER "+c.account(name)+" ACCOUNT UNLOCK")
	return err
}

func (c *Conn) DisableAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	return c.lockAndKill(ctx, name)
}

// kill ends every connection of the account. A lock or drop comes first,
// so no new connection can replace them.
func (c *Conn) kill(ctx context.Context, name string) error {
	rows, err := c.db.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()", name)
	if err != nil {
		return err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := c.db.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
			var me *driver.MySQLError
			if errors.As(err, &me) && me.Number == 1094 { // unknown thread: already gone
				continue
			}
			return err
		}
	}
	return nil
}

func (c *Conn) DeleteAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	if err := c.lockAndKill(ctx, name); err != nil {
		return err
	}
	_, err = c.db.ExecContext(ctx, "DROP USER IF EXISTS "+c.account(name))
	return err
}

func (c *Conn) target(entitlement string) (target, error) {
	tg, ok := c.targets[entitlement]
	if !ok {
		return tg, identity.Errorf(identity.Invalid, "entitlement %q has no target in this system", entitlement)
	}
	return tg, nil
}

func (tg target) object() string {
	if tg.Table != "" {
		return quote(tg.Database) + "." + quote(tg.Table)
	}
	return quote(tg.Database) + ".*"
}

func (c *Conn) Grant(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	tg, err := c.target(entitlement)
	if err != nil {
		return err
	}
	name, err := c.name(a)
	if err != nil {
		return err
	}
	if ok, err := c.exists(ctx, name); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("grant %s: account %q does not exist", entitlement, name)
		}
		return err
	}
	q := "GRANT " + strings.Join(tg.Privileges, ", ") + " ON " + tg.object() + " TO " + c.account(name)
	if tg.Role != "" {
		q = "GRANT " + quote(tg.Role) + " TO " + c.account(name)
	}
	_, err = c.db.ExecContext(ctx, q)
	return err
}

func (c *Conn) Revoke(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	tg, err := c.target(entitlement)
	if err != nil {
		return err
	}
	name, err := c.name(a)
	if err != nil {
		return err
	}
	held, err := c.holds(ctx, name, tg)
	if err != nil || !held {
		return err
	}
	q := "REVOKE " + strings.Join(tg.Privileges, ", ") + " ON " + tg.object() + " FROM " + c.account(name)
	if tg.Role != "" {
		q = "REVOKE " + quote(tg.Role) + " FROM " + c.account(name)
	}
	_, err = c.db.ExecContext(ctx, q)
	return err
}

// holds reports whether the account holds any part of tg (REVOKE of a
// grant that does not exist is an error in MariaDB, so Revoke asks
// first).
func (c *Conn) holds(ctx context.Context, name string, tg target) (bool, error) {
	var n int
	var err error
	switch {
	case tg.Role != "":
		err = c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = ? AND Host = ? AND Role = ?", name, c.host, tg.Role).Scan(&n)
	case tg.Table != "":
		err = c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.tables_priv WHERE User = ? AND Host = ? AND Db = ? AND Table_name = ?", name, c.host, tg.Database, tg.Table).Scan(&n)
	default:
		err = c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.db WHERE User = ? AND Host = ? AND Db = ?", name, c.host, tg.Database).Scan(&n)
	}
	return n > 0, err
}

// RevokeAll implements connector.RevokeAller: the account is locked with
// a password nobody knows, loses every privilege and every role the
// policy's targets grant, and its connections are killed.
func (c *Conn) RevokeAll(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, err := c.name(a)
	if err != nil {
		return err
	}
	// No lookup first: ALTER USER of a missing account fails with 1396,
	// and missing is success.
	if _, err := c.db.ExecContext(ctx, "ALTER USER "+c.account(name)+" IDENTIFIED BY PASSWORD '"+unusableHash()+"' ACCOUNT LOCK"); err != nil {
		var me *driver.MySQLError
		if errors.As(err, &me) && me.Number == 1396 {
			return nil
		}
		return err
	}
	if err := c.kill(ctx, name); err != nil {
		return err
	}
	if _, err := c.db.ExecContext(ctx, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM "+c.account(name)); err != nil {
		return err
	}
	if len(c.roles) == 0 {
		return nil
	}
	var held []string
	err = eachRow(ctx, c.db, "SELECT Role FROM mysql.roles_mapping WHERE User = ? AND Host = ?", func(v []string) { held = append(held, v[0]) }, name, c.host)
	if err != nil {
		return err
	}
	for _, r := range held {
		if !c.roles[r] {
			continue // roles no entitlement grants are left as they are
		}
		if _, err := c.db.ExecContext(ctx, "REVOKE "+quote(r)+" FROM "+c.account(name)); err != nil {
			return err
		}
	}
	return nil
}

// SetCredential sets the password, sent as its mysql_native_password
// hash. MariaDB cannot end a password at a given time (an expired one
// leaves the account in sandbox mode), so the TTL is jml's to enforce by
// rotation.
func (c *Conn) SetCredential(ctx context.Context, _ connector.Op, a connector.Account, cred connector.Credential) error {
	name, err := c.name(a)
	if err != nil {
		return err
	}
	if ok, err := c.exists(ctx, name); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("set password: account %q does not exist", name)
		}
		return err
	}
	_, err = c.db.ExecContext(ctx, "ALTER USER "+c.account(name)+" IDENTIFIED BY PASSWORD '"+nativeHash(cred.Secret)+"'")
	return err
}

// RevokeCredential replaces the password with one nobody knows.
func (c *Conn) RevokeCredential(ctx context.Context, _ connector.Op, a connector.Account, _ string) error {
	name, ok, err := c.existing(ctx, a)
	if err != nil || !ok {
		return err
	}
	_, err = c.db.ExecContext(ctx, "ALTER USER "+c.account(name)+" IDENTIFIED BY PASSWORD '"+unusableHash()+"'")
	return err
}

// ListAccounts lists every user but roles and protected users. Accounts on
// the configured host are named by user alone, others user@host.
func (c *Conn) ListAccounts(ctx context.Context) ([]connector.AccountState, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT User, Host, COALESCE(JSON_VALUE(Priv, '$.account_locked'), '0')
FROM mysql.global_priv WHERE COALESCE(JSON_VALUE(Priv, '$.is_role'), '0') NOT IN ('1', 'true') ORDER BY User, Host`)
	if err != nil {
		return nil, err
	}
	type key struct{ user, host string }
	var out []connector.AccountState
	index := map[key]int{}
	for rows.Next() {
		var user, host, locked string
		if err := rows.Scan(&user, &host, &locked); err != nil {
			rows.Close()
			return nil, err
		}
		if c.protected[user] || c.roles[user] || user == "" {
			continue
		}
		name := user
		if host != c.host {
			name = user + "@" + host
		}
		index[key{user, host}] = len(out)
		out = append(out, connector.AccountState{Name: name, Disabled: locked == "1" || locked == "true"})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	add := func(k key, ent string, other bool) {
		if i, ok := index[k]; ok {
			if other {
				out[i].Other = append(out[i].Other, ent)
			} else {
				out[i].Entitlements = append(out[i].Entitlements, ent)
			}
		}
	}
	// Roles.
	byRole := map[string][]string{}
	for name, tg := range c.targets {
		if tg.Role != "" {
			byRole[tg.Role] = append(byRole[tg.Role], name)
		}
	}
	if err := eachRow(ctx, c.db, "SELECT User, Host, Role FROM mysql.roles_mapping", func(v []string) {
		k := key{v[0], v[1]}
		if ents, ok := byRole[v[2]]; ok {
			for _, e := range ents {
				add(k, e, false)
			}
		} else {
			add(k, "role:"+v[2], true)
		}
	}); err != nil {
		return nil, err
	}
	// Privilege targets: one query each.
	for ent, tg := range c.targets {
		if tg.Role != "" {
			continue
		}
		var q string
		var args []any
		if tg.Table != "" {
			var conds []string
			for _, p := range tg.Privileges {
				conds = append(conds, "FIND_IN_SET(?, Table_priv) > 0")
				args = append(args, privColumns[p][1])
			}
			q = "SELECT User, Host FROM mysql.tables_priv WHERE Db = ? AND Table_name = ? AND " + strings.Join(conds, " AND ")
			args = append([]any{tg.Database, tg.Table}, args...)
		} else {
			var conds []string
			for _, p := range tg.Privileges {
				conds = append(conds, privColumns[p][0]+" = 'Y'") // column names from the allow-list
			}
			q = "SELECT User, Host FROM mysql.db WHERE Db = ? AND " + strings.Join(conds, " AND ")
			args = []any{tg.Database}
		}
		if err := eachRow(ctx, c.db, q, func(v []string) { add(key{v[0], v[1]}, ent, false) }, args...); err != nil {
			return nil, err
		}
	}
	for i := range out {
		slices.Sort(out[i].Entitlements)
		out[i].Entitlements = slices.Compact(out[i].Entitlements)
		slices.Sort(out[i].Other)
	}
	return out, nil
}

func eachRow(ctx context.Context, db *sql.DB, q string, fn func([]string), args ...any) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]string, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		fn(slices.Clone(vals))
	}
	return rows.Err()
}

var (
	_ connector.CredentialSetter = (*Conn)(nil)
	_ connector.Lister           = (*Conn)(nil)
	_ connector.RevokeAller      = (*Conn)(nil)
)
