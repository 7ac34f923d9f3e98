package bench

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/connector/connectors"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlite"
)

// systemsPolicy gives every engineer an account, one entitlement and a
// password in PostgreSQL, LDAP, Redis and MariaDB.
const systemsPolicy = `
systems:
  - {name: appdb, type: postgres, config: {url: env:BENCH_PG}}
  - name: dir
    type: ldap
    config: {url: "{{ldap}}", bindDN: "{{ldapAdmin}}", bindPassword: env:BENCH_LDAP_PW, baseDN: "{{people}}"}
  - {name: cache, type: redis, config: {addr: "{{redis}}"}}
  - {name: maria, type: mysql, config: {dsn: env:BENCH_MYSQL}}
entitlements:
  - {name: app-read, system: appdb, target: {role: jmlbench_app_read}}
  - {name: devs, system: dir, target: {group: "{{devs}}"}}
  - {name: cache-read, system: cache, target: {rules: ["+@read", "~jmlbench:*"]}}
  - {name: maria-read, system: maria, target: {database: jmlbench_app, privileges: [SELECT]}}
birthright:
  - {name: eng, when: 'identity.kind == "human"', entitlements: [app-read, devs, cache-read, maria-read]}
credentials:
  - {name: pg-pw, when: 'identity.kind == "human"', system: appdb, type: password, ttl: 30d}
  - {name: dir-pw, when: 'identity.kind == "human"', system: dir, type: password}
  - {name: cache-pw, when: 'identity.kind == "human"', system: cache, type: password}
  - {name: maria-pw, when: 'identity.kind == "human"', system: maria, type: password}
`

// systemsEnv is the four systems bench revokes in: the PostgreSQL server
// bench was given, a private slapd it starts, Redis and MariaDB.
type systemsEnv struct {
	pgURL string
	pg    *pgxpool.Pool
	ldap  *ldapServer
	redis *goredis.Client
	maria *sql.DB
	o     Options
}

func openSystems(ctx context.Context, o Options) (*systemsEnv, error) {
	env := &systemsEnv{o: o}
	env.pgURL = o.PostgresAdminURL
	var err error
	if env.pg, err = pgxpool.New(ctx, o.PostgresAdminURL); err != nil {
		return nil, fmt.Errorf("--postgres: %w", err)
	}
	fail := func(err error) (*systemsEnv, error) {
		env.close()
		return nil, err
	}
	if err := env.pg.Ping(ctx); err != nil {
		return fail(fmt.Errorf("PostgreSQL: %w", err))
	}
	if env.ldap, err = startLDAP(); err != nil {
		return fail(err)
	}
	l, err := env.ldapConn()
	if err != nil {
		return fail(err)
	}
	req := ldap.NewAddRequest(env.ldap.devsGroup(), nil)
	req.Attribute("objectClass", []string{"groupOfNames"})
	req.Attribute("member", []string{"cn=placeholder," + env.ldap.Suffix})
	err = l.Add(req)
	l.Close()
	if err != nil {
		return fail(err)
	}
	env.redis = goredis.NewClient(&goredis.Options{Addr: o.RedisAddr, Protocol: 2, DisableIdentity: true})
	if err := env.redis.Ping(ctx).Err(); err != nil {
		return fail(fmt.Errorf("Redis at %s: %w", o.RedisAddr, err))
	}
	if env.maria, err = sql.Open("mysql", o.MySQLDSN); err != nil {
		return fail(err)
	}
	env.cleanup(ctx)
	for _, q := range []string{"CREATE DATABASE jmlbench_app", "CREATE TABLE jmlbench_app.t (id INT)"} {
		if _, err := env.maria.ExecContext(ctx, q); err != nil {
			return fail(fmt.Errorf("MariaDB at %s: %w", o.MySQLDSN, err))
		}
	}
	if _, err := env.pg.Exec(ctx, "CREATE ROLE jmlbench_app_read NOLOGIN"); err != nil {
		return fail(err)
	}
	return env, nil
}

