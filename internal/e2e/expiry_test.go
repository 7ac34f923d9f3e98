package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/connector/connectors"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/poll"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/postgres"
	"github.com/jml-dev/jml/internal/vault"
)

// opsFor2s makes the Ops entitlement in Redis time-bound: 2 s at most.
func opsFor2s(text string) string {
	const ops = `{name: cache-ops, system: cache, target: {rules: ["+set", "~e2e-ops:*"]}}`
	if !strings.Contains(text, ops) {
		panic("the e2e policy no longer has " + ops)
	}
	return strings.Replace(text, ops, `{name: cache-ops, system: cache, maxDuration: 2s, target: {rules: ["+set", "~e2e-ops:*"]}}`, 1)
}

// redisRules is the account's line of ACL LIST, read as Redis's
// administrator ("" when there is no such user).
func redisRules(t *testing.T, account string) string {
	t.Helper()
	rc := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	defer rc.Close()
	lines, err := rc.Do(context.Background(), "ACL", "LIST").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "user "+account+" ") {
			return l
		}
	}
	return ""
}

func opsJoiner(account string) identity.Event {
	return identity.Event{Source: "hr", ID: "join-" + account, Type: identity.Joiner, ExternalID: account, Kind: identity.Human,
		Attributes: map[string]any{"department": "Ops"}}
}

// waitExpired waits, in real seconds, until the account's time-bound Redis
// rules are gone from Redis and jml records no grant.
func waitExpired(t *testing.T, f *fixture, identityID, account string, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	poll.Until(t, within, 50*time.Millisecond, func() (bool, string) {
		var grants []identity.Grant
		if err := f.s.View(ctx, func(tx store.Tx) error {
			var err error
			grants, err = tx.ListGrants(ctx, identityID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		rules := redisRules(t, account)
		return len(grants) == 0 && !strings.Contains(rules, "e2e-ops"),
			fmt.Sprintf("%s after a 2 s grant: jml records %+v; Redis has %q", within, grants, rules)
	})
}

// TestGrantExpiresInRedis: a 2 s grant of Redis rules, with River running
// on the real clock, is gone from Redis within seconds of its expiry,
// revoked by its timer, audited once as grant.expired.
func TestGrantExpiresInRedis(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			account := "e2e.exp-" + backend
			f := setupWith(t, options{backend: backend, account: account, edit: opsFor2s})
			c := f.complete(t, opsJoiner(account))
			if rules := redisRules(t, account); !strings.Contains(rules, "~e2e-ops:*") {
				t.Fatalf("Redis after the joiner: %q, want the ops rules", rules)
			}
			var expires time.Time
			if err := f.s.View(context.Background(), func(tx store.Tx) error {
				gs, err := tx.ListGrants(context.Background(), c.IdentityID)
				for _, g := range gs {
					if g.Entitlement == "cache-ops" {
						expires = g.ExpiresAt
					}
				}
				return err
			}); err != nil || expires.IsZero() {
				t.Fatalf("the grant's expiry: %v, %v", expires, err)
			}
			// Until a moment before its expiry, the rules stay at every look.
			poll.Until(t, 10*time.Second, 50*time.Millisecond, func() (bool, string) {
				if time.Now().Before(expires.Add(-200 * time.Millisecond)) {
					if rules := redisRules(t, account); !strings.Contains(rules, "~e2e-ops:*") {
						t.Fatalf("at %s, before the expiry at %s, Redis has %q", time.Now().Format(time.RFC3339Nano), expires.Format(time.RFC3339Nano), rules)
					}
					return false, ""
				}
				return true, ""
			})
			waitExpired(t, f, c.IdentityID, account, 10*time.Second)
			if n := countAudit(t, f.s, c.IdentityID, "grant.expired"); n != 1 {
				t.Fatalf("grant.expired records = %d, want 1", n)
			}
		})
	}
}

// TestLostTimerSweptAcrossReplicas: two replicas on one PostgreSQL
// database, the grant's timer deleted behind jml's back; the periodic
// sweep (one runner across the replicas) revokes the grant in Redis once.
func TestLostTimerSweptAcrossReplicas(t *testing.T) {
	t.Parallel()
	const account = "e2e.sweep"
	ctx := context.Background()
	f := setupWith(t, options{backend: "postgres", account: account, edit: opsFor2s, sweep: time.Second})
	c := f.complete(t, opsJoiner(account))
	raw, err := pgx.Connect(ctx, f.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(ctx)
	tag, err := raw.Exec(ctx, "DELETE FROM river_job WHERE kind = 'jml.expire_grant'")
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("deleting the grant's timer: %v, %d rows", err, tag.RowsAffected())
	}

	// A second replica: its own store and engine on the same database,
	// with the same policy and jobs.
	s2, err := postgres.Open(ctx, f.dbURL, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	pol, err := policy.Parse("e2e.yaml", []byte(opsFor2s(policyText(f.proxy.Addr, nil))))
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := vault.NewSealer(make([]byte, 32))
	env := map[string]string{"E2E_PG_URL": pg.URL, "E2E_LDAP_PW": dir.Password, "E2E_MYSQL_DSN": mysqlDSN}
	e2, err := engine.New(engine.Config{Store: s2, Policy: pol, Sealer: sealer, Open: connectors.Open, Getenv: func(k string) string { return env[k] }, FastPathGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e2.Close() })
	jctx, cancel := context.WithCancel(ctx)
	if err := s2.Jobs().Start(jctx, e2.Workers(), store.JobConfig{Workers: 4, FetchCooldown: time.Millisecond, PollInterval: 20 * time.Millisecond,
		Periodic: e2.PeriodicJobs(time.Second)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		s2.Jobs().Stop(stop)
		cancel()
	})

	waitExpired(t, f, c.IdentityID, account, 20*time.Second)
	// Sweeps go on every second on the leader: give them time to find it
	// again, then count.
	poll.Until(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		var n int
		err := raw.QueryRow(ctx, "SELECT COUNT(*) FROM river_job WHERE kind = 'jml.expiry_sweep' AND state = 'completed'").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n >= 3, fmt.Sprintf("%d sweeps completed", n)
	})
	if n := countAudit(t, f.s, c.IdentityID, "grant.expired"); n != 1 {
		t.Fatalf("grant.expired records = %d, want 1", n)
	}
}

// countAudit counts the identity's audit records of action.
func countAudit(t *testing.T, s store.Store, identityID, action string) int {
	t.Helper()
	ctx := context.Background()
	if err := s.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.View(ctx, func(tx store.Tx) error {
		return audit.Scan(ctx, tx, identityID, func(r *audit.Record) error {
			if r.Action == action {
				n++
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
