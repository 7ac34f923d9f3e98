package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// held is what one system holds for an account, read as its administrator.
type held struct {
	exists, enabled, secret bool
	entitlements            int
}

func (h held) String() string {
	return fmt.Sprintf("exists=%v enabled=%v secret=%v entitlements=%d", h.exists, h.enabled, h.secret, h.entitlements)
}

// readTargets reads, as each system's administrator and not through jml,
// what Redis, PostgreSQL and MariaDB hold for account.
func readTargets(t *testing.T, account string) map[string]held {
	t.Helper()
	ctx := context.Background()
	out := map[string]held{}

	rc := goredis.NewClient(&goredis.Options{Addr: redisAddr, Protocol: 2})
	defer rc.Close()
	res, err := rc.Do(ctx, "ACL", "GETUSER", account).Result()
	var h held
	switch {
	case errors.Is(err, goredis.Nil) || (err == nil && res == nil):
	case err != nil:
		t.Fatalf("Redis ACL GETUSER %s: %v", account, err)
	default:
		h.exists = true
		fields := res.([]any)
		for i := 0; i+1 < len(fields); i += 2 {
			switch fields[i] {
			case "flags":
				for _, f := range fields[i+1].([]any) {
					h.enabled = h.enabled || f == "on"
				}
			case "passwords":
				h.secret = len(fields[i+1].([]any)) > 0
			case "selectors":
				h.entitlements = len(fields[i+1].([]any))
			}
		}
	}
	out["cache"] = h

	pc, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	h = held{}
	err = pc.QueryRow(ctx, `SELECT rolcanlogin, rolpassword IS NOT NULL,
		(SELECT count(*) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = a.oid AND g.rolname = 'e2e_app_read')
		FROM pg_authid a WHERE rolname = $1`, account).Scan(&h.enabled, &h.secret, &h.entitlements)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		t.Fatalf("PostgreSQL role %s: %v", account, err)
	default:
		h.exists = true
	}
	out["appdb"] = h

	h = held{}
	var locked, auth sql.NullString
	err = mysqlAdmin.QueryRowContext(ctx, `SELECT JSON_VALUE(Priv, '$.account_locked'), JSON_VALUE(Priv, '$.authentication_string')
		FROM mysql.global_priv WHERE User = ? AND Host = '%'`, account).Scan(&locked, &auth)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		t.Fatalf("MariaDB user %s: %v", account, err)
	default:
		// A locked account logs in with nothing; an unlocked one always has
		// a hash (jml's unusable one when it set none), so whether its
		// secret is one jml issued cannot be told here.
		h.exists, h.enabled = true, locked.String != "1" && locked.String != "true"
		h.secret = h.enabled && auth.String != ""
		grantee := "'" + account + "'@'%'"
		if err := mysqlAdmin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?", grantee).Scan(&h.entitlements); err != nil {
			t.Fatal(err)
		}
	}
	out["maria"] = h
	return out
}

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
	deadline := time.Now().Add(timeout)
	calm := 0
	for calm < 2 {
		var counts []store.StepCount
		if err := f.s.View(context.Background(), func(tx store.Tx) error {
			var err error
			counts, err = tx.CountPendingSteps(context.Background())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range counts {
			n += c.Count
		}
		if n == 0 {
			calm++
		} else {
			calm = 0
		}
		if time.Now().After(deadline) {
			t.Fatalf("not quiesced after %s: %+v", timeout, counts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkInvariant reads every target as its administrator and checks jml's
// invariant for each account (source hr): an identity that is not active
// has no enabled account, secret or entitlement anywhere; an active one
// holds in each system exactly what jml records.
func (f *fixture) checkInvariant(t *testing.T, accounts []string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range accounts {
		var id *identity.Identity
		var grants []identity.Grant
		var creds []identity.Credential
		var accts []identity.Account
		err := f.s.View(ctx, func(tx store.Tx) error {
			var err error
			if id, err = tx.GetIdentityByExternalID(ctx, "hr", name); err != nil {
				return err
			}
			if grants, err = tx.ListGrants(ctx, id.ID); err != nil {
				return err
			}
			if creds, err = tx.ListCredentials(ctx, id.ID, true); err != nil {
				return err
			}
			accts, err = tx.ListAccounts(ctx, id.ID)
			return err
		})
		if store.IsNotFound(err) {
			id = &identity.Identity{State: identity.None}
		} else if err != nil {
			t.Fatal(err)
		}
		for sys, h := range readTargets(t, name) {
			if id.State != identity.Active {
				if h.enabled || h.secret || h.entitlements > 0 {
					t.Errorf("%s is %s in jml, but %s holds: %s", name, id.State, sys, h)
				}
				continue
			}
			want := held{}
			for _, a := range accts {
				if a.System == sys && a.Status != identity.AccountDeleted {
					want.exists, want.enabled = true, a.Status == identity.AccountActive
				}
			}
			for _, g := range grants {
				if g.System == sys {
					want.entitlements++
				}
			}
			for _, c := range creds {
				if c.System == sys {
					want.secret = true
				}
			}
			if sys == "maria" {
				h.secret = want.secret // see readTargets
			}
			if h != want {
				t.Errorf("%s is active in jml, which records in %s: %s; the system holds: %s", name, sys, want, h)
			}
		}
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

func (f *fixture) dumpCases(t *testing.T, account string) {
	ctx := context.Background()
	f.s.View(ctx, func(tx store.Tx) error {
		id, err := tx.GetIdentityByExternalID(ctx, "hr", account)
		if err != nil {
			return err
		}
		cs, _ := tx.ListCases(ctx, id.ID, 20)
		for _, c := range cs {
			full, _ := tx.GetCase(ctx, c.ID)
			t.Logf("%s %s %s %s\n%s", c.ID, c.Type, c.Status, c.Reason, steps(full))
		}
		return nil
	})
}