func (env *systemsEnv) ldapConn() (*ldap.Conn, error) {
	l, err := ldap.DialURL(env.ldap.URL)
	if err != nil {
		return nil, err
	}
	if err := l.Bind(env.ldap.AdminDN, env.ldap.Password); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// cleanup removes what bench made on the shared servers (users and roles
// named jmlbench*).
func (env *systemsEnv) cleanup(ctx context.Context) {
	if env.redis != nil {
		users, _ := env.redis.Do(ctx, "ACL", "USERS").StringSlice()
		for _, u := range users {
			if strings.HasPrefix(u, "jmlbench") {
				env.redis.Do(ctx, "ACL", "DELUSER", u)
			}
		}
	}
	if env.maria != nil {
		rows, err := env.maria.QueryContext(ctx, "SELECT User, Host FROM mysql.global_priv WHERE User LIKE 'jmlbench%'")
		if err == nil {
			var accts []string
			for rows.Next() {
				var u, h string
				rows.Scan(&u, &h)
				accts = append(accts, "`"+u+"`@`"+h+"`")
			}
			rows.Close()
			for _, a := range accts {
				env.maria.ExecContext(ctx, "DROP USER IF EXISTS "+a)
			}
		}
		env.maria.ExecContext(ctx, "DROP DATABASE IF EXISTS jmlbench_app")
	}
	if env.pg != nil {
		env.pg.Exec(ctx, `DO $$DECLARE r record; BEGIN
  FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'jmlbench%' ORDER BY rolname DESC LOOP
    EXECUTE format('DROP ROLE %I', r.rolname);
  END LOOP; END$$`)
	}
}

func (env *systemsEnv) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env.cleanup(ctx)
	if env.pg != nil {
		env.pg.Close()
	}
	if env.redis != nil {
		env.redis.Close()
	}
	if env.maria != nil {
		env.maria.Close()
	}
	if env.ldap != nil {
		env.ldap.stop()
	}
}

// systemsBench times leavers of identities with accounts in all four
// systems, from submitting the leaver to its case completing, and the same
// revocations issued directly by plain clients.
func systemsBench(ctx context.Context, o Options) error {
	env, err := openSystems(ctx, o)
	if err != nil {
		return err
	}
	defer env.close()
	n := o.RealLeavers

	text := strings.NewReplacer("{{ldap}}", env.ldap.URL, "{{ldapAdmin}}", env.ldap.AdminDN, "{{people}}", env.ldap.People,
		"{{devs}}", env.ldap.devsGroup(), "{{redis}}", o.RedisAddr).Replace(systemsPolicy)
	pol, err := policy.Parse("systems.yaml", []byte(text))
	if err != nil {
		return err
	}
	s, err := sqlite.Open(ctx, o.Dir+"/systems.db", sqlite.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	vars := map[string]string{"BENCH_PG": env.pgURL, "BENCH_LDAP_PW": env.ldap.Password, "BENCH_MYSQL": o.MySQLDSN}
	metrics := engine.NewMetrics(nil)
	e, err := engine.New(engine.Config{Store: s, Policy: pol, Sealer: mustSealer(), Logger: o.Log, Metrics: metrics,
		Open: connectors.Open, Getenv: func(k string) string { return vars[k] }})
	if err != nil {
		return err
	}
	defer e.Close()
	// Jobs run as jml serve runs them by default: the leavers' calls start
	// on the fast path, and a job system tuned for throughput would only
	// poll harder meanwhile.
	jobs := o.Jobs
	jobs.FetchCooldown, jobs.PollInterval = store.DefaultFetchCooldown, store.DefaultPollInterval
	if err := s.Jobs().Start(ctx, e.Workers(), jobs); err != nil {
		return err
	}
	defer func() {
		stop, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Jobs().Stop(stop)
	}()

	// Joiners, eight at a time, each until its case completes.
	name := func(i int) string { return fmt.Sprintf("jmlbench.u%d", i) }
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := submitAndWait(ctx, e, s, identity.Event{Source: "bench", ID: "join-" + name(i), Type: identity.Joiner, ExternalID: name(i), Kind: identity.Human})
			if err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return fmt.Errorf("joiners: %w", err)
	}

	// The joiners' completions are counted just after their commits: let
	// the count catch up before leavers are timed by it.
	if err := waitCompleted(ctx, metrics, int64(n), 0, time.Minute); err != nil {
		return fmt.Errorf("joiners: %w", err)
	}

	// Leavers, one at a time.
	jml, accepted := make([]time.Duration, 0, n), make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		acc, d, err := leaverAndWait(ctx, e, s, metrics, identity.Event{Source: "bench", ID: "leave-" + name(i), Type: identity.Leaver, ExternalID: name(i)})
		if err != nil {
			return fmt.Errorf("leaver %d: %w", i, err)
		}
		jml, accepted = append(jml, d), append(accepted, acc)
	}

	raw, err := env.rawRevocations(ctx, n)
	if err != nil {
		return fmt.Errorf("raw baseline: %w", err)
	}
	sortDurations(jml)
	sortDurations(accepted)
	sortDurations(raw)
	fmt.Fprintf(o.Out, "\ntime to revoke across real systems (%d leavers, each with an account, an entitlement and a password in PostgreSQL, LDAP, Redis and MariaDB; leaver submitted -> case completed; jobs as jml serve runs them, fetch cooldown %s, poll %s)\n", n, jobs.FetchCooldown, jobs.PollInterval)
	fmt.Fprintf(o.Out, "  jml:                p50 %s  p99 %s  (target p99 <= 250 ms)\n", ms(percentile(jml, 0.50)), ms(percentile(jml, 0.99)))
	fmt.Fprintf(o.Out, "    of which accepted: p50 %s  p99 %s  (the leaver committed to SQLite, fsynced, before any system is called)\n", ms(percentile(accepted, 0.50)), ms(percentile(accepted, 0.99)))
	fmt.Fprintf(o.Out, "  baseline raw calls: p50 %s  p99 %s  (the same revocations by plain clients, one system after another)\n", ms(percentile(raw, 0.50)), ms(percentile(raw, 0.99)))
	fmt.Fprintf(o.Out, "  ratio p50 %.2fx  p99 %.2fx  (goal <= 1.5x)\n",
		float64(percentile(jml, 0.50))/float64(percentile(raw, 0.50)), float64(percentile(jml, 0.99))/float64(percentile(raw, 0.99)))
	return nil
}

