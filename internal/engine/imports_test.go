package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/guard"
	"github.com/jml-dev/jml/internal/hrfeed"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

const hrMapping = `
source: workday
key: id
manager: manager
attributes: {department: dept}
`

func hrFile(n int, skip func(int) bool) string {
	var b strings.Builder
	b.WriteString("id,manager,dept\n")
	for i := 0; i < n; i++ {
		if skip != nil && skip(i) {
			continue
		}
		mgr := ""
		if i > 0 {
			mgr = fmt.Sprintf("P%03d", (i+7)%n) // managers often come later in the file
		}
		fmt.Fprintf(&b, "P%03d,%s,Engineering\n", i, mgr)
	}
	return b.String()
}

// importFile does what jml import hr --apply does.
func importFile(t *testing.T, f *fixture, m *hrfeed.Mapping, csv string) *ImportResult {
	t.Helper()
	ctx := context.Background()
	prev := map[string]hrfeed.Record{}
	f.s.View(ctx, func(tx store.Tx) error {
		data, err := tx.GetSnapshot(ctx, m.Source)
		if err == nil {
			return json.Unmarshal(data, &prev)
		}
		return nil
	})
	recs, err := m.Read(strings.NewReader(csv), "csv", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := m.Compare(prev, recs, f.clock.Now())
	snap, _ := json.Marshal(d.Next)
	_, why := d.Held(m.Guard)
	feed := Principal{ID: "tok_feed", Role: RoleSource, Source: m.Source}
	res, err := f.e.Import(ctx, feed, Import{Source: m.Source, Events: d.Events, Snapshot: snap, HoldReason: why})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (f *fixture) countState(t *testing.T, st identity.State) int {
	t.Helper()
	var n int
	f.s.View(context.Background(), func(tx store.Tx) error {
		ids, err := tx.ListIdentities(context.Background(), store.IdentityFilter{State: st, Limit: 1000})
		n = len(ids)
		return err
	})
	return n
}

// TestImportGuard: an HR file missing 40% of its rows is held with
// nothing applied; an admin releases it and the leavers apply.
func TestImportGuard(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	m, err := hrfeed.ParseMapping("m.yaml", []byte(hrMapping))
	if err != nil {
		t.Fatal(err)
	}
	res := importFile(t, f, m, hrFile(100, nil))
	if res.Hold != nil || res.Accepted != 100 || len(res.Failed) != 0 {
		t.Fatalf("first import: %+v", res)
	}
	if n := f.countState(t, identity.Active); n != 100 {
		t.Fatalf("%d active after the first import", n)
	}
	// The same file again changes nothing.
	if res := importFile(t, f, m, hrFile(100, nil)); res.Accepted != 0 || res.Hold != nil {
		t.Fatalf("same file again: %+v", res)
	}

	res = importFile(t, f, m, hrFile(100, func(i int) bool { return i%5 < 2 }))
	if res.Hold == nil || !strings.Contains(res.Hold.Reason, "40 leavers") {
		t.Fatalf("40%% missing: %+v", res)
	}
	if n := f.countState(t, identity.Active); n != 100 {
		t.Fatalf("%d active while the import is held, want 100", n)
	}
	holds, err := f.e.Holds(context.Background(), approver, store.HoldHeld)
	if err != nil || len(holds) != 1 || len(holds[0].Events) != 40 {
		t.Fatalf("holds = %v, %v", holds, err)
	}
	if _, _, err := f.e.DecideHold(context.Background(), source, res.Hold.ID, true); identity.ErrorCode(err) != identity.Forbidden {
		t.Fatalf("a source releasing its own hold = %v, want forbidden", err)
	}
	_, rel, err := f.e.DecideHold(context.Background(), admin, res.Hold.ID, true)
	if err != nil || rel.Accepted != 40 {
		t.Fatalf("release = %+v, %v", rel, err)
	}
	if n := f.countState(t, identity.Departed); n != 40 {
		t.Fatalf("%d departed after release, want 40", n)
	}
	if _, _, err := f.e.DecideHold(context.Background(), admin, res.Hold.ID, false); identity.ErrorCode(err) != identity.Conflict {
		t.Fatalf("discarding a released hold = %v, want conflict", err)
	}
	// The snapshot moved on: importing the same short file again is quiet.
	if res := importFile(t, f, m, hrFile(100, func(i int) bool { return i%5 < 2 })); res.Accepted != 0 || res.Hold != nil {
		t.Fatalf("after release, same file: %+v", res)
	}
}

// TestSourceGuard: a source sending more leavers within its window than
// the guard allows is held from that event on, every later event of the
// source joining the batch; release applies them in order.
func TestSourceGuard(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, "systems: [{name: vault, type: builtin}]\n", func(c *Config) {
		c.Guards = map[string]SourceGuard{"idp": {Limits: guard.Limits{MaxLeavers: 3}, Window: time.Hour}}
	})
	e, c := f.e, f.clock
	ctx := context.Background()
	idp := func(id string, typ identity.EventType, ext string) identity.Event {
		return identity.Event{Source: "idp", ID: id, Type: typ, ExternalID: ext, Kind: identity.Human}
	}
	for i := 0; i < 10; i++ {
		if _, err := e.Submit(ctx, idpFeed, idp(fmt.Sprint("j", i), identity.Joiner, fmt.Sprint("p", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		res, err := e.Submit(ctx, idpFeed, idp(fmt.Sprint("l", i), identity.Leaver, fmt.Sprint("p", i)))
		if err != nil || res.Status == store.EventHeld {
			t.Fatalf("leaver %d = %+v, %v", i, res, err)
		}
	}
	res, err := e.Submit(ctx, idpFeed, idp("l3", identity.Leaver, "p3"))
	if err != nil || res.Status != store.EventHeld || res.HoldID == "" {
		t.Fatalf("fourth leaver = %+v, %v; want held", res, err)
	}
	// Everything the source sends now waits in the same batch, in order.
	moved := idp("m5", identity.Mover, "p5")
	moved.Attributes = map[string]any{"team": "x"}
	if r, err := e.Submit(ctx, idpFeed, moved); err != nil || r.HoldID != res.HoldID {
		t.Fatalf("mover while held = %+v, %v", r, err)
	}
	if r, _ := e.Submit(ctx, idpFeed, moved); !r.Duplicate {
		t.Fatalf("the same event again = %+v; want a duplicate of the held one", r)
	}
	// Other sources are not held.
	if r, err := e.Submit(ctx, source, identity.Event{Source: "hr", ID: "x", Type: identity.Joiner, ExternalID: "z", Kind: identity.Human}); err != nil || r.Status == store.EventHeld {
		t.Fatalf("another source = %+v, %v", r, err)
	}
	if n := f.countState(t, identity.Departed); n != 3 {
		t.Fatalf("%d departed while held, want 3", n)
	}
	_, rel, err := e.DecideHold(ctx, admin, res.HoldID, true)
	if err != nil || rel.Accepted != 2 {
		t.Fatalf("release = %+v, %v", rel, err)
	}
	if n := f.countState(t, identity.Departed); n != 4 {
		t.Fatalf("%d departed after release, want 4", n)
	}
	// An hour later the window is clear again.
	c.Advance(61 * time.Minute)
	if r, err := e.Submit(ctx, idpFeed, idp("l6", identity.Leaver, "p6")); err != nil || r.Status == store.EventHeld {
		t.Fatalf("leaver after the window = %+v, %v", r, err)
	}
}

// TestSourceGuardRevocations: a source is held once its recent events
// plan more revocations than the guard allows, even when few leave.
func TestSourceGuardRevocations(t *testing.T) {
	t.Parallel()
	f := newPolicyFixture(t, `
systems: [{name: vault, type: builtin}]
entitlements: [{name: a, system: vault}, {name: b, system: vault}]
birthright: [{name: all, when: 'identity.kind == "human"', entitlements: [a, b]}]
`, func(c *Config) {
		c.Guards = map[string]SourceGuard{"idp": {Limits: guard.Limits{MaxLeavers: 1000}, Window: time.Hour, MaxRevocations: 5}}
	})
	e := f.e
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := e.Submit(ctx, idpFeed, identity.Event{Source: "idp", ID: fmt.Sprint("j", i), Type: identity.Joiner, ExternalID: fmt.Sprint("p", i), Kind: identity.Human}); err != nil {
			t.Fatal(err)
		}
	}
	// Each leaver revokes two grants: two leavers make 4, the third 6.
	for i := 0; i < 2; i++ {
		res, err := e.Submit(ctx, idpFeed, identity.Event{Source: "idp", ID: fmt.Sprint("l", i), Type: identity.Leaver, ExternalID: fmt.Sprint("p", i)})
		if err != nil || res.Status == store.EventHeld {
			t.Fatalf("leaver %d = %+v, %v", i, res, err)
		}
	}
	res, err := e.Submit(ctx, idpFeed, identity.Event{Source: "idp", ID: "l2", Type: identity.Leaver, ExternalID: "p2"})
	if err != nil || res.Status != store.EventHeld {
		t.Fatalf("third leaver = %+v, %v; want held", res, err)
	}
	holds, _ := e.Holds(ctx, admin, store.HoldHeld)
	if len(holds) != 1 || !strings.Contains(holds[0].Reason, "6 revocations planned, more than the 5") {
		t.Fatalf("holds = %+v", holds)
	}
	if n := f.countState(t, identity.Departed); n != 2 {
		t.Fatalf("%d departed, want 2: the held leaver must not apply", n)
	}
}

// TestImportKeepsOneIdentitysOrder: a rehire with a new end date is a
// joiner and a leaver in one import; the leaver goes after the joiner
// (not in parallel with it, when it would find the person departed), so
// both are accepted at once.
func TestImportKeepsOneIdentitysOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	human := func(e *identity.Event) {
		e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Engineering"}
	}
	f.submit(t, ev("j0", identity.Joiner, "back", human))
	f.submit(t, ev("l0", identity.Leaver, "back", nil))
	for round := range 5 {
		end := f.clock.Now().Add(72 * time.Hour)
		var evs []identity.Event
		for i := range 8 {
			ext := fmt.Sprintf("p%d-%d", round, i)
			evs = append(evs, ev("j-"+ext, identity.Joiner, ext, human), ev("l-"+ext, identity.Leaver, ext, func(e *identity.Event) { e.EffectiveAt = &end }))
		}
		if round == 0 {
			evs = append(evs, ev("rehire", identity.Joiner, "back", human), ev("rehire-end", identity.Leaver, "back", func(e *identity.Event) { e.EffectiveAt = &end }))
		}
		res, err := f.e.Import(ctx, source, Import{Source: "hr", Events: evs})
		if err != nil || len(res.Failed) > 0 || res.Accepted != len(evs) {
			t.Fatalf("round %d: %+v, %v; want all %d accepted", round, res, err, len(evs))
		}
	}
	var back *identity.Identity
	if err := f.s.View(ctx, func(tx store.Tx) error {
		var err error
		back, err = tx.GetIdentityByExternalID(ctx, "hr", "back")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if back.State != identity.Active || len(f.scheduled(t, back.ID)) != 1 {
		t.Fatalf("the rehire is %s with %v scheduled, want active with its end date", back.State, f.scheduled(t, back.ID))
	}
}
