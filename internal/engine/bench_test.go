package engine

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/guard"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// BenchmarkSubmitJoinerSQLite measures accepting (and, for built-in steps,
// applying) one human joiner on SQLite.
func BenchmarkSubmitJoinerSQLite(b *testing.B) { benchSerial(b, openSQLiteB(b), nil) }

// BenchmarkSubmitJoinerPostgres: one submitter at a time on PostgreSQL,
// each event a batch of one.
func BenchmarkSubmitJoinerPostgres(b *testing.B) { benchSerial(b, openPostgresB(b), nil) }

// BenchmarkSubmitJoinerGuardedPostgres: one submitter at a time, from a
// source whose guard bounds revocations (each event its own transaction).
func BenchmarkSubmitJoinerGuardedPostgres(b *testing.B) {
	benchSerial(b, openPostgresB(b), guardRevocations)
}

// benchSerial submits joiners one after another; configure, if not nil,
// adjusts the engine's configuration.
func benchSerial(b *testing.B, s store.Store, configure func(*Config)) {
	f := newFixtureTB(b, s, configure)
	ctx := context.Background()
	var i int64
	for b.Loop() {
		i++
		if _, err := f.e.Submit(ctx, source, joinerEvent(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// joinerEvent is the benchmarks' i-th joiner.
func joinerEvent(i int64) identity.Event {
	return identity.Event{Source: "hr", ID: fmt.Sprint(i), Type: identity.Joiner, ExternalID: fmt.Sprint("u", i), Kind: identity.Human,
		Attributes: map[string]any{"department": "Engineering"}}
}

// BenchmarkSubmitJoinerSQLiteParallel is the throughput shape: 8
// concurrent submitters sharing group commits.
func BenchmarkSubmitJoinerSQLiteParallel(b *testing.B) { benchParallel(b, openSQLiteB(b), 4) }

// BenchmarkSubmitJoinerPostgresParallel: 64 concurrent submitters on
// PostgreSQL, where they are accepted in batches.
func BenchmarkSubmitJoinerPostgresParallel(b *testing.B) { benchParallel(b, openPostgresB(b), 32) }

// benchParallel submits joiners from parallelism goroutines per CPU.
func benchParallel(b *testing.B, s store.Store, parallelism int) {
	f := newFixtureB(b, s)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := f.e.Submit(ctx, source, joinerEvent(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkImportJoiners: an HR import of b.N joiners applied through
// Engine.Import.
func BenchmarkImportJoinersPostgres(b *testing.B) { benchImport(b, openPostgresB(b), nil) }
func BenchmarkImportJoinersSQLite(b *testing.B)   { benchImport(b, openSQLiteB(b), nil) }

// BenchmarkImportJoinersGuarded: the same import from a source whose guard
// also bounds revocations; joiners revoke nothing, so it should cost about
// the same.
func BenchmarkImportJoinersGuardedPostgres(b *testing.B) {
	benchImport(b, openPostgresB(b), guardRevocations)
}
func BenchmarkImportJoinersGuardedSQLite(b *testing.B) {
	benchImport(b, openSQLiteB(b), guardRevocations)
}

func guardRevocations(c *Config) {
	c.Guards = map[string]SourceGuard{"hr": {Limits: guard.Limits{MaxLeavers: 1000}, Window: time.Hour, MaxRevocations: 100}}
}

func benchImport(b *testing.B, s store.Store, configure func(*Config)) {
	f := newFixtureTB(b, s, configure)
	evs := make([]identity.Event, b.N)
	for i := range evs {
		evs[i] = identity.Event{Source: "hr", ID: fmt.Sprint("imp-", i), Type: identity.Joiner, ExternalID: fmt.Sprint("u", i), Kind: identity.Human,
			Attributes: map[string]any{"department": "Engineering"}}
	}
	b.ResetTimer()
	res, err := f.e.Import(context.Background(), admin, Import{Source: "hr", Events: evs})
	if err != nil || res.Accepted != b.N {
		b.Fatalf("Import = %+v, %v", res, err)
	}
}

// BenchmarkAuthenticate measures resolving a bearer token on each request:
// a token bound to a person (whose identity's state is read with it) next
// to an unbound one, so that the ratio shows what following the person
// costs: the same one query, joined.
func BenchmarkAuthenticate(b *testing.B) {
	for _, backend := range []struct {
		name string
		open func(testing.TB) store.Store
	}{{"sqlite", openSQLiteB}, {"postgres", openPostgresB}} {
		b.Run(backend.name, func(b *testing.B) {
			f := newFixtureB(b, backend.open(b))
			ctx := context.Background()
			res, err := f.e.Submit(ctx, admin, identity.Event{Source: "hr", ID: "p", Type: identity.Joiner, ExternalID: "p", Kind: identity.Human})
			if err != nil {
				b.Fatal(err)
			}
			bound, _, err := f.e.IssueToken(ctx, admin, TokenSpec{Role: RoleMember, Identity: res.IdentityID})
			if err != nil {
				b.Fatal(err)
			}
			unbound, _, err := f.e.IssueToken(ctx, admin, TokenSpec{Role: RoleAuditor})
			if err != nil {
				b.Fatal(err)
			}
			for _, tc := range []struct{ name, secret string }{{"unbound", unbound}, {"bound", bound}} {
				b.Run(tc.name, func(b *testing.B) {
					for b.Loop() {
						if _, err := f.e.Authenticate(ctx, tc.secret); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkSubmitMoverPostgres: movers of 1000 existing people, one at a
// time; a mover reads the identity's grants, credentials, accounts, open
// steps and scheduled events before it plans.
func BenchmarkSubmitMoverPostgres(b *testing.B) { benchMovers(b, openPostgresB(b)) }

func benchMovers(b *testing.B, s store.Store) {
	f := newFixtureTB(b, s, nil)
	ctx := context.Background()
	for i := range int64(1000) {
		if _, err := f.e.Submit(ctx, source, joinerEvent(i)); err != nil {
			b.Fatal(err)
		}
	}
	depts := []string{"Sales", "Engineering"}
	var i int64
	for b.Loop() {
		ev := identity.Event{Source: "hr", ID: fmt.Sprint("m", i), Type: identity.Mover, ExternalID: fmt.Sprint("u", i%1000),
			Attributes: map[string]any{"department": depts[(i/1000)%2]}}
		i++
		if _, err := f.e.Submit(ctx, source, ev); err != nil {
			b.Fatal(err)
		}
	}
}
