// Package bench measures jml on the machine it runs on: time to revoke,
// joiner throughput against River's own no-op throughput on the same
// database, and policy evaluation against native Go closures. Every figure
// has a baseline measured in the same run, because machines are noisy.
package bench

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/postgres"
	"github.com/jml-dev/jml/internal/store/sqlite"
	"github.com/jml-dev/jml/internal/vault"
)

// Options choose what runs and how big.
type Options struct {
	Dir string // where SQLite files go
	// PostgresAdminURL is a PostgreSQL server where bench may create (and
	// then drop) its own databases; "" skips PostgreSQL.
	PostgresAdminURL string
	Leavers          int // leavers for time to revoke (≥ 1000 for the quoted figure)
	Events           int // joiners for throughput (≥ 20000 for the quoted figure)
	Submitters       int // concurrent submitters
	Rounds           int // throughput rounds (jml, then River), reported as medians
	Jobs             store.JobConfig
	// RealLeavers, RedisAddr and MySQLDSN are for time to revoke across
	// real systems (part "systems").
	RealLeavers int
	SCIMUsers   int // users POSTed and PATCHed in the scim part
	RedisAddr   string
	MySQLDSN    string
	Out         io.Writer
	Log         *slog.Logger
	// Only, when not empty, names the parts to run: policy, revoke,
	// sqlite, jobs, postgres.
	Only []string
}

func (o Options) runs(part string) bool {
	if len(o.Only) == 0 {
		return true
	}
	for _, p := range o.Only {
		if p == part {
			return true
		}
	}
	return false
}

// Run runs every benchmark and prints the figures.
func Run(ctx context.Context, o Options) error {
	gc := debug.SetGCPercent(100) // read the setting; put it back
	debug.SetGCPercent(gc)
	fmt.Fprintf(o.Out, "jml bench: GOMAXPROCS=%d GOGC=%d %s/%s, %s\n", runtime.GOMAXPROCS(0), gc, runtime.GOOS, runtime.GOARCH, runtime.Version())
	for _, p := range o.Only {
		switch p {
		case "policy", "revoke", "sqlite", "jobs", "postgres", "systems", "pglist", "hrdiff", "scim":
		default:
			return fmt.Errorf("--only %q: want policy, hrdiff, scim, revoke, sqlite, jobs, postgres, systems or pglist", p)
		}
	}
	if o.runs("policy") {
		if err := policyBench(o); err != nil {
			return err
		}
	}
	if o.runs("hrdiff") {
		if err := hrDiffBench(o); err != nil {
			return fmt.Errorf("hr diff: %w", err)
		}
	}
	if o.runs("scim") {
		if err := scimBench(ctx, o); err != nil {
			return fmt.Errorf("scim: %w", err)
		}
	}
	if o.runs("revoke") {
		if err := revokeBench(ctx, o); err != nil {
			return fmt.Errorf("time to revoke: %w", err)
		}
	}
	if o.runs("sqlite") {
		if err := throughputBench(ctx, o, "sqlite", false); err != nil {
			return fmt.Errorf("throughput sqlite: %w", err)
		}
	}
	if o.runs("jobs") {
		if err := throughputBench(ctx, o, "sqlite", true); err != nil {
			return fmt.Errorf("throughput sqlite (steps as jobs): %w", err)
		}
	}
	if o.PostgresAdminURL == "" {
		fmt.Fprintf(o.Out, "\nPostgreSQL parts (throughput, systems, pglist): skipped, no server given\n")
		return nil
	}
	if o.runs("postgres") {
		if err := throughputBench(ctx, o, "postgres", false); err != nil {
			return fmt.Errorf("throughput postgres: %w", err)
		}
	}
	switch {
	case o.runs("systems") && !systemsAvailable && len(o.Only) == 0:
		fmt.Fprintf(o.Out, "\ntime to revoke across real systems: left out of this build (go run -tags benchsvc ./cmd/jml bench --only systems runs it)\n")
	case o.runs("systems"):
		if err := systemsBench(ctx, o); err != nil {
			return fmt.Errorf("time to revoke across real systems: %w", err)
		}
	}
	if o.runs("pglist") {
		if err := pgListBench(ctx, o); err != nil {
			return fmt.Errorf("postgres listing: %w", err)
		}
	}
	return nil
}

