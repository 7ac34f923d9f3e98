package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/invariant"
	"github.com/jml-dev/jml/internal/poll"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/testsvc"
)

// dropAccounts removes accounts from the shared Redis and MariaDB (the
// PostgreSQL server and the directory are the test run's own).
func dropAccounts(accounts []string) {
	rc := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	defer rc.Close()
	for _, a := range accounts {
		rc.Do(context.Background(), "ACL", "DELUSER", a)
		mysqlAdmin.Exec("DROP USER IF EXISTS `" + a + "`@'%'")
	}
}

// quiesce waits until no step of any case is pending, twice in a row.
func (f *fixture) quiesce(t *testing.T, timeout time.Duration) {
	t.Helper()
	calm := 0
	poll.Until(t, timeout, 50*time.Millisecond, func() (bool, string) {
		var counts []store.StepCount
		if err := f.s.View(context.Background(), func(tx store.Tx) error {
			var err error
			counts, err = tx.CountPendingSteps(context.Background())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		calm++
		for _, c := range counts {
			if c.Count > 0 {
				calm = 0
			}
		}
		return calm >= 2, fmt.Sprintf("not quiesced after %s: %+v", timeout, counts)
	})
}

// checkInvariant reads Redis, PostgreSQL and MariaDB as their
// administrators and fails the test for every way they disagree with jml's
// invariant for the accounts (source hr).
func (f *fixture) checkInvariant(t *testing.T, accounts []string) {
	t.Helper()
	rc := goredis.NewClient(&goredis.Options{Addr: redisAddr, Protocol: 2})
	defer rc.Close()
	targets := map[string]invariant.Target{
		"cache": invariant.Redis{Client: rc},
		"appdb": invariant.Postgres{URL: pg.URL, Roles: []string{"e2e_app_read"}},
		"maria": invariant.MariaDB{DB: mysqlAdmin, Host: "%"},
		"dir":   invariant.LDAP{URL: dir.URL, BindDN: testsvc.SlapdAdminDN, Password: dir.Password, People: testsvc.SlapdPeople, Groups: testsvc.SlapdGroups},
	}
	vs, err := invariant.Check(context.Background(), f.s, "hr", accounts, targets)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Error(v)
	}
}

// names returns n account names under prefix.
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

// TestJoinerThenLeaverBackToBack: an HR feed sends a hire and its
// cancellation; the leaver arrives while the joiner's calls are in flight.
// Nothing may be left enabled.
func TestJoinerThenLeaverBackToBack(t *testing.T) {
	t.Parallel()
	accounts := names("e2e.jl", 20)
	f := setup(t, "")
	dropAccounts(accounts)
	t.Cleanup(func() { dropAccounts(accounts) })
	ctx := context.Background()
	for _, a := range accounts {
		if _, err := f.e.Submit(ctx, admin, joiner(a)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.e.Submit(ctx, admin, leaver(a)); err != nil {
			t.Fatal(err)
		}
	}
	f.quiesce(t, 60*time.Second)
	f.checkInvariant(t, accounts)
}

// TestNarrowingMoverRightAfterWidening: a move into ops (a Redis
// entitlement on ops:*) and straight back out; the ops access must not
// stay.
func TestNarrowingMoverRightAfterWidening(t *testing.T) {
	t.Parallel()
	accounts := names("e2e.mv", 10)
	f := setup(t, "")
	dropAccounts(accounts)
	t.Cleanup(func() { dropAccounts(accounts) })
	ctx := context.Background()
	for _, a := range accounts {
		f.complete(t, joiner(a))
	}
	for _, a := range accounts {
		for i, dept := range []string{"Ops", "Engineering"} {
			ev := identity.Event{Source: "hr", ID: fmt.Sprintf("move-%s-%d", a, i), Type: identity.Mover, ExternalID: a,
				Attributes: map[string]any{"department": dept}}
			if _, err := f.e.Submit(ctx, admin, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.quiesce(t, 60*time.Second)
	f.checkInvariant(t, accounts)
}

// TestMoverAndLeaverAtOnce: for each person a mover and a leaver are sent
// in parallel, on both backends; every one must end departed with nothing
// left.
func TestMoverAndLeaverAtOnce(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) { moverAndLeaverAtOnce(t, backend) })
	}
}

func moverAndLeaverAtOnce(t *testing.T, backend string) {
	accounts := names("e2e.ml"+backend[:2], 20)
	f := setupOn(t, backend, "")
	dropAccounts(accounts)
	t.Cleanup(func() { dropAccounts(accounts) })
	ctx := context.Background()
	for _, a := range accounts {
		ev := joiner(a)
		ev.Attributes = map[string]any{"department": "Sales"}
		f.complete(t, ev)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(accounts))
	for _, a := range accounts {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := f.e.Submit(ctx, admin, identity.Event{Source: "hr", ID: "move-" + a, Type: identity.Mover, ExternalID: a,
				Attributes: map[string]any{"department": "Engineering"}})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := f.e.Submit(ctx, admin, leaver(a))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		// A mover that arrives after the leaver is refused: a departed
		// identity does not move.
		if err != nil && identity.ErrorCode(err) != identity.Conflict && !strings.Contains(err.Error(), "departed") {
			t.Error(err)
		}
	}
	f.quiesce(t, 60*time.Second)
	f.checkInvariant(t, accounts)
}

// TestLeaverWhileTargetHangs: Redis accepts connections and answers
// nothing. Within two seconds the leaver's case says what it waits on and
// every other system is revoked; when Redis answers again the case
// completes with nothing left.
func TestLeaverWhileTargetHangs(t *testing.T) {
	t.Parallel()
	const account = "e2e.hung"
	f := setup(t, account)
	c := f.complete(t, joiner(account))
	f.proxy.Hang()
	start := time.Now()
	res, err := f.e.Submit(context.Background(), admin, leaver(account))
	if err != nil {
		t.Fatal(err)
	}
	c = f.waitCase(t, res.CaseID, 2*time.Second, func(c *cases.Case) bool {
		for _, s := range c.Steps {
			if s.System != "cache" && s.Status != cases.StepDone {
				return false
			}
		}
		return strings.HasPrefix(c.Reason, "waiting on cache: no answer from cache within")
	})
	t.Logf("after %s: %s", time.Since(start).Round(time.Millisecond), c.Reason)
	f.proxy.Up()
	c = f.waitCase(t, res.CaseID, 30*time.Second, func(c *cases.Case) bool { return c.Status != cases.Running })
	if c.Status != cases.Completed {
		t.Fatalf("after Redis answered again: %s (%s)\n%s", c.Status, c.Reason, steps(c))
	}
	f.quiesce(t, 30*time.Second)
	f.checkInvariant(t, []string{account})
}

// TestNamesASystemCannotHold: a joiner whose external ID a system of its
// plan cannot hold is refused when it is submitted, naming the system and
// its rule, and nothing is stored.
func TestNamesASystemCannotHold(t *testing.T) {
	t.Parallel()
	f := setup(t, "")
	for _, tc := range []struct{ name, system string }{
		{"q:colon", "cache"},
		{"q/slash", "cache"},
		{"e2e." + strings.Repeat("x", 60), "appdb"},
		{"pg_reserved", "appdb"},
	} {
		_, err := f.e.Submit(context.Background(), admin, joiner(tc.name))
		if identity.ErrorCode(err) != identity.Invalid || !strings.Contains(err.Error(), "system "+tc.system) {
			t.Errorf("joiner %q: %v, want invalid naming system %s", tc.name, err, tc.system)
			continue
		}
		t.Logf("%s: %v", tc.name, err)
		rec, err := invariant.Read(context.Background(), f.s, "hr", tc.name)
		if err != nil || rec.Identity.State != identity.None {
			t.Errorf("joiner %q was refused but jml stored %+v (%v)", tc.name, rec.Identity, err)
		}
	}
}

// TestPermanentErrorFailsAtOnce: PostgreSQL refuses to manage a superuser
// (a permanent error): the step fails on its first attempt and the case
// needs attention, instead of being retried for hours.
func TestPermanentErrorFailsAtOnce(t *testing.T) {
	t.Parallel()
	const account = "e2e_super"
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, "CREATE ROLE e2e_super SUPERUSER NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Exec(context.Background(), "DROP ROLE IF EXISTS e2e_super") })
	f := setup(t, account)
	c := f.submit(t, joiner(account))
	if c.Status != cases.Failed {
		t.Fatalf("joiner of a superuser's name: %s (%s), want failed\n%s", c.Status, c.Reason, steps(c))
	}
	for _, s := range c.Steps {
		if s.System == "appdb" && s.Status == cases.StepFailed && s.Attempts != 1 {
			t.Errorf("step %d failed after %d attempts, want 1", s.Seq, s.Attempts)
		}
	}
	var login bool
	if err := pc.QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'e2e_super'").Scan(&login); err != nil || login {
		t.Errorf("the superuser's LOGIN = %v, %v; jml must not touch it", login, err)
	}
	t.Logf("%s", c.Reason)
}

// TestAccountsMadeOutsideJMLAreNotTakenOver: a PostgreSQL role, a MariaDB
// user and a Redis user with every permission exist before the joiner of
// their name. Each of those systems' steps fails with an
// account_exists_unmanaged finding and nothing in the accounts changes;
// with adopt: true, Redis's user is reset and taken over.
func TestAccountsMadeOutsideJMLAreNotTakenOver(t *testing.T) {
	t.Parallel()
	const account = "e2e.outside"
	ctx := context.Background()
	pc, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	rc := goredis.NewClient(&goredis.Options{Addr: redisAddr, Protocol: 2})
	defer rc.Close()
	made := func() {
		for _, q := range []string{`DROP ROLE IF EXISTS "e2e.outside"`, `CREATE ROLE "e2e.outside" LOGIN PASSWORD 'theirs-pg'`, `GRANT e2e_app_read TO "e2e.outside"`} {
			if _, err := pc.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range []string{"DROP USER IF EXISTS `e2e.outside`@'%'", "CREATE USER `e2e.outside`@'%' IDENTIFIED BY 'theirs-maria'", "GRANT ALL ON e2e_app.* TO `e2e.outside`@'%'"} {
			if _, err := mysqlAdmin.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if err := rc.Do(ctx, "ACL", "SETUSER", account, "reset", "on", ">theirs-redis", "~*", "+@all").Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { pc.Exec(context.Background(), `DROP ROLE IF EXISTS "e2e.outside"`) })
	made()
	f := setup(t, account)
	made() // setup removed the Redis and MariaDB users
	c := f.submit(t, joiner(account))
	// A case fails as soon as one step gives up; another system's
	// ensure_account may still be retrying (a slow answer on a loaded
	// machine): wait until each has an outcome.
	c = f.waitCase(t, c.ID, 20*time.Second, func(c *cases.Case) bool {
		for _, s := range c.Steps {
			if s.Action == "ensure_account" && s.Status == cases.StepPending {
				return false
			}
		}
		return true
	})
	if c.Status != cases.Failed {
		t.Fatalf("joiner over accounts made outside jml: %s, want failed\n%s", c.Status, steps(c))
	}
	for _, s := range c.Steps {
		if s.Action == "ensure_account" && s.System != "dir" && (s.Status != cases.StepFailed || !strings.Contains(s.LastError, "jml did not create it")) {
			t.Errorf("step %d %s %s: %s %s", s.Seq, s.Action, s.System, s.Status, s.LastError)
		}
		if s.Status == cases.StepDone && (s.System == "appdb" || s.System == "cache" || s.System == "maria") {
			t.Errorf("step %d %s %s ran on an account jml did not create", s.Seq, s.Action, s.System)
		}
	}
	var findings []identity.Finding
	f.s.View(ctx, func(tx store.Tx) error {
		findings, err = tx.ListFindings(ctx, store.FindingFilter{IdentityID: c.IdentityID, Kind: identity.FindingAccountExistsUnmanaged})
		return err
	})
	bySystem := map[string]bool{}
	for _, fd := range findings {
		bySystem[fd.System] = true
		t.Logf("finding: %s", fd.Message)
	}
	if !bySystem["appdb"] || !bySystem["maria"] || !bySystem["cache"] || len(findings) != 3 {
		t.Errorf("account_exists_unmanaged findings by system: %v, want appdb, cache and maria", bySystem)
	}
	// Untouched: each still logs in with its own password and keeps its
	// privileges.
	for sys, secret := range map[string]string{"appdb": "theirs-pg", "maria": "theirs-maria", "cache": "theirs-redis"} {
		s, err := loginTo(sys, account, secret)
		if err != nil {
			t.Errorf("%s: the account's own password no longer works: %v", sys, err)
			continue
		}
		if err := s.check(); err != nil {
			t.Errorf("%s: the account lost its own access: %v", sys, err)
		}
		s.close()
	}
	if err := goredis.NewClient(&goredis.Options{Addr: redisAddr, Username: account, Password: "theirs-redis", Protocol: 2}).Set(ctx, "anykey", "1", 0).Err(); err != nil {
		t.Errorf("Redis: the user's own permissions changed: %v", err)
	}
	rc.Del(ctx, "anykey")
}

// TestAdoptResetsAndTakesOver: with adopt: true on Redis, a user made
// outside jml with every permission is reset and taken over: its own
// password and permissions stop working, jml's grant and password work,
// and an account_adopted finding records it.
func TestAdoptResetsAndTakesOver(t *testing.T) {
	t.Parallel()
	const account = "e2e.adopted"
	ctx := context.Background()
	f := setupWith(t, options{account: account, edit: func(p string) string {
		return strings.Replace(p, `config: {addr: "`, `adopt: true, config: {addr: "`, 1)
	}})
	rc := goredis.NewClient(&goredis.Options{Addr: redisAddr, Protocol: 2})
	defer rc.Close()
	if err := rc.Do(ctx, "ACL", "SETUSER", account, "reset", "on", ">theirs-redis", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	c := f.complete(t, joiner(account))
	secrets := f.secrets(t, c.IdentityID)
	if _, err := loginTo("cache", account, "theirs-redis"); err == nil {
		t.Error("the adopted user's own password still works")
	}
	s, err := loginTo("cache", account, secrets["cache"])
	if err != nil {
		t.Fatalf("jml's password for the adopted user: %v", err)
	}
	s.close()
	u := goredis.NewClient(&goredis.Options{Addr: redisAddr, Username: account, Password: secrets["cache"], Protocol: 2})
	defer u.Close()
	if err := u.Set(ctx, "other:key", "1", 0).Err(); err == nil {
		t.Error("the adopted user kept its permissions outside what policy grants")
	}
	var findings []identity.Finding
	f.s.View(ctx, func(tx store.Tx) error {
		findings, err = tx.ListFindings(ctx, store.FindingFilter{IdentityID: c.IdentityID, Kind: identity.FindingAccountAdopted})
		return err
	})
	if len(findings) != 1 || findings[0].System != "cache" {
		t.Fatalf("account_adopted findings: %+v", findings)
	}
	f.quiesce(t, 10*time.Second)
	f.checkInvariant(t, []string{account})
}

func invariantRedis(t *testing.T, account string) (invariant.Held, error) {
	rc := goredis.NewClient(&goredis.Options{Addr: redisAddr, Protocol: 2})
	defer rc.Close()
	return invariant.Redis{Client: rc}.Read(context.Background(), account)
}

func invariantRead(t *testing.T, st store.Store, account string) (*invariant.Recorded, error) {
	return invariant.Read(context.Background(), st, "hr", account)
}

// TestResumeRestoresWhatSuspendTookAway: LDAP's disable leaves every
// group and drops the password; after a suspend and a resume every system
// holds what jml records again, and the credentials jml shows active log
// in everywhere.
func TestResumeRestoresWhatSuspendTookAway(t *testing.T) {
	t.Parallel()
	const account = "e2e.resumed"
	f := setup(t, account)
	f.complete(t, joiner(account))
	f.complete(t, identity.Event{Source: "hr", ID: "suspend-" + account, Type: identity.Suspend, ExternalID: account})
	f.quiesce(t, 10*time.Second)
	f.checkInvariant(t, []string{account})
	c := f.complete(t, identity.Event{Source: "hr", ID: "resume-" + account, Type: identity.Resume, ExternalID: account})
	f.quiesce(t, 10*time.Second)
	f.checkInvariant(t, []string{account})
	live := login(t, account, f.secrets(t, c.IdentityID))
	for _, s := range live {
		s.close()
	}
}
