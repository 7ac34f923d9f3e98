package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

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
	_, why := m.Guard.Held(d)
	res, err := f.e.Import(ctx, source, Import{Source: m.Source, Events: d.Events, Snapshot: snap, HoldReason: why})
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