func newEngine(s store.Store, policyYAML string, log *slog.Logger) (*engine.Engine, error) {
	pol, err := policy.Parse("bench.yaml", []byte(policyYAML))
	if err != nil {
		return nil, err
	}
	sealer, err := vault.NewSealer(bytes.Repeat([]byte{42}, 32))
	if err != nil {
		return nil, err
	}
	return engine.New(engine.Config{Store: s, Policy: pol, Sealer: sealer, Logger: log})
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }

var admin = engine.Principal{ID: "bench", Role: engine.RoleAdmin}

// revokeBench: leaver accepted -> every jml-issued credential of that
// identity rejected by introspection, over Leavers identities holding five
// API keys each, on SQLite. The baseline is a raw single-row UPDATE commit
// on the same file with the same durability settings.
func revokeBench(ctx context.Context, o Options) error {
	s, err := sqlite.Open(ctx, filepath.Join(o.Dir, "revoke.db"), sqlite.Options{Logger: o.Log})
	if err != nil {
		return err
	}
	defer s.Close()
	e, err := newEngine(s, revokePolicy, o.Log)
	if err != nil {
		return err
	}
	keys := make([][]string, o.Leavers)
	for i := range keys {
		res, err := e.Submit(ctx, admin, identity.Event{Source: "bench", ID: fmt.Sprintf("j%d", i), Type: identity.Joiner,
			ExternalID: fmt.Sprintf("svc-%d", i), Kind: identity.ServiceAccount, Owner: "owner"})
		if err != nil && i == 0 {
			// The owner must exist first.
			if _, err := e.Submit(ctx, admin, identity.Event{Source: "bench", ID: "owner", Type: identity.Joiner, ExternalID: "owner", Kind: identity.Human}); err != nil {
				return err
			}
			res, err = e.Submit(ctx, admin, identity.Event{Source: "bench", ID: fmt.Sprintf("j%d", i), Type: identity.Joiner,
				ExternalID: fmt.Sprintf("svc-%d", i), Kind: identity.ServiceAccount, Owner: "owner"})
		}
		if err != nil {
			return err
		}
		if err := e.RunCase(ctx, res.CaseID, false); err != nil {
			return err
		}
		var creds []identity.Credential
		if err := s.View(ctx, func(tx store.Tx) error {
			creds, err = tx.ListCredentials(ctx, res.IdentityID, true)
			return err
		}); err != nil {
			return err
		}
		for _, c := range creds {
			secret, _, err := e.Reveal(ctx, admin, c.ID)
			if err != nil {
				return err
			}
			keys[i] = append(keys[i], secret)
		}
		if len(keys[i]) != 5 {
			return fmt.Errorf("identity %d holds %d credentials, want 5", i, len(keys[i]))
		}
	}
	// A protected resource introspects with its own token (RFC 7662 §2.1):
	// each call authenticates it first, as POST /v1/introspect does.
	resource, _, err := e.IssueToken(ctx, admin, engine.TokenSpec{Role: engine.RoleResource, Name: "bench-resource"})
	if err != nil {
		return err
	}
	lat := make([]time.Duration, 0, o.Leavers)
	for i := range keys {
		start := time.Now()
		if _, err := e.Submit(ctx, admin, identity.Event{Source: "bench", ID: fmt.Sprintf("l%d", i), Type: identity.Leaver, ExternalID: fmt.Sprintf("svc-%d", i)}); err != nil {
			return err
		}
		for _, k := range keys[i] {
			p, err := e.Authenticate(ctx, resource)
			if err != nil {
				return err
			}
			if !engine.Allowed(p.Role, engine.PermIntrospect) {
				return fmt.Errorf("the bench's resource token may not introspect")
			}
			in, err := e.Introspect(ctx, k)
			if err != nil {
				return err
			}
			if in.Active {
				return fmt.Errorf("key of svc-%d still active after its leaver was accepted", i)
			}
		}
		lat = append(lat, time.Since(start))
	}
	// Baseline: the cheapest durable write SQLite can do on this file.
	db := s.DB()
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS bench_baseline (id INTEGER PRIMARY KEY, n INTEGER)"); err != nil {
		return err
	}
	db.ExecContext(ctx, "INSERT OR IGNORE INTO bench_baseline VALUES (1, 0)")
	base := make([]time.Duration, 0, o.Leavers)
	for i := 0; i < o.Leavers; i++ {
		start := time.Now()
		if err := rawCommit(ctx, db); err != nil {
			return err
		}
		base = append(base, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Slice(base, func(i, j int) bool { return base[i] < base[j] })
	fmt.Fprintf(o.Out, "\ntime to revoke (SQLite, %d leavers x 5 API keys; leaver accepted -> all 5 keys introspect inactive, each call authenticated with a resource token)\n", o.Leavers)
	fmt.Fprintf(o.Out, "  jml:                 p50 %s  p99 %s  (target p99 <= 10 ms)\n", ms(percentile(lat, .5)), ms(percentile(lat, .99)))
	fmt.Fprintf(o.Out, "  baseline raw commit: p50 %s  p99 %s  (one-row UPDATE transaction, same file)\n", ms(percentile(base, .5)), ms(percentile(base, .99)))
	fmt.Fprintf(o.Out, "  ratio p50 %.1fx\n", float64(percentile(lat, .5))/float64(percentile(base, .5)))
	return nil
}

func rawCommit(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE bench_baseline SET n = n + 1 WHERE id = 1"); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// openBackend opens a fresh store named name: a new SQLite file, or a new
// PostgreSQL database that the returned cleanup drops.
func openBackend(ctx context.Context, o Options, backend, name string) (store.Store, func(), error) {
	if backend != "postgres" {
		s, err := sqlite.Open(ctx, filepath.Join(o.Dir, fmt.Sprintf("%s-%d.db", name, time.Now().UnixNano())), sqlite.Options{Logger: o.Log})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	admin, err := pgx.Connect(ctx, o.PostgresAdminURL)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres %s: %w", o.PostgresAdminURL, err)
	}
	defer admin.Close(ctx)
	db := fmt.Sprintf("jml_bench_%s_%d", name, time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(o.PostgresAdminURL)
	if err != nil {
		return nil, nil, err
	}
	u.Path = "/" + db
	drop := func() {
		c, err := pgx.Connect(context.Background(), o.PostgresAdminURL)
		if err == nil {
			c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
			c.Close(context.Background())
		}
	}
	s, err := postgres.Open(ctx, u.String(), postgres.Options{Logger: o.Log})
	if err != nil {
		drop()
		return nil, nil, err
	}
	return s, func() { s.Close(); drop() }, nil
}

// throughputBench: joiner events fully applied per second (case completed),
// with Submitters concurrent submitters and River working, then River's own
// no-op job throughput on a fresh database of the same backend with the
// same job configuration. It runs Rounds rounds, each measuring jml and
// River back to back, and reports medians: the machines are noisy, and a
// ratio of two runs seconds apart drifts less than one of runs minutes
// apart.
//
// The target compares jml with River tuned for throughput: River's
// smallest fetch cooldown and Jobs.Workers workers (100 by default, which
// gives the no-op rate the target quotes; on no-op jobs River keeps getting
// faster with more, see docs/performance.md). Where jml runs with fewer
// submitters than that, River also runs with as many workers as jml has
// submitters, so that each jml figure has a baseline at its own concurrency
// too.
func throughputBench(ctx context.Context, o Options, backend string, stepsAsJobs bool) error {
	// jml runs with the submitters asked for and, where that differs,
	// with as many as River has workers: River's baseline works its queue
	// with that many at once, and jml's events come from that many callers.
	levels := []int{o.Submitters}
	if !stepsAsJobs && o.Jobs.Workers != o.Submitters {
		levels = append(levels, o.Jobs.Workers)
	}
	type result struct {
		accepted, applied time.Duration
	}
	rates := make([][]float64, len(levels)) // [level][round]
	last := make([]result, len(levels))
	// River's rates by worker count, per round; tuned is Jobs.Workers.
	tuned := o.Jobs.Workers
	workers := riverLevels(levels, tuned)
	noops := map[int][]float64{}
	for round := 0; round < max(1, o.Rounds); round++ {
		for i, n := range levels {
			rate, accepted, applied, err := joinerThroughput(ctx, o, backend, stepsAsJobs, n)
			if err != nil {
				return err
			}
			last[i] = result{accepted, applied}
			rates[i] = append(rates[i], rate)
		}
		for _, w := range workers {
			jobs := o.Jobs
			jobs.Workers = w
			noop, err := riverNoop(ctx, o, backend, jobs)
			if err != nil {
				return fmt.Errorf("river baseline, %d workers: %w", w, err)
			}
			noops[w] = append(noops[w], noop)
		}
	}
	mode := "built-in steps applied in the accepting transaction"
	if stepsAsJobs {
		mode = "built-in steps run as River jobs (jobs.builtinAsJobs)"
	}
	fmt.Fprintf(o.Out, "\nthroughput (%s, %s; %d joiners, 3 steps each, %d workers, fetch cooldown %s, poll %s; median of %d rounds, each jml then River)\n",
		backend, mode, o.Events, tuned, o.Jobs.FetchCooldown, o.Jobs.PollInterval, len(noops[tuned]))
	for i, n := range levels {
		fmt.Fprintf(o.Out, "  jml joiners fully applied, %3d submitters: %.0f/s  (rounds %s; last round accepted in %s, all cases completed in %s)\n",
			n, median(rates[i]), roundsOf(rates[i], "%.0f"), last[i].accepted.Round(time.Millisecond), last[i].applied.Round(time.Millisecond))
	}
	for _, w := range workers {
		what := "the target's baseline"
		if w != tuned {
			what = fmt.Sprintf("as many as jml's %d submitters", w)
		}
		fmt.Fprintf(o.Out, "  River no-op jobs, %3d workers:            %.0f/s  (rounds %s; %s; same backend and job settings, %d jobs)\n",
			w, median(noops[w]), roundsOf(noops[w], "%.0f"), what, o.Events)
	}
	var toTuned, toEqual []string
	for i, n := range levels {
		r := ratios(rates[i], noops[tuned])
		toTuned = append(toTuned, fmt.Sprintf("%.2f with %d submitters (rounds %s)", median(r), n, roundsOf(r, "%.2f")))
		if n != tuned {
			r := ratios(rates[i], noops[n])
			toEqual = append(toEqual, fmt.Sprintf("%.2f with %d submitters against %d workers (rounds %s)", median(r), n, n, roundsOf(r, "%.2f")))
		}
	}
	fmt.Fprintf(o.Out, "  ratio to River with %d workers: %s  (target >= 0.5; SQLite target >= 1500/s)\n", tuned, strings.Join(toTuned, ", "))
	if len(toEqual) > 0 {
		fmt.Fprintf(o.Out, "  ratio at equal concurrency: %s\n", strings.Join(toEqual, ", "))
	}
	return nil
}

// riverLevels is the worker counts River's baseline runs with: the tuned
// count, then each jml concurrency that differs from it.
func riverLevels(levels []int, tuned int) []int {
	out := []int{tuned}
	for _, n := range levels {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// ratios divides jml's rate by River's, round by round.
func ratios(jml, river []float64) []float64 {
	out := make([]float64, len(jml))
	for i := range jml {
		out[i] = jml[i] / river[i]
	}
	return out
}

// median returns the median of xs (the mean of the middle two for an even
// count).
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// roundsOf prints xs, one per round in the order measured, formatted
// with verb.
func roundsOf(xs []float64, verb string) string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = fmt.Sprintf(verb, x)
	}
	return strings.Join(out, ", ")
}

// joinerThroughput times submitters concurrent callers submitting
// o.Events joiners on a fresh database until every case has completed.
func joinerThroughput(ctx context.Context, o Options, backend string, stepsAsJobs bool, submitters int) (rate float64, accepted, applied time.Duration, err error) {
	s, cleanup, err := openBackend(ctx, o, backend, "throughput")
	if err != nil {
		return 0, 0, 0, err
	}
	defer cleanup()
	pol, err := policy.Parse("joiners.yaml", []byte(joinerPolicy))
	if err != nil {
		return 0, 0, 0, err
	}
	metrics := engine.NewMetrics(nil)
	e, err := engine.New(engine.Config{Store: s, Policy: pol, Sealer: mustSealer(), Logger: o.Log, Metrics: metrics, DeferBuiltin: stepsAsJobs})
	if err != nil {
		return 0, 0, 0, err
	}
	if err := s.Jobs().Start(ctx, e.Workers(), o.Jobs); err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		stop, cancel := context.WithTimeout(ctx, 30*time.Second)
		s.Jobs().Stop(stop)
		cancel()
	}()
	run := time.Now().UnixNano()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, submitters)
	for w := 0; w < submitters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(o.Events) {
					return
				}
				if _, err := e.Submit(ctx, admin, identity.Event{Source: "bench", ID: fmt.Sprintf("%d-%d", run, i), Type: identity.Joiner,
					ExternalID: fmt.Sprintf("user-%d-%d", run, i), Kind: identity.Human}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, 0, 0, err
	}
	accepted = time.Since(start)
	if err := waitCompleted(ctx, metrics, int64(o.Events), 0, 10*time.Minute); err != nil {
		return 0, 0, 0, err
	}
	applied = time.Since(start)
	return float64(o.Events) / applied.Seconds(), accepted, applied, nil
}

// waitCompleted sleeps until m counts at least want completed cases. It
// fails when more than failed cases have failed, or after timeout.
func waitCompleted(ctx context.Context, m *engine.Metrics, want, failed int64, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		settled := m.Settled()
		if m.CasesCompleted() >= want {
			return nil
		}
		if m.CasesFailed() > failed {
			return fmt.Errorf("a case failed (%d of %d completed)", m.CasesCompleted(), want)
		}
		select {
		case <-settled:
		case <-t.C:
			return fmt.Errorf("only %d of %d cases completed in %s", m.CasesCompleted(), want, timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func mustSealer() *vault.Sealer {
	s, err := vault.NewSealer(bytes.Repeat([]byte{42}, 32))
	if err != nil {
		panic(err)
	}
	return s
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "bench.noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	done *atomic.Int64
}

func (w *noopWorker) Work(context.Context, *river.Job[noopArgs]) error { w.done.Add(1); return nil }

// riverNoop inserts Events no-op jobs (in transactions of 1000) and times
// River working them all with the job configuration jobs.
func riverNoop(ctx context.Context, o Options, backend string, jobs store.JobConfig) (float64, error) {
	s, cleanup, err := openBackend(ctx, o, backend, "river_noop")
	if err != nil {
		return 0, err
	}
	defer cleanup()
	for i := 0; i < o.Events; i += 1000 {
		n := min(1000, o.Events-i)
		if err := s.Update(ctx, func(tx store.Tx) error {
			for j := 0; j < n; j++ {
				if err := tx.Enqueue(ctx, noopArgs{}, time.Time{}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	var done atomic.Int64
	w := river.NewWorkers()
	river.AddWorker(w, &noopWorker{done: &done})
	start := time.Now()
	if err := s.Jobs().Start(ctx, w, jobs); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for done.Load() < int64(o.Events) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("only %d of %d no-op jobs done in 10 minutes", done.Load(), o.Events)
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stop, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.Jobs().Stop(stop)
	return float64(o.Events) / elapsed.Seconds(), nil
}

// policyBench: 50 birthright rules for one identity.
func policyBench(o Options) error {
	p, err := policy.Parse("rules50.yaml", []byte(rules50()))
	if err != nil {
		return err
	}
	id := benchIdentity()
	native := nativeRules()
	results := []struct {
		name string
		fn   func()
	}{
		{"jml Desired (memoised on the attributes rules read)", func() { p.Desired(id) }},
		{"jml Explain (every rule, kind-indexed, no memo)", func() { p.Explain(id) }},
		{"plain loop over 50 compiled cel-go programs", func() { plainLoop(p, id) }},
		{"baseline: 50 native Go closures", func() { evalNative(native, id) }},
	}
	fmt.Fprintf(o.Out, "\npolicy: 50 birthright rules for one identity (median of 5 runs of testing.Benchmark)\n")
	var nativeNs float64
	figures := make([]float64, len(results))
	for i, r := range results {
		figures[i] = medianNs(r.fn)
		if i == len(results)-1 {
			nativeNs = figures[i]
		}
	}
	for i, r := range results {
		fmt.Fprintf(o.Out, "  %-52s %8.0f ns  (%.1fx native)\n", r.name, figures[i], figures[i]/nativeNs)
	}
	fmt.Fprintf(o.Out, "  target <= 5 us for jml Desired\n")
	return nil
}

func medianNs(fn func()) float64 {
	var runs []float64
	for i := 0; i < 5; i++ {
		r := testing.Benchmark(func(b *testing.B) {
			for b.Loop() {
				fn()
			}
		})
		runs = append(runs, float64(r.NsPerOp()))
	}
	sort.Float64s(runs)
	return runs[len(runs)/2]
}

// benchIdentity is the identity the policy benchmark evaluates.
func benchIdentity() *identity.Identity {
	return &identity.Identity{Kind: identity.Human, State: identity.Active, Attributes: map[string]any{
		"department": "dept-10", "team": "team-3", "env": "prod", "location": "eu-west", "level": 5, "tools": []any{"tool-2"}}}
}

func plainLoop(p *policy.Policy, id *identity.Identity) int {
	act := policy.Activation(id)
	n := 0
	for _, b := range p.Birthrights {
		if b.Matches(act) {
			n++
		}
	}
	return n
}

// nativeRules are the 50 rules of rules50 written as Go closures.
func nativeRules() []func(*identity.Identity) bool {
	str := func(id *identity.Identity, k string) string { s, _ := id.Attributes[k].(string); return s }
	var out []func(*identity.Identity) bool
	for i := 0; i < 50; i++ {
		dept, team, tool, minLevel := fmt.Sprintf("dept-%d", i), fmt.Sprintf("team-%d", i), fmt.Sprintf("tool-%d", i), i%7
		var f func(*identity.Identity) bool
		switch i % 5 {
		case 0:
			f = func(id *identity.Identity) bool {
				return id.Kind == identity.Human && str(id, "department") == dept
			}
		case 1:
			f = func(id *identity.Identity) bool {
				return id.Kind == identity.Pipeline && str(id, "env") == "prod" && str(id, "team") == team
			}
		case 2:
			f = func(id *identity.Identity) bool {
				if id.Kind != identity.AIAgent {
					return false
				}
				tools, _ := id.Attributes["tools"].([]any)
				for _, t := range tools {
					if t == tool {
						return true
					}
				}
				return false
			}
		case 3:
			f = func(id *identity.Identity) bool {
				return str(id, "department") == dept || str(id, "team") == team
			}
		case 4:
			f = func(id *identity.Identity) bool {
				lvl, _ := id.Attributes["level"].(int)
				return id.Kind == identity.Human && strings.HasPrefix(str(id, "location"), "eu-") && lvl >= minLevel
			}
		}
		out = append(out, f)
	}
	return out
}

func evalNative(rules []func(*identity.Identity) bool, id *identity.Identity) int {
	n := 0
	for _, r := range rules {
		if r(id) {
			n++
		}
	}
	return n
}
