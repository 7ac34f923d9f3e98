package engine

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/pgtest"
	"github.com/jml-dev/jml/internal/store/postgres"
	"github.com/jml-dev/jml/internal/store/sqlite"
	"github.com/jml-dev/jml/internal/store/storetest"
)

// TestCoalescedSubmissions sends many events at once to an engine on
// PostgreSQL, where concurrent submissions are accepted in batches: people,
// NHIs owned by them (which must not share a batch with their owner's
// event), duplicates, and bad events that fail their batch. Every
// submission must get the answer it would get alone.
func TestCoalescedSubmissions(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	f := newFixture(t, s)
	if f.e.coalescer == nil {
		t.Fatal("the PostgreSQL store should be a store.Batcher")
	}
	ctx := context.Background()
	const people = 40
	type outcome struct {
		res *Result
		err error
	}
	run := func(evs []identity.Event) []outcome {
		out := make([]outcome, len(evs))
		var wg sync.WaitGroup
		for i, e := range evs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := f.e.Submit(ctx, source, e)
				out[i] = outcome{res, err}
			}()
		}
		wg.Wait()
		return out
	}
	var evs []identity.Event
	for i := 0; i < people; i++ {
		evs = append(evs, ev(fmt.Sprint("j", i), identity.Joiner, fmt.Sprint("p", i), func(e *identity.Event) {
			e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Engineering"}
		}))
	}
	first := run(evs)
	for i, o := range first {
		if o.err != nil {
			t.Fatalf("joiner %d: %v", i, o.err)
		}
	}

	// Second wave: NHIs owned by the people, movers of the same people in
	// the same wave, duplicates of first-wave events, and bad events.
	evs = nil
	for i := 0; i < people; i++ {
		evs = append(evs, ev(fmt.Sprint("bot", i), identity.Joiner, fmt.Sprint("bot", i), func(e *identity.Event) {
			e.Kind, e.Owner, e.Attributes = identity.Pipeline, fmt.Sprint("p", i), map[string]any{"cluster": "eu-1"}
		}))
		evs = append(evs, ev(fmt.Sprint("m", i), identity.Mover, fmt.Sprint("p", i), func(e *identity.Event) {
			e.Attributes = map[string]any{"department": "Sales"}
		}))
	}
	dupAt := len(evs)
	for i := 0; i < 5; i++ {
		evs = append(evs, ev(fmt.Sprint("j", i), identity.Joiner, fmt.Sprint("p", i), func(e *identity.Event) { e.Kind = identity.Human }))
	}
	badAt := len(evs)
	evs = append(evs,
		ev("x1", identity.Mover, "nobody", nil),
		ev("x2", identity.Joiner, "orphan", func(e *identity.Event) { e.Kind, e.Owner = identity.AIAgent, "ghost" }),
		ev("x3", identity.Resume, "p7", nil),
	)
	second := run(evs)
	for i, o := range second[:dupAt] {
		if o.err != nil {
			t.Fatalf("event %d (%s %s): %v", i, evs[i].Type, evs[i].ExternalID, o.err)
		}
	}
	for i, o := range second[dupAt:badAt] {
		if o.err != nil || !o.res.Duplicate || o.res.CaseID != first[i].res.CaseID {
			t.Fatalf("duplicate %d = %+v, %v; first case %s", i, o.res, o.err, first[i].res.CaseID)
		}
	}
	wantCodes := []identity.Code{identity.NotFound, identity.Invalid, identity.Conflict}
	for i, o := range second[badAt:] {
		if identity.ErrorCode(o.err) != wantCodes[i] {
			t.Fatalf("bad event %d = %v, want %s", i, o.err, wantCodes[i])
		}
	}

	// The state is what sequential processing gives.
	err := s.View(ctx, func(tx store.Tx) error {
		for i := 0; i < people; i++ {
			p, err := tx.GetIdentityByExternalID(ctx, "hr", fmt.Sprint("p", i))
			if err != nil {
				return err
			}
			if p.Attributes["department"] != "Sales" {
				t.Errorf("p%d department = %v", i, p.Attributes["department"])
			}
			if gs, _ := tx.ListGrants(ctx, p.ID); len(gs) != 0 {
				t.Errorf("p%d moved to Sales still holds %d grants", i, len(gs))
			}
			bot, err := tx.GetIdentityByExternalID(ctx, "hr", fmt.Sprint("bot", i))
			if err != nil {
				return err
			}
			if bot.OwnerID != p.ID {
				t.Errorf("bot%d owner = %s, want %s", i, bot.OwnerID, p.ID)
			}
			if creds, _ := tx.ListCredentials(ctx, bot.ID, true); len(creds) != 1 {
				t.Errorf("bot%d holds %d credentials, want 1", i, len(creds))
			}
		}
		if _, err := tx.GetIdentityByExternalID(ctx, "hr", "orphan"); !store.IsNotFound(err) {
			t.Errorf("the rejected orphan was stored: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := storetest.Verify(ctx, s); err != nil || n == 0 {
		t.Fatalf("audit verify = %d, %v", n, err)
	}
	multi, fallbacks := f.e.coalescer.multi.Load(), f.e.coalescer.fallbacks.Load()
	t.Logf("%d multi-event batches, %d fell back to one by one", multi, fallbacks)
	if multi == 0 {
		t.Fatal("no multi-event batch: the test did not exercise batching")
	}
}

// TestBatchFallback: a batch with a bad event fails as a whole and is run
// one by one; the good events are accepted, the bad one gets its error.
func TestBatchFallback(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openPostgres(t))
	mk := func(e identity.Event) *submission {
		return &submission{ctx: context.Background(), p: source, ev: e, done: make(chan struct{})}
	}
	batch := []*submission{
		mk(ev("1", identity.Joiner, "a", func(e *identity.Event) { e.Kind = identity.Human })),
		mk(ev("2", identity.Mover, "nobody", nil)),
		mk(ev("3", identity.Joiner, "b", func(e *identity.Event) { e.Kind = identity.Human })),
	}
	f.e.runBatch(batch)
	if f.e.coalescer.fallbacks.Load() != 1 {
		t.Fatalf("fallbacks = %d, want 1", f.e.coalescer.fallbacks.Load())
	}
	if batch[0].err != nil || batch[2].err != nil || batch[0].res.CaseID == "" || batch[2].res.CaseID == "" {
		t.Fatalf("good events: %+v %v / %+v %v", batch[0].res, batch[0].err, batch[2].res, batch[2].err)
	}
	if identity.ErrorCode(batch[1].err) != identity.NotFound {
		t.Fatalf("bad event = %v, want not found", batch[1].err)
	}
	for _, s := range batch {
		select {
		case <-s.done:
		default:
			t.Fatal("a submission was not released")
		}
	}
}

func TestIndependent(t *testing.T) {
	t.Parallel()
	sub := func(ev identity.Event) *submission { return &submission{ev: ev, keys: identityKeys(ev)} }
	a := sub(identity.Event{Source: "hr", ID: "1", ExternalID: "alice"})
	bot := sub(identity.Event{Source: "hr", ID: "2", ExternalID: "bot", Owner: "alice"})
	bob := sub(identity.Event{Source: "hr", ID: "3", ExternalID: "bob", Manager: "carol"})
	carol := sub(identity.Event{Source: "hr", ID: "4", ExternalID: "carol"})
	other := sub(identity.Event{Source: "ci", ID: "5", ExternalID: "alice"})
	// The same event ID again, about someone else: never in one batch.
	again := sub(identity.Event{Source: "hr", ID: "1", ExternalID: "dave"})
	taken, rest := independent([]*submission{a, bot, bob, carol, other, again}, 10)
	if len(taken) != 3 || taken[0] != a || taken[1] != bob || taken[2] != other {
		t.Fatalf("taken = %v", taken)
	}
	if len(rest) != 3 || rest[0] != bot || rest[1] != carol || rest[2] != again {
		t.Fatalf("rest = %v", rest)
	}
	taken, rest = independent([]*submission{a, bob, carol}, 1)
	if len(taken) != 1 || len(rest) != 2 || rest[0] != bob || rest[1] != carol {
		t.Fatalf("max 1: taken %v rest %v", taken, rest)
	}
	// A full batch leaves the rest in arrival order, conflicting or not.
	taken, rest = independent([]*submission{a, bob, bot, carol, other}, 2)
	if len(taken) != 2 || taken[0] != a || taken[1] != bob || len(rest) != 3 || rest[0] != bot || rest[1] != carol || rest[2] != other {
		t.Fatalf("max 2: taken %v rest %v", taken, rest)
	}
}

// TestConcurrentMoversOfOneIdentity: two replicas on one PostgreSQL
// database accept movers of the same person at the same moment, one to
// Engineering (which grants access) and one to Sales (which grants none).
// Whatever order they commit in, the person's grants must be those of the
// department the later one left, never computed from a state the other had
// already changed (which would leave someone in Sales holding
// Engineering's access).
func TestConcurrentMoversOfOneIdentity(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	a, b := newFixture(t, s), newFixture(t, s)
	ctx := context.Background()
	move := func(f *fixture, id, dept string) error {
		_, err := f.e.Submit(ctx, source, ev(id, identity.Mover, "alice", func(e *identity.Event) {
			e.Attributes = map[string]any{"department": dept}
		}))
		return err
	}
	if _, err := a.e.Submit(ctx, source, ev("j", identity.Joiner, "alice", func(e *identity.Event) {
		e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Marketing"}
	})); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 100; round++ {
		if round > 0 {
			if err := move(a, fmt.Sprint("reset", round), "Marketing"); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, dept := range []string{"Sales", "Engineering"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = move([]*fixture{a, b}[i], fmt.Sprint("m", round, dept), dept)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		err := s.View(ctx, func(tx store.Tx) error {
			p, err := tx.GetIdentityByExternalID(ctx, "hr", "alice")
			if err != nil {
				return err
			}
			gs, err := tx.ListGrants(ctx, p.ID)
			if err != nil {
				return err
			}
			want := 0
			if p.Attributes["department"] == "Engineering" {
				want = 2
			}
			if len(gs) != want {
				t.Fatalf("round %d: alice in %v holds %d grants, want %d", round, p.Attributes["department"], len(gs), want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentLeaverAndMover: a leaver and a mover of the same person
// accepted at the same moment by two replicas. In either order the person
// ends departed with no access: a mover must never act on the state it
// read before the leaver committed and bring the person back.
func TestConcurrentLeaverAndMover(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	a, b := newFixture(t, s), newFixture(t, s)
	ctx := context.Background()
	for round := 0; round < 60; round++ {
		who := fmt.Sprint("p", round)
		if _, err := a.e.Submit(ctx, source, ev("j"+who, identity.Joiner, who, func(e *identity.Event) {
			e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Marketing"}
		})); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := a.e.Submit(ctx, source, ev("l"+who, identity.Leaver, who, nil)); err != nil {
				t.Errorf("leaver: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			// Refused when it comes after the leaver; accepted before it.
			b.e.Submit(ctx, source, ev("m"+who, identity.Mover, who, func(e *identity.Event) {
				e.Attributes = map[string]any{"department": "Engineering"}
			}))
		}()
		wg.Wait()
		err := s.View(ctx, func(tx store.Tx) error {
			p, err := tx.GetIdentityByExternalID(ctx, "hr", who)
			if err != nil {
				return err
			}
			gs, err := tx.ListGrants(ctx, p.ID)
			if err != nil {
				return err
			}
			if p.State != identity.Departed || len(gs) != 0 {
				t.Fatalf("round %d: after a leaver %s is %s holding %d grants", round, who, p.State, len(gs))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCaseInEventRow: a case completed on acceptance is stored in its
// event's row, one row instead of two, and reads back as any case does; a
// case with steps left to run keeps a row of its own. On PostgreSQL it is
// the batch path, on SQLite the plain one; the engine does not know which.
func TestCaseInEventRow(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
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
		defer db.Close()
		testCaseInEventRow(t, s, func(q string, dest ...any) error { return db.QueryRow(q).Scan(dest...) })
	})
	t.Run("postgres", func(t *testing.T) {
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
		defer conn.Close(ctx)
		testCaseInEventRow(t, s, func(q string, dest ...any) error { return conn.QueryRow(ctx, q).Scan(dest...) })
	})
}

// testCaseInEventRow runs TestCaseInEventRow on s, reading the database
// directly with query.
func testCaseInEventRow(t *testing.T, s store.Store, query func(q string, dest ...any) error) {
	ctx := context.Background()
	f := newFixture(t, s)
	rows := func() (cases, inline int) {
		t.Helper()
		if err := query("SELECT (SELECT COUNT(*) FROM cases), (SELECT COUNT(*) FROM events WHERE case_steps <> '')", &cases, &inline); err != nil {
			t.Fatal(err)
		}
		return cases, inline
	}

	f.submit(t, ev("0", identity.Joiner, "alice", func(e *identity.Event) {
		e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Engineering"}
	}))
	joiner := ev("1", identity.Joiner, "triage-agent", func(e *identity.Event) {
		e.Kind, e.Owner, e.Attributes = identity.AIAgent, "alice", map[string]any{"tools": []any{"search-docs"}}
	})
	res := f.submit(t, joiner)
	if strings.TrimPrefix(res.CaseID, "case_") != strings.TrimPrefix(res.EventID, "evt_") {
		t.Fatalf("case %s of event %s: not the event's ULID", res.CaseID, res.EventID)
	}
	if cases, inline := rows(); cases != 0 || inline != 2 {
		t.Fatalf("after two joiners: %d case rows, %d cases in event rows; want 0 and 2", cases, inline)
	}
	c := f.getCase(t, res.CaseID)
	if c.Status != cases.Completed || c.EventID != res.EventID || c.IdentityID != res.IdentityID || c.SubmittedBy != source.ID || len(c.Steps) == 0 || c.Steps[0].Status != cases.StepDone {
		t.Fatalf("case in its event's row = %+v", c)
	}
	// A duplicate answers with the same case, which reads back.
	dup, err := f.e.Submit(ctx, source, joiner)
	if err != nil || !dup.Duplicate || dup.CaseID != res.CaseID {
		t.Fatalf("duplicate = %+v, %v", dup, err)
	}
	// Widening to a production tool waits for approval: its case has a
	// step left, and a row of its own.
	widen := f.submit(t, ev("2", identity.Mover, "triage-agent", func(e *identity.Event) {
		e.Attributes = map[string]any{"tools": []any{"search-docs", "prod-db-write"}}
	}))
	if c := f.getCase(t, widen.CaseID); c.Status != cases.AwaitingApproval {
		t.Fatalf("widening case = %s", c.Status)
	}
	if cases, inline := rows(); cases != 1 || inline != 2 {
		t.Fatalf("after the widening: %d case rows, %d cases in event rows; want 1 and 2", cases, inline)
	}
	if err := s.View(ctx, func(tx store.Tx) error {
		// (The test's clock stands still: both were opened at one moment.)
		cs, err := tx.ListCases(ctx, res.IdentityID, 10)
		ids := map[string]bool{}
		for _, c := range cs {
			ids[c.ID] = true
		}
		if err != nil || len(cs) != 2 || !ids[widen.CaseID] || !ids[res.CaseID] {
			t.Errorf("ListCases = %+v, %v; want the joiner's and the widening's", cs, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
