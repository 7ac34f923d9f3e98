package engine

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/pgtest"
	"github.com/jml-dev/jml/internal/store/postgres"
	"github.com/jml-dev/jml/internal/store/sqlite"
)

// bothBackends runs fn on a fresh SQLite store and a fresh PostgreSQL
// store, each with a reader of its River jobs: (args JSON) of the jobs of
// kind.
func bothBackends(t *testing.T, fn func(t *testing.T, s store.Store, jobs func(kind string) []string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "jml.db")
		s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, s, func(kind string) []string {
			t.Helper()
			rows, err := db.Query("SELECT json(args) FROM river_job WHERE kind = ? ORDER BY id", kind)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []string
			for rows.Next() {
				var a []byte
				if err := rows.Scan(&a); err != nil {
					t.Fatal(err)
				}
				out = append(out, string(a))
			}
			return out
		})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		url := pgtest.NewDatabase(t)
		s, err := postgres.Open(ctx, url, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		fn(t, s, func(kind string) []string {
			t.Helper()
			rows, err := conn.Query(ctx, "SELECT args::text FROM river_job WHERE kind = $1 ORDER BY id", kind)
			if err != nil {
				t.Fatal(err)
			}
			out, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			return out
		})
	})
}

// approvedProdGrant joins alice and her agent with the production tool
// (critical: approval, at most 720h) and has it approved; it returns the
// agent and its grant.
func approvedProdGrant(t *testing.T, f *fixture) (string, identity.Grant) {
	t.Helper()
	ctx := context.Background()
	f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	res := f.submit(t, ev("2", identity.Joiner, "agent", func(e *identity.Event) {
		e.Kind, e.Owner, e.Attributes = identity.AIAgent, "alice", map[string]any{"tools": []any{"prod-db-write"}}
	}))
	lead := f.person(t, "lead", RoleApprover)
	// A clock with nanoseconds, as a real one has: the stored expiry is
	// microseconds.
	f.clock.Advance(1234567 * time.Nanosecond)
	if _, err := f.e.Decide(ctx, lead, res.CaseID, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.e.RunCase(ctx, res.CaseID, false); err != nil {
		t.Fatal(err)
	}
	var g identity.Grant
	if err := f.s.View(ctx, func(tx store.Tx) error {
		gs, err := tx.ListGrants(ctx, res.IdentityID)
		if err == nil && (len(gs) != 1 || gs[0].ExpiresAt.IsZero()) {
			t.Fatalf("grants %+v, want the approved time-bound one", gs)
		}
		g = gs[0]
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return res.IdentityID, g
}

// auditCount counts the identity's audit records of action, sealing first.
func auditCount(t *testing.T, s store.Store, identityID, action string) int {
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

// TestGrantExpiryTimer: approving a time-bound grant queues its timer at
// its expiry; the timer, with the arguments River stored (a real clock's
// nanoseconds included), revokes the grant at its time through an expiry
// case audited once; one that fires early reschedules itself; one that
// fires again finds nothing to do and says why.
func TestGrantExpiryTimer(t *testing.T) {
	t.Parallel()
	bothBackends(t, func(t *testing.T, s store.Store, jobs func(string) []string) {
		ctx := context.Background()
		var logs bytes.Buffer
		var logMu sync.Mutex
		f := newFixtureTB(t, s, func(c *Config) {
			c.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
		agent, g := approvedProdGrant(t, f)
		if want := f.clock.Now().Add(720 * time.Hour).Truncate(time.Microsecond); !g.ExpiresAt.Equal(want) {
			t.Fatalf("expiresAt = %s, want %s", g.ExpiresAt, want)
		}
		timers := jobs(ExpireGrantArgs{}.Kind())
		if len(timers) != 1 {
			t.Fatalf("expiry timers queued = %v, want one", timers)
		}
		var a ExpireGrantArgs
		if err := json.Unmarshal([]byte(timers[0]), &a); err != nil {
			t.Fatal(err)
		}
		if a.IdentityID != agent || a.Entitlement != g.Entitlement || !a.ExpiresAt.Equal(g.ExpiresAt) {
			t.Fatalf("timer %+v, want %s's %s at %s", a, agent, g.Entitlement, g.ExpiresAt)
		}

		// Early (River's clock ahead of jml's by more than the slack): the
		// timer sets itself again for the grant's expiry.
		f.clock.Advance(720*time.Hour - 5*time.Second)
		if err := f.e.expireGrant(ctx, a); err != nil {
			t.Fatal(err)
		}
		if got := f.grants(t, agent); len(got) != 1 {
			t.Fatalf("grants 5 s before expiry = %v, want the grant", got)
		}
		if n := len(jobs(ExpireGrantArgs{}.Kind())); n != 2 {
			t.Fatalf("timers after an early one = %d, want it set again", n)
		}

		f.clock.Advance(5 * time.Second)
		if err := f.e.expireGrant(ctx, a); err != nil {
			t.Fatal(err)
		}
		if got := f.grants(t, agent); len(got) != 0 {
			t.Fatalf("grants at expiry = %v, want none", got)
		}
		if n := auditCount(t, s, agent, "grant.expired"); n != 1 {
			t.Fatalf("grant.expired records = %d, want 1", n)
		}
		var expiry *cases.Case
		if err := s.View(ctx, func(tx store.Tx) error {
			cs, err := tx.ListCases(ctx, agent, 10)
			for i := range cs {
				if cs[i].Type == CaseExpiry {
					expiry = &cs[i]
				}
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if expiry == nil || expiry.Status != cases.Completed {
			t.Fatalf("expiry case = %+v, want completed", expiry)
		}

		// The timer again, and the sweep: nothing left, and the log says why.
		if err := f.e.expireGrant(ctx, a); err != nil {
			t.Fatal(err)
		}
		if n, err := f.e.SweepExpired(ctx); err != nil || n != 0 {
			t.Fatalf("sweep after expiry = %d, %v; want nothing", n, err)
		}
		if n := auditCount(t, s, agent, "grant.expired"); n != 1 {
			t.Fatalf("grant.expired records = %d, want still 1", n)
		}
		logMu.Lock()
		defer logMu.Unlock()
		for _, want := range []string{"its timer is set for then", "the grant is no longer held", "no grant is past its expiry"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, logs.String())
			}
		}
	})
}

// TestExpirySweep: a grant whose timer never fired is revoked by the
// sweep, once, however many sweeps race; the count of grants past expiry
// goes from 1 to 0.
func TestExpirySweep(t *testing.T) {
	t.Parallel()
	bothBackends(t, func(t *testing.T, s store.Store, _ func(string) []string) {
		ctx := context.Background()
		f := newFixture(t, s)
		agent, g := approvedProdGrant(t, f)
		pastExpiry := func() int {
			t.Helper()
			var n int
			if err := s.View(ctx, func(tx store.Tx) error {
				var err error
				n, err = tx.CountExpiringGrants(ctx, f.clock.Now())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n, err := f.e.SweepExpired(ctx); err != nil || n != 0 {
			t.Fatalf("sweep before expiry = %d, %v", n, err)
		}
		f.clock.Advance(g.ExpiresAt.Add(time.Second).Sub(f.clock.Now()))
		if n := pastExpiry(); n != 1 {
			t.Fatalf("grants past expiry = %d, want 1", n)
		}
		var wg sync.WaitGroup
		opened := make([]int, 4)
		for i := range opened {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := f.e.SweepExpired(ctx)
				if err != nil {
					t.Error(err)
				}
				opened[i] = n
			}()
		}
		wg.Wait()
		total := 0
		for _, n := range opened {
			total += n
		}
		if total != 1 {
			t.Fatalf("expiry cases opened by 4 racing sweeps = %v, want 1 in all", opened)
		}
		if got := f.grants(t, agent); len(got) != 0 {
			t.Fatalf("grants after the sweep = %v", got)
		}
		if n := pastExpiry(); n != 0 {
			t.Fatalf("grants past expiry after the sweep = %d, want 0", n)
		}
		if n := auditCount(t, s, agent, "grant.expired"); n != 1 {
			t.Fatalf("grant.expired records = %d, want 1", n)
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
