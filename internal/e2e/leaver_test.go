package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/connector/connectors"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/poll"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/pgtest"
	"github.com/jml-dev/jml/internal/store/postgres"
	"github.com/jml-dev/jml/internal/store/sqlite"
	"github.com/jml-dev/jml/internal/testsvc"
	"github.com/jml-dev/jml/internal/vault"
)

// The servers: a private PostgreSQL and slapd (they check passwords and
// lock accounts as configured here), and the machine's Redis and MariaDB.
var (
	pg, dir    *testsvc.Server
	redisAddr  = envOr("JML_TEST_REDIS", "127.0.0.1:6379")
	mysqlDSN   = envOr("JML_TEST_MYSQL", "root@tcp(127.0.0.1:3306)/")
	devsGroup  = "cn=e2e-devs," + testsvc.SlapdGroups
	mysqlAdmin *sql.DB
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	// The driver logs the connections the tests kill on purpose.
	driver.SetLogger(log.New(io.Discard, "", 0))
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	var err error
	if pg, err = testsvc.StartPostgres(); err != nil {
		return 0, err
	}
	defer pg.Stop()
	if dir, err = testsvc.StartSlapd(); err != nil {
		return 0, err
	}
	defer dir.Stop()
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		return 0, err
	}
	if _, err := pc.Exec(ctx, "CREATE ROLE e2e_app_read NOLOGIN"); err != nil {
		return 0, err
	}
	pc.Close(ctx)
	l, err := ldap.DialURL(dir.URL)
	if err != nil {
		return 0, err
	}
	if err := l.Bind(testsvc.SlapdAdminDN, dir.Password); err != nil {
		return 0, err
	}
	req := ldap.NewAddRequest(devsGroup, nil)
	req.Attribute("objectClass", []string{"groupOfNames"})
	req.Attribute("member", []string{"cn=placeholder," + testsvc.SlapdSuffix})
	if err := l.Add(req); err != nil {
		return 0, err
	}
	l.Close()
	rc := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	if err := rc.Ping(ctx).Err(); err != nil {
		return 0, fmt.Errorf("Redis at %s: %w", redisAddr, err)
	}
	rc.Close()
	if mysqlAdmin, err = sql.Open("mysql", mysqlDSN); err != nil {
		return 0, err
	}
	defer mysqlAdmin.Close()
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS e2e_app", "CREATE TABLE IF NOT EXISTS e2e_app.t (id INT)"} {
		if _, err := mysqlAdmin.ExecContext(ctx, q); err != nil {
			return 0, fmt.Errorf("MariaDB at %s: %w", mysqlDSN, err)
		}
	}
	defer mysqlAdmin.Exec("DROP DATABASE IF EXISTS e2e_app")
	return m.Run(), nil
}

const policyYAML = `
systems:
  - {name: vault, type: builtin}
  - {name: appdb, type: postgres, config: {url: env:E2E_PG_URL}{{retention}}}
  - name: dir
    type: ldap
    config: {url: "{{ldap}}", bindDN: "{{ldapAdmin}}", bindPassword: env:E2E_LDAP_PW, baseDN: "{{people}}"}
    {{retentionLine}}
  - {name: cache, type: redis, config: {addr: "{{redis}}"}{{retention}}}
  - {name: maria, type: mysql, config: {dsn: env:E2E_MYSQL_DSN}{{retention}}}
entitlements:
  - {name: api, system: vault}
  - {name: app-read, system: appdb, target: {role: e2e_app_read}}
  - {name: devs, system: dir, target: {group: "{{devs}}"}}
  - {name: cache-read, system: cache, target: {rules: ["+@read", "+ping", "~e2e:*"]}}
  - {name: maria-read, system: maria, target: {database: e2e_app, privileges: [SELECT]}}
  - {name: cache-ops, system: cache, target: {rules: ["+set", "~e2e-ops:*"]}}
birthright:
  - name: engineering
    when: identity.attributes.department == "Engineering"
    entitlements: [api, app-read, devs, cache-read, maria-read]
  - name: ops
    when: identity.attributes.department == "Ops"
    entitlements: [cache-ops]
credentials:
  - {name: api-key, when: 'identity.kind == "human"', system: vault, type: api_key, ttl: 90d}
  - {name: pg-pw, when: 'identity.kind == "human"', system: appdb, type: password, ttl: 30d}
  - {name: dir-pw, when: 'identity.kind == "human"', system: dir, type: password}
  - {name: cache-pw, when: 'identity.kind == "human"', system: cache, type: password}
  - {name: maria-pw, when: 'identity.kind == "human"', system: maria, type: password}
`