// leaverAndWait submits a leaver, the only case running, and times it to
// its completion as the engine counts it (after the commit that completes
// it), sleeping meanwhile: polling the store or the counters would take
// CPU from what is measured. The case is then checked in the store.
func leaverAndWait(ctx context.Context, e *engine.Engine, s store.Store, m *engine.Metrics, ev identity.Event) (accepted, took time.Duration, err error) {
	completed, failed := m.CasesCompleted(), m.CasesFailed()
	start := time.Now()
	res, err := e.Submit(ctx, admin, ev)
	if err != nil {
		return 0, 0, err
	}
	accepted = time.Since(start)
	// An error here (a failed case, the deadline) is reported from the
	// case below.
	_ = waitCompleted(ctx, m, completed+1, failed, 2*time.Minute)
	took = time.Since(start)
	var c *cases.Case
	if err := s.View(ctx, func(tx store.Tx) error {
		var err error
		c, err = tx.GetCase(ctx, res.CaseID)
		return err
	}); err != nil {
		return 0, 0, err
	}
	if c.Status != cases.Completed {
		return 0, 0, fmt.Errorf("case %s is %s: %s", c.ID, c.Status, c.Reason)
	}
	return accepted, took, nil
}

// submitAndWait submits ev and waits until its case is completed,
// returning the time from submission.
func submitAndWait(ctx context.Context, e *engine.Engine, s store.Store, ev identity.Event) (time.Duration, error) {
	start := time.Now()
	res, err := e.Submit(ctx, admin, ev)
	if err != nil {
		return 0, err
	}
	deadline := start.Add(2 * time.Minute)
	for {
		var c *cases.Case
		if err := s.View(ctx, func(tx store.Tx) error {
			var err error
			c, err = tx.GetCase(ctx, res.CaseID)
			return err
		}); err != nil {
			return 0, err
		}
		switch c.Status {
		case cases.Completed:
			return time.Since(start), nil
		case cases.Failed:
			return 0, fmt.Errorf("case %s failed: %s", c.ID, c.Reason)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("case %s not completed after 2 minutes: %s", c.ID, c.Reason)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// rawRevocations makes n accounts with plain clients as the connectors
// would, then times, per account, the revocations a leaver makes: in each
// system the password, the entitlement and the account, with the
// connections kept open as a plain client would.
func (env *systemsEnv) rawRevocations(ctx context.Context, n int) ([]time.Duration, error) {
	l, err := env.ldapConn()
	if err != nil {
		return nil, err
	}
	defer l.Close()
	name := func(i int) string { return fmt.Sprintf("jmlbench.r%d", i) }
	dn := func(i int) string { return "uid=" + ldap.EscapeDN(name(i)) + "," + env.ldap.People }
	pwHash := func(pw string) string { h := sha256.Sum256([]byte(pw)); return "#" + hex.EncodeToString(h[:]) }
	for i := 0; i < n; i++ {
		u := name(i)
		if _, err := env.pg.Exec(ctx, "CREATE ROLE "+pgx.Identifier{u}.Sanitize()+" LOGIN PASSWORD 'x' IN ROLE jmlbench_app_read"); err != nil {
			return nil, err
		}
		req := ldap.NewAddRequest(dn(i), nil)
		req.Attribute("objectClass", []string{"inetOrgPerson"})
		req.Attribute("uid", []string{u})
		req.Attribute("cn", []string{u})
		req.Attribute("sn", []string{u})
		req.Attribute("userPassword", []string{"x"})
		if err := l.Add(req); err != nil {
			return nil, err
		}
		m := ldap.NewModifyRequest(env.ldap.devsGroup(), nil)
		m.Add("member", []string{dn(i)})
		if err := l.Modify(m); err != nil {
			return nil, err
		}
		if err := env.redis.Do(ctx, "ACL", "SETUSER", u, "on", pwHash("x"), "-@all", "(+@read ~jmlbench:*)").Err(); err != nil {
			return nil, err
		}
		for _, q := range []string{"CREATE USER `" + u + "`@'%' IDENTIFIED BY 'x'", "GRANT SELECT ON jmlbench_app.* TO `" + u + "`@'%'"} {
			if _, err := env.maria.ExecContext(ctx, q); err != nil {
				return nil, err
			}
		}
	}
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		u := name(i)
		pgu := pgx.Identifier{u}.Sanitize()
		my := "`" + u + "`@'%'"
		start := time.Now()
		var errs []error
		for _, q := range []string{"ALTER ROLE " + pgu + " PASSWORD NULL", "REVOKE jmlbench_app_read FROM " + pgu, "ALTER ROLE " + pgu + " NOLOGIN"} {
			_, err := env.pg.Exec(ctx, q)
			errs = append(errs, err)
		}
		rows, err := env.pg.Query(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", u)
		if err == nil {
			rows.Close()
		}
		errs = append(errs, err)
		for _, args := range [][]any{{"ACL", "SETUSER", u, "resetpass"}, {"ACL", "SETUSER", u, "clearselectors"}, {"ACL", "SETUSER", u, "off"}, {"CLIENT", "KILL", "USER", u}} {
			errs = append(errs, env.redis.Do(ctx, args...).Err())
		}
		m := ldap.NewModifyRequest(dn(i), nil)
		m.Delete("userPassword", nil)
		errs = append(errs, l.Modify(m))
		m = ldap.NewModifyRequest(env.ldap.devsGroup(), nil)
		m.Delete("member", []string{dn(i)})
		errs = append(errs, l.Modify(m))
		m = ldap.NewModifyRequest(dn(i), nil)
		m.Replace("pwdAccountLockedTime", []string{"000001010000Z"})
		errs = append(errs, l.Modify(m))
		for _, q := range []string{"ALTER USER " + my + " IDENTIFIED BY PASSWORD '*0000000000000000000000000000000000000000'", "REVOKE SELECT ON jmlbench_app.* FROM " + my, "ALTER USER " + my + " ACCOUNT LOCK"} {
			_, err := env.maria.ExecContext(ctx, q)
			errs = append(errs, err)
		}
		var ids []int64
		rs, err := env.maria.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", u)
		if err == nil {
			for rs.Next() {
				var id int64
				rs.Scan(&id)
				ids = append(ids, id)
			}
			rs.Close()
		}
		errs = append(errs, err)
		out = append(out, time.Since(start))
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return out, nil
}