// policyText is policyYAML with its servers filled in, Redis at redis and,
// when given, every target system's account retention.
func policyText(redis string, deleteAfter []string) string {
	retention, retentionLine := "", ""
	if len(deleteAfter) > 0 {
		retention, retentionLine = ", deleteAfter: "+deleteAfter[0], "deleteAfter: "+deleteAfter[0]
	}
	return strings.NewReplacer("{{ldap}}", dir.URL, "{{ldapAdmin}}", testsvc.SlapdAdminDN, "{{people}}", testsvc.SlapdPeople,
		"{{devs}}", devsGroup, "{{redis}}", redis, "{{retention}}", retention, "{{retentionLine}}", retentionLine).Replace(policyYAML)
}

type fixture struct {
	e       *engine.Engine
	s       store.Store
	proxy   *testsvc.Proxy // in front of Redis
	reg     *prometheus.Registry
	account string
	dbURL   string // the PostgreSQL store's database, "" on SQLite
}

var admin = engine.Principal{ID: "tok_e2e_admin", Role: engine.RoleAdmin}

// setup starts an engine for account's tests; deleteAfter, when given,
// is every target system's account retention.
func setup(t *testing.T, account string, deleteAfter ...string) *fixture {
	t.Helper()
	return setupWith(t, options{account: account, deleteAfter: deleteAfter})
}

// setupOn is setup on a backend: "sqlite", or "postgres" (a database of
// the test's own on the machine's server).
func setupOn(t *testing.T, backend, account string) *fixture {
	t.Helper()
	return setupWith(t, options{backend: backend, account: account})
}

// options are a fixture's variations.
type options struct {
	backend, account string
	deleteAfter      []string
	// edit, when set, rewrites the policy text.
	edit func(string) string
	// sweep, when set, runs the expiry sweep that often (else never).
	sweep time.Duration
}

func setupWith(t *testing.T, o options) *fixture {
	t.Helper()
	account, deleteAfter, backend := o.account, o.deleteAfter, o.backend
	ctx := context.Background()
	proxy, err := testsvc.StartProxy(redisAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	text := policyText(proxy.Addr, deleteAfter)
	if o.edit != nil {
		text = o.edit(text)
	}
	pol, err := policy.Parse("e2e.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var s store.Store
	var dbURL string
	if backend == "postgres" {
		dbURL = pgtest.NewDatabase(t)
		s, err = postgres.Open(ctx, dbURL, postgres.Options{})
	} else {
		s, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "jml.db"), sqlite.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	key := make([]byte, 32)
	sealer, err := vault.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"E2E_PG_URL": pg.URL, "E2E_LDAP_PW": dir.Password, "E2E_MYSQL_DSN": mysqlDSN}
	reg := prometheus.NewRegistry()
	e, err := engine.New(engine.Config{Store: s, Policy: pol, Sealer: sealer, Open: connectors.Open,
		Getenv: func(k string) string { return env[k] }, Metrics: engine.NewMetrics(reg),
		// A failed fast-path attempt is retried by the case's job; a short
		// grace keeps the target-down test short.
		FastPathGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(e.Collector())
	t.Cleanup(func() { e.Close() })
	jctx, cancel := context.WithCancel(ctx)
	jobs := store.JobConfig{Workers: 8, FetchCooldown: time.Millisecond, PollInterval: 20 * time.Millisecond}
	if o.sweep > 0 {
		jobs.Periodic = e.PeriodicJobs(o.sweep)
	}
	if err := s.Jobs().Start(jctx, e.Workers(), jobs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		s.Jobs().Stop(stop)
		cancel()
	})
	f := &fixture{e: e, s: s, proxy: proxy, reg: reg, account: account, dbURL: dbURL}
	f.cleanupAccounts()
	t.Cleanup(f.cleanupAccounts)
	return f
}

// cleanupAccounts removes the test's accounts from the shared servers.
func (f *fixture) cleanupAccounts() {
	if f.account == "" {
		return // named later (TestSCIMDeactivationRevokesEverywhere)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	rc.Do(context.Background(), "ACL", "DELUSER", f.account)
	rc.Close()
	mysqlAdmin.Exec("DROP USER IF EXISTS `" + f.account + "`@'%'")
}

// submit submits an event and waits until its case is final.
func (f *fixture) submit(t *testing.T, ev identity.Event) *cases.Case {
	t.Helper()
	res, err := f.e.Submit(context.Background(), admin, ev)
	if err != nil {
		t.Fatalf("submit %s: %v", ev.Type, err)
	}
	return f.waitCase(t, res.CaseID, 60*time.Second, func(c *cases.Case) bool {
		return c.Status == cases.Completed || c.Status == cases.Failed
	})
}

// complete submits an event and fails the test unless its case completes.
func (f *fixture) complete(t *testing.T, ev identity.Event) *cases.Case {
	t.Helper()
	c := f.submit(t, ev)
	if c.Status != cases.Completed {
		t.Fatalf("%s: %s (%s)\n%s", ev.Type, c.Status, c.Reason, steps(c))
	}
	return c
}

func (f *fixture) waitCase(t *testing.T, id string, timeout time.Duration, done func(*cases.Case) bool) *cases.Case {
	t.Helper()
	var c *cases.Case
	poll.Until(t, timeout, 20*time.Millisecond, func() (bool, string) {
		err := f.s.View(context.Background(), func(tx store.Tx) error {
			var err error
			c, err = tx.GetCase(context.Background(), id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return done(c), fmt.Sprintf("case %s after %s: %s (%s)\n%s", id, timeout, c.Status, c.Reason, steps(c))
	})
	return c
}

func steps(c *cases.Case) string {
	var b strings.Builder
	for _, s := range c.Steps {
		fmt.Fprintf(&b, "  %d %s %s %s: %s %s %s\n", s.Seq, s.Action, s.System, s.Entitlement, s.Status, s.Result, s.LastError)
	}
	return b.String()
}

// secrets reveals the identity's credentials, by system.
func (f *fixture) secrets(t *testing.T, identityID string) map[string]string {
	t.Helper()
	var creds []identity.Credential
	f.s.View(context.Background(), func(tx store.Tx) error {
		var err error
		creds, err = tx.ListCredentials(context.Background(), identityID, true)
		return err
	})
	out := map[string]string{}
	for _, c := range creds {
		secret, _, err := f.e.Reveal(context.Background(), admin, c.ID)
		if err != nil {
			t.Fatalf("reveal %s (%s): %v", c.ID, c.System, err)
		}
		out[c.System] = secret
	}
	if len(out) != 5 {
		t.Fatalf("credentials by system: %v, want 5", len(out))
	}
	return out
}

// session is a live login to one system.
type session struct {
	check func() error
	close func()
}

// login opens a session on every system as the account, directly (not
// through the proxy), and fails the test if any login fails.
func login(t *testing.T, account string, secrets map[string]string) map[string]session {
	t.Helper()
	out := map[string]session{}
	for sys, secret := range secrets {
		if sys == "vault" {
			continue
		}
		s, err := loginTo(sys, account, secret)
		if err != nil {
			t.Fatalf("login to %s as %s: %v", sys, account, err)
		}
		if err := s.check(); err != nil {
			t.Fatalf("session on %s: %v", sys, err)
		}
		out[sys] = s
	}
	return out
}

func loginTo(sys, account, secret string) (session, error) {
	ctx := context.Background()
	switch sys {
	case "appdb":
		cfg, err := pgx.ParseConfig(pg.URL)
		if err != nil {
			return session{}, err
		}
		cfg.User, cfg.Password = account, secret
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return session{}, err
		}
		return session{check: func() error { return c.Ping(ctx) }, close: func() { c.Close(ctx) }}, nil
	case "dir":
		l, err := ldap.DialURL(dir.URL)
		if err != nil {
			return session{}, err
		}
		dn := "uid=" + ldap.EscapeDN(account) + "," + testsvc.SlapdPeople
		if err := l.Bind(dn, secret); err != nil {
			l.Close()
			return session{}, err
		}
		return session{check: func() error {
			res, err := l.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"cn"}, nil))
			if err == nil && len(res.Entries) == 0 {
				err = errors.New("own entry unreadable")
			}
			return err
		}, close: func() { l.Close() }}, nil
	case "cache":
		c := goredis.NewClient(&goredis.Options{Addr: redisAddr, Username: account, Password: secret, PoolSize: 1, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
		if err := c.Ping(ctx).Err(); err != nil {
			c.Close()
			return session{}, err
		}
		return session{check: func() error { return c.Ping(ctx).Err() }, close: func() { c.Close() }}, nil
	case "maria":
		base, err := driver.ParseDSN(mysqlDSN)
		if err != nil {
			return session{}, err
		}
		cfg := driver.NewConfig()
		cfg.Net, cfg.Addr, cfg.User, cfg.Passwd, cfg.Timeout = base.Net, base.Addr, account, secret, 5*time.Second
		conn, err := driver.NewConnector(cfg)
		if err != nil {
			return session{}, err
		}
		db := sql.OpenDB(conn)
		c, err := db.Conn(ctx)
		if err != nil {
			db.Close()
			return session{}, err
		}
		return session{check: func() error { var n int; return c.QueryRowContext(ctx, "SELECT COUNT(*) FROM e2e_app.t").Scan(&n) },
			close: func() { c.Close(); db.Close() }}, nil
	}
	return session{}, fmt.Errorf("unknown system %s", sys)
}

// assertLockedOut checks every live session is cut and no login works.
func assertLockedOut(t *testing.T, account string, secrets map[string]string, live map[string]session) {
	t.Helper()
	for sys, s := range live {
		if err := s.check(); err == nil {
			t.Errorf("%s: the session opened before the leaver still works", sys)
		}
		s.close()
		if s2, err := loginTo(sys, account, secrets[sys]); err == nil {
			if s2.check() == nil {
				t.Errorf("%s: a new login as %s works after the leaver", sys, account)
			}
			s2.close()
		}
	}
}

func joiner(account string) identity.Event {
	return identity.Event{Source: "hr", ID: "join-" + account, Type: identity.Joiner, ExternalID: account, Kind: identity.Human,
		Attributes: map[string]any{"department": "Engineering"}}
}

func leaver(account string) identity.Event {
	return identity.Event{Source: "hr", ID: "leave-" + account, Type: identity.Leaver, ExternalID: account}
}

// TestLeaverOnRealSystems: a joiner gets accounts, entitlements and
// passwords in PostgreSQL, LDAP, Redis and MariaDB, and jml's own API key;
// the leaver cuts every live session, every login and the key.
func TestLeaverOnRealSystems(t *testing.T) {
	t.Parallel()
	const account = "e2e.alice"
	f := setup(t, account)
	c := f.complete(t, joiner(account))
	secrets := f.secrets(t, c.IdentityID)
	live := login(t, account, secrets)
	if in, err := f.e.Introspect(context.Background(), secrets["vault"]); err != nil || !in.Active {
		t.Fatalf("API key before the leaver: %+v, %v", in, err)
	}

	c = f.complete(t, leaver(account))
	disabled := map[string]bool{}
	for _, s := range c.Steps {
		if s.Status != cases.StepDone || s.Result == "" {
			t.Errorf("leaver step %d %s %s: %s %q", s.Seq, s.Action, s.System, s.Status, s.Result)
		}
		if s.Action == "disable_account" {
			disabled[s.System] = true
		}
	}
	for _, sys := range []string{"appdb", "dir", "cache", "maria"} {
		if !disabled[sys] {
			t.Errorf("the leaver's case has no disable_account step for %s:\n%s", sys, steps(c))
		}
	}
	t.Logf("leaver case:\n%s", steps(c))
	assertLockedOut(t, account, secrets, live)
	if in, err := f.e.Introspect(context.Background(), secrets["vault"]); err != nil || in.Active {
		t.Fatalf("API key after the leaver: %+v, %v", in, err)
	}
}

// TestLeaverWhileTargetDown: Redis is unreachable when the leaver comes;
// the other systems complete, the case says what it waits on, the
// pending-revocations metric counts Redis's steps, and when Redis is back
// the case completes and nothing is left enabled.
func TestLeaverWhileTargetDown(t *testing.T) {
	t.Parallel()
	const account = "e2e.bob"
	f := setup(t, account)
	c := f.complete(t, joiner(account))
	secrets := f.secrets(t, c.IdentityID)
	live := login(t, account, secrets)

	f.proxy.Down()
	res, err := f.e.Submit(context.Background(), admin, leaver(account))
	if err != nil {
		t.Fatal(err)
	}
	c = f.waitCase(t, res.CaseID, 30*time.Second, func(c *cases.Case) bool {
		for _, s := range c.Steps {
			if s.System != "cache" && s.Status != cases.StepDone {
				return false
			}
		}
		return strings.HasPrefix(c.Reason, "waiting on cache: ")
	})
	if c.Status != cases.Running {
		t.Fatalf("with Redis down the case is %s, want running", c.Status)
	}
	if n := gauge(t, f.reg, "jml_pending_revocations", "cache"); n < 1 {
		t.Fatalf("jml_pending_revocations{system=cache} = %v with Redis down", n)
	}
	if n := gauge(t, f.reg, "jml_pending_revocations", "appdb"); n != 0 {
		t.Fatalf("jml_pending_revocations{system=appdb} = %v, want 0", n)
	}
	t.Logf("while down: %s", c.Reason)

	f.proxy.Up()
	c = f.waitCase(t, res.CaseID, 60*time.Second, func(c *cases.Case) bool { return c.Status != cases.Running })
	if c.Status != cases.Completed {
		t.Fatalf("after Redis came back: %s (%s)\n%s", c.Status, c.Reason, steps(c))
	}
	if n := gauge(t, f.reg, "jml_pending_revocations", "cache"); n != 0 {
		t.Fatalf("jml_pending_revocations{system=cache} = %v after completion", n)
	}
	assertLockedOut(t, account, secrets, live)
}

func gauge(t *testing.T, reg *prometheus.Registry, name, system string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "system" && l.GetValue() == system {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{system=%q} not exported", name, system)
	return 0
}

// TestAccountsDeletedAfterRetention: with deleteAfter on every system, a
// leaver's accounts are disabled at once and, when the retention has
// passed, deleted from PostgreSQL, LDAP, Redis and MariaDB by retention
// cases that River's timers open; the account rows stay, as deleted.
func TestAccountsDeletedAfterRetention(t *testing.T) {
	t.Parallel()
	const account = "e2e.carol"
	f := setup(t, account, "1s")
	f.complete(t, joiner(account))
	for _, sys := range []string{"appdb", "dir", "cache", "maria"} {
		if !accountExists(t, sys, account) {
			t.Fatalf("%s: no account after the joiner", sys)
		}
	}
	c := f.complete(t, leaver(account))
	ctx := context.Background()
	poll.Until(t, 30*time.Second, 50*time.Millisecond, func() (bool, string) {
		var accounts []identity.Account
		if err := f.s.View(ctx, func(tx store.Tx) error {
			var err error
			accounts, err = tx.ListAccounts(ctx, c.IdentityID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		deleted := 0
		for _, a := range accounts {
			if a.Status == identity.AccountDeleted {
				deleted++
			}
		}
		return len(accounts) == 4 && deleted == 4, fmt.Sprintf("accounts 30 s after a 1 s retention: %+v", accounts)
	})
	for _, sys := range []string{"appdb", "dir", "cache", "maria"} {
		if accountExists(t, sys, account) {
			t.Errorf("%s: the account is still there after its retention", sys)
		}
	}
	var caseList []cases.Case
	if err := f.s.View(ctx, func(tx store.Tx) error {
		var err error
		caseList, err = tx.ListCases(ctx, c.IdentityID, 20)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	retention := 0
	for _, rc := range caseList {
		if rc.Type == engine.CaseRetention {
			retention++
			if rc.Status != cases.Completed {
				t.Errorf("retention case %s: %s (%s)", rc.ID, rc.Status, rc.Reason)
			}
		}
	}
	if retention != 4 {
		t.Errorf("%d retention cases, want one per system", retention)
	}
}

// accountExists asks the system itself, as its administrator.
func accountExists(t *testing.T, sys, account string) bool {
	t.Helper()
	ctx := context.Background()
	var n int
	var err error
	switch sys {
	case "appdb":
		var c *pgx.Conn
		if c, err = pgx.Connect(ctx, pg.URL); err == nil {
			err = c.QueryRow(ctx, "SELECT COUNT(*) FROM pg_roles WHERE rolname = $1", account).Scan(&n)
			c.Close(ctx)
		}
	case "dir":
		var l *ldap.Conn
		if l, err = ldap.DialURL(dir.URL); err == nil {
			if err = l.Bind(testsvc.SlapdAdminDN, dir.Password); err == nil {
				var res *ldap.SearchResult
				res, err = l.Search(ldap.NewSearchRequest(testsvc.SlapdPeople, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
					"(uid="+ldap.EscapeFilter(account)+")", []string{"uid"}, nil))
				if err == nil {
					n = len(res.Entries)
				}
			}
			l.Close()
		}
	case "cache":
		rc := goredis.NewClient(&goredis.Options{Addr: redisAddr})
		var users []string
		if users, err = rc.Do(ctx, "ACL", "USERS").StringSlice(); err == nil {
			for _, u := range users {
				if u == account {
					n++
				}
			}
		}
		rc.Close()
	case "maria":
		err = mysqlAdmin.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.user WHERE User = ?", account).Scan(&n)
	}
	if err != nil {
		t.Fatalf("%s: looking up %s: %v", sys, account, err)
	}
	return n > 0
}
