// Package storetest is the conformance suite every store backend passes:
// the same tests, against a real database, for SQLite and PostgreSQL.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/store"
)

// Opener returns a new, empty, migrated store for one test; the backend
// test cleans it up.
type Opener func(t *testing.T) store.Store

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

// Run runs the whole suite.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"Identities", testIdentities},
		{"IdentitiesByAccess", testIdentitiesByAccess},
		{"FindCases", testFindCases},
		{"EventDedupe", testEventDedupe},
		{"NarrowingEvents", testNarrowingEvents},
		{"LookupMany", testLookupMany},
		{"SnapshotsAndHolds", testSnapshotsAndHolds},
		{"SCIM", testSCIM},
		{"Grants", testGrants},
		{"Schedule", testSchedule},
		{"Credentials", testCredentials},
		{"CasesAndSteps", testCases},
		{"Findings", testFindings},
		{"Audit", testAudit},
		{"AuditConcurrent", testAuditConcurrent},
		{"Tokens", testTokens},
		{"BoundTokens", testBoundTokens},
		{"Rollback", testRollback},
		{"Meta", testMeta},
		{"Batch", testBatch},
		{"Queue", testQueue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each test has a store of its own
			tt.fn(t, open(t))
		})
	}
}

func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func view(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func human(id, ext string) *identity.Identity {
	return &identity.Identity{ID: id, Source: "hr", ExternalID: ext, Kind: identity.Human, State: identity.Active,
		Attributes: map[string]any{"department": "Engineering", "tools": []any{"a", "b"}}, CreatedAt: t0, UpdatedAt: t0}
}

func testIdentities(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error {
		for i := 0; i < 5; i++ {
			id := human(fmt.Sprintf("idn_%02d", i), fmt.Sprintf("e%d", i))
			if i >= 3 {
				id.Kind, id.OwnerID = identity.Pipeline, "idn_00"
			}
			if err := tx.InsertIdentity(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetIdentity(ctx, "idn_01")
		if err != nil {
			return err
		}
		if got.ExternalID != "e1" || got.Attributes["department"] != "Engineering" || !got.CreatedAt.Equal(t0) {
			t.Errorf("GetIdentity = %+v", got)
		}
		if l, ok := got.Attributes["tools"].([]any); !ok || len(l) != 2 {
			t.Errorf("tools attribute = %#v", got.Attributes["tools"])
		}
		if _, err := tx.GetIdentity(ctx, "nope"); !store.IsNotFound(err) || identity.ErrorCode(err) != identity.NotFound {
			t.Errorf("GetIdentity(nope) = %v, want not found", err)
		}
		byExt, err := tx.GetIdentityByExternalID(ctx, "hr", "e2")
		if err != nil || byExt.ID != "idn_02" {
			t.Errorf("GetIdentityByExternalID = %v, %v", byExt, err)
		}
		all, err := tx.ListIdentities(ctx, store.IdentityFilter{})
		if err != nil || len(all) != 5 {
			t.Errorf("ListIdentities = %d, %v", len(all), err)
		}
		page, _ := tx.ListIdentities(ctx, store.IdentityFilter{Limit: 2, After: "idn_01"})
		if len(page) != 2 || page[0].ID != "idn_02" || page[1].ID != "idn_03" {
			t.Errorf("page after idn_01 = %v", page)
		}
		owned, _ := tx.ListIdentities(ctx, store.IdentityFilter{Owner: "idn_00", Kind: identity.Pipeline})
		if len(owned) != 2 {
			t.Errorf("owned pipelines = %d, want 2", len(owned))
		}
		// A hostile filter value is a value, never SQL.
		none, err := tx.ListIdentities(ctx, store.IdentityFilter{Source: "hr' OR '1'='1"})
		if err != nil || len(none) != 0 {
			t.Errorf("hostile filter = %d, %v", len(none), err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		id, _ := tx.GetIdentity(ctx, "idn_01")
		id.State = identity.Departed
		id.Attributes = map[string]any{}
		id.UpdatedAt = t0.Add(time.Hour)
		if err := tx.UpdateIdentity(ctx, id); err != nil {
			return err
		}
		if err := tx.UpdateIdentity(ctx, human("ghost", "g")); !store.IsNotFound(err) {
			t.Errorf("UpdateIdentity(ghost) = %v, want not found", err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, _ := tx.GetIdentity(ctx, "idn_01")
		if got.State != identity.Departed || len(got.Attributes) != 0 || !got.UpdatedAt.Equal(t0.Add(time.Hour)) {
			t.Errorf("after update = %+v", got)
		}
		return nil
	})
	err := s.Update(ctx, func(tx store.Tx) error { return tx.InsertIdentity(ctx, human("idn_99", "e1")) })
	if err == nil {
		t.Error("second identity with the same (source, externalId) was stored")
	}
}

func testEventDedupe(t *testing.T, s store.Store) {
	ctx := context.Background()
	ev := &store.Event{ID: "evt_1", Event: identity.Event{Source: "hr", ID: "42", Type: identity.Joiner, ExternalID: "a", Kind: identity.Human},
		Principal: "tok_1", Status: store.EventApplied, ReceivedAt: t0, EffectiveAt: t0}
	update(t, s, func(tx store.Tx) error {
		if _, err := tx.FindEvent(ctx, "hr", "42"); !store.IsNotFound(err) {
			t.Errorf("FindEvent before the insert = %v, want not found", err)
		}
		if err := tx.InsertAccepted(ctx, ev, nil); err != nil {
			return err
		}
		ev.CaseID = "case_1"
		return tx.UpdateEvent(ctx, ev)
	})
	view(t, s, func(tx store.Tx) error {
		existing, err := tx.FindEvent(ctx, "hr", "42")
		if err != nil || existing.ID != "evt_1" || existing.CaseID != "case_1" || existing.Event.ExternalID != "a" {
			t.Errorf("FindEvent of the stored event = %+v, %v", existing, err)
		}
		if _, err := tx.FindEvent(ctx, "idp", "42"); !store.IsNotFound(err) {
			t.Errorf("FindEvent of another source's event ID = %v, want not found", err)
		}
		return nil
	})
}

// testSchedule: what is due, soonest first: grants by their expiry (never
// those without one), and events waiting for their effective time, of
// everyone or of one identity; an event that is no longer scheduled is
// not listed.
func testSchedule(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error {
		for i, g := range []identity.Grant{
			{IdentityID: "i1", Entitlement: "late", ExpiresAt: t0.Add(3 * time.Hour)},
			{IdentityID: "i2", Entitlement: "soon", ExpiresAt: t0.Add(time.Hour)},
			{IdentityID: "i1", Entitlement: "forever"},
			{IdentityID: "i3", Entitlement: "now", ExpiresAt: t0.Add(2 * time.Hour)},
		} {
			g.System, g.Reason, g.CaseID, g.GrantedAt = "vault", "rule", fmt.Sprint("c", i), t0
			if err := tx.PutGrant(ctx, &g); err != nil {
				return err
			}
		}
		for i, at := range []time.Duration{5 * time.Hour, time.Hour, 2 * time.Hour} {
			ev := &store.Event{ID: fmt.Sprint("evt_", i), Event: identity.Event{Source: "hr", ID: fmt.Sprint("s", i), Type: identity.Leaver, ExternalID: "a"},
				IdentityID: []string{"i1", "i2", "i1"}[i], Principal: "tok_1", Status: store.EventScheduled, ReceivedAt: t0, EffectiveAt: t0.Add(at)}
			if err := tx.InsertAccepted(ctx, ev, nil); err != nil {
				return err
			}
		}
		return tx.InsertAccepted(ctx, &store.Event{ID: "evt_9", Event: identity.Event{Source: "hr", ID: "s9", Type: identity.Joiner, ExternalID: "a"},
			IdentityID: "i1", Principal: "tok_1", Status: store.EventApplied, ReceivedAt: t0, EffectiveAt: t0}, nil)
	})
	view(t, s, func(tx store.Tx) error {
		gs, err := tx.ListExpiringGrants(ctx, t0.Add(2*time.Hour), 10)
		if err != nil || len(gs) != 2 || gs[0].Entitlement != "soon" || gs[1].Entitlement != "now" || gs[1].IdentityID != "i3" || !gs[1].ExpiresAt.Equal(t0.Add(2*time.Hour)) {
			t.Errorf("ListExpiringGrants(t0+2h) = %+v, %v; want soon, now", gs, err)
		}
		if gs, err := tx.ListExpiringGrants(ctx, t0.Add(10*time.Hour), 1); err != nil || len(gs) != 1 || gs[0].Entitlement != "soon" {
			t.Errorf("ListExpiringGrants limited to 1 = %+v, %v", gs, err)
		}
		for until, want := range map[time.Duration]int{0: 0, time.Hour: 1, 10 * time.Hour: 3} {
			if n, err := tx.CountExpiringGrants(ctx, t0.Add(until)); err != nil || n != want {
				t.Errorf("CountExpiringGrants(t0+%s) = %d, %v; want %d", until, n, err, want)
			}
		}
		evs, err := tx.ListScheduled(ctx, "", 10)
		if err != nil || len(evs) != 3 || evs[0].ID != "evt_1" || evs[1].ID != "evt_2" || evs[2].ID != "evt_0" {
			t.Errorf("ListScheduled = %+v, %v; want evt_1, evt_2, evt_0", evs, err)
		}
		evs, err = tx.ListScheduled(ctx, "i1", 10)
		if err != nil || len(evs) != 2 || evs[0].ID != "evt_2" || evs[1].ID != "evt_0" || !evs[0].EffectiveAt.Equal(t0.Add(2*time.Hour)) {
			t.Errorf("ListScheduled(i1) = %+v, %v; want evt_2, evt_0", evs, err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		ev, err := tx.GetEvent(ctx, "evt_2")
		if err != nil {
			return err
		}
		ev.Status, ev.Error = store.EventSuperseded, "superseded by evt_0"
		return tx.UpdateEvent(ctx, ev)
	})
	view(t, s, func(tx store.Tx) error {
		if evs, err := tx.ListScheduled(ctx, "i1", 10); err != nil || len(evs) != 1 || evs[0].ID != "evt_0" {
			t.Errorf("ListScheduled(i1) after superseding evt_2 = %+v, %v", evs, err)
		}
		return nil
	})
}

// testNarrowingEvents: the guard's count takes a source's leavers and
// suspensions received within the window, and nothing else.
func testNarrowingEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error {
		for i, e := range []struct {
			source string
			typ    identity.EventType
			at     time.Time
		}{
			{"hr", identity.Leaver, t0}, {"hr", identity.Suspend, t0}, {"hr", identity.Joiner, t0}, {"hr", identity.Mover, t0},
			{"hr", identity.Resume, t0}, {"hr", identity.Leaver, t0.Add(-2 * time.Hour)}, {"idp", identity.Leaver, t0},
		} {
			if err := tx.InsertAccepted(ctx, &store.Event{ID: fmt.Sprint("evt_", i), Event: identity.Event{Source: e.source, ID: fmt.Sprint(i), Type: e.typ, ExternalID: "a"},
				Status: store.EventApplied, ReceivedAt: e.at, EffectiveAt: e.at}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		n, err := tx.CountNarrowingEvents(ctx, "hr", t0.Add(-time.Hour))
		if err != nil || n != 2 {
			t.Errorf("CountNarrowingEvents = %d, %v; want 2", n, err)
		}
		return nil
	})
}

// testLookupMany covers Prefetch: what it read answers the lookups that
// follow, including that a name does not exist, and the transaction's own
// writes keep it current.
func testLookupMany(t *testing.T, s store.Store) {
	ctx := context.Background()
	newEvent := func(id, sourceID, ext string) *store.Event {
		return &store.Event{ID: id, Event: identity.Event{Source: "hr", ID: sourceID, Type: identity.Joiner, ExternalID: ext, Kind: identity.Human},
			Status: store.EventApplied, ReceivedAt: t0, EffectiveAt: t0}
	}
	update(t, s, func(tx store.Tx) error {
		for i, ext := range []string{"a", "b", "c"} {
			if err := tx.InsertIdentity(ctx, human(fmt.Sprintf("idn_%d", i), ext)); err != nil {
				return err
			}
		}
		return tx.InsertAccepted(ctx, newEvent("evt_1", "e1", "a"), nil)
	})
	// More refs than one query binds, most of them absent; looked up in a
	// read-only transaction and in a read-write one (which locks them).
	refs := []store.ExternalRef{{Source: "hr", ExternalID: "c"}, {Source: "other", ExternalID: "a"}, {Source: "hr", ExternalID: "a"}}
	for i := 0; i < 1200; i++ {
		refs = append(refs, store.ExternalRef{Source: "hr", ExternalID: fmt.Sprintf("x%d", i)})
	}
	erefs := []store.EventRef{{Source: "hr", ID: "e1"}, {Source: "hr", ID: "e2"}, {Source: "sap", ID: "e1"}}
	lookUp := func(tx store.Tx) error {
		if err := tx.Prefetch(ctx, refs, erefs); err != nil {
			return err
		}
		if a, err := tx.GetIdentityByExternalID(ctx, "hr", "a"); err != nil || a.ID != "idn_0" {
			t.Errorf("prefetched hr/a = %v, %v", a, err)
		}
		c, err := tx.GetIdentityByExternalID(ctx, "hr", "c")
		if err != nil || c.Attributes["department"] != "Engineering" {
			t.Errorf("prefetched hr/c = %v, %v", c, err)
		} else {
			c.Attributes["department"] = "changed by the caller"
		}
		if c, err := tx.GetIdentityByExternalID(ctx, "hr", "c"); err != nil || c.Attributes["department"] != "Engineering" {
			t.Errorf("hr/c after a caller changed its copy = %v, %v", c, err)
		}
		for _, ext := range []string{"x0", "x1199"} {
			if _, err := tx.GetIdentityByExternalID(ctx, "hr", ext); !store.IsNotFound(err) {
				t.Errorf("prefetched hr/%s, absent = %v, want not found", ext, err)
			}
		}
		if _, err := tx.GetIdentityByExternalID(ctx, "other", "a"); !store.IsNotFound(err) {
			t.Errorf("prefetched other/a, absent = %v, want not found", err)
		}
		if b, err := tx.GetIdentityByExternalID(ctx, "hr", "b"); err != nil || b.ID != "idn_1" {
			t.Errorf("hr/b, not prefetched = %v, %v", b, err)
		}
		if ev, err := tx.FindEvent(ctx, "hr", "e1"); err != nil || ev.ID != "evt_1" {
			t.Errorf("prefetched event hr/e1 = %v, %v", ev, err)
		}
		for _, r := range erefs[1:] {
			if _, err := tx.FindEvent(ctx, r.Source, r.ID); !store.IsNotFound(err) {
				t.Errorf("prefetched event %s/%s, absent = %v, want not found", r.Source, r.ID, err)
			}
		}
		return nil
	}
	view(t, s, lookUp)
	update(t, s, lookUp)
	// Writes after the prefetch are what later lookups in the transaction
	// see; the transaction is rolled back.
	errRollback := errors.New("roll back")
	err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Prefetch(ctx, refs, erefs); err != nil {
			return err
		}
		a, err := tx.GetIdentityByExternalID(ctx, "hr", "a")
		if err != nil {
			return err
		}
		a.DisplayName = "Renamed"
		if err := tx.UpdateIdentity(ctx, a); err != nil {
			return err
		}
		if got, err := tx.GetIdentityByExternalID(ctx, "hr", "a"); err != nil || got.DisplayName != "Renamed" {
			t.Errorf("hr/a after this transaction renamed it = %v, %v", got, err)
		}
		if err := tx.InsertIdentity(ctx, human("idn_x0", "x0")); err != nil {
			return err
		}
		if got, err := tx.GetIdentityByExternalID(ctx, "hr", "x0"); err != nil || got.ID != "idn_x0" {
			t.Errorf("hr/x0 after this transaction inserted it = %v, %v", got, err)
		}
		if err := tx.InsertAccepted(ctx, newEvent("evt_2", "e2", "b"), nil); err != nil {
			return err
		}
		if got, err := tx.FindEvent(ctx, "hr", "e2"); err != nil || got.ID != "evt_2" {
			t.Errorf("event hr/e2 after this transaction stored it = %v, %v", got, err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("the transaction writing after Prefetch = %v", err)
	}
	// A second insert of the same (source, event ID) fails the transaction.
	err = s.Update(ctx, func(tx store.Tx) error { return tx.InsertAccepted(ctx, newEvent("evt_3", "e1", "b"), nil) })
	if err == nil {
		t.Error("InsertAccepted of an existing (source, event ID) succeeded")
	}
	view(t, s, func(tx store.Tx) error {
		for _, id := range []string{"evt_2", "evt_3"} {
			if _, err := tx.GetEvent(ctx, id); !store.IsNotFound(err) {
				t.Errorf("GetEvent(%s) after its transaction failed = %v, want not found", id, err)
			}
		}
		return nil
	})
}

func testSnapshotsAndHolds(t *testing.T, s store.Store) {
	ctx := context.Background()
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.GetSnapshot(ctx, "hr"); !store.IsNotFound(err) {
			t.Errorf("GetSnapshot before any = %v, want not found", err)
		}
		return nil
	})
	for _, data := range []string{"first", "second"} {
		update(t, s, func(tx store.Tx) error { return tx.PutSnapshot(ctx, "hr", []byte(data), t0) })
	}
	h := &store.Hold{ID: "hold_1", Source: "hr", Reason: "40 leavers", Status: store.HoldHeld, CreatedBy: "tok_1", CreatedAt: t0, Snapshot: []byte("snap"),
		Events: []identity.Event{{Source: "hr", ID: "e1", Type: identity.Leaver, ExternalID: "a"}}}
	update(t, s, func(tx store.Tx) error { return tx.InsertHold(ctx, h) })
	update(t, s, func(tx store.Tx) error {
		data, err := tx.GetSnapshot(ctx, "hr")
		if err != nil || string(data) != "second" {
			t.Errorf("GetSnapshot = %q, %v", data, err)
		}
		ok, err := tx.DecideHold(ctx, "hold_1", store.HoldReleased, "tok_2", t0.Add(time.Hour))
		if err != nil || !ok {
			t.Errorf("DecideHold = %v, %v", ok, err)
		}
		ok, err = tx.DecideHold(ctx, "hold_1", store.HoldDiscarded, "tok_3", t0)
		if err != nil || ok {
			t.Errorf("second DecideHold = %v, %v; want refused", ok, err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetHold(ctx, "hold_1")
		if err != nil || got.Status != store.HoldReleased || got.DecidedBy != "tok_2" || len(got.Events) != 1 || got.Events[0].ExternalID != "a" || string(got.Snapshot) != "snap" {
			t.Errorf("GetHold = %+v, %v", got, err)
		}
		held, _ := tx.ListHolds(ctx, store.HoldHeld)
		all, _ := tx.ListHolds(ctx, "")
		if len(held) != 0 || len(all) != 1 {
			t.Errorf("ListHolds held %d, all %d", len(held), len(all))
		}
		return nil
	})
}

func testSCIM(t *testing.T, s store.Store) {
	ctx := context.Background()
	mk := func(id, name string, active bool) *store.SCIMResource {
		return &store.SCIMResource{ID: id, Source: "entra", Type: "User", UserName: name, ExternalID: "x" + id, DisplayName: "D " + name,
			Active: active, Data: []byte(`{"userName":"` + name + `"}`), Version: 1, CreatedAt: t0, UpdatedAt: t0}
	}
	update(t, s, func(tx store.Tx) error {
		for i, n := range []string{"carl", "ann", "bob"} {
			if err := tx.InsertSCIM(ctx, mk(fmt.Sprint("u", i), n, i != 2)); err != nil {
				return err
			}
		}
		return nil
	})
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.InsertSCIM(ctx, mk("u9", "ann", true)) }); err == nil {
		t.Error("a second userName ann in one source was stored")
	}
	update(t, s, func(tx store.Tx) error {
		r, err := tx.GetSCIMByUserName(ctx, "entra", "User", "bob")
		if err != nil || r.ID != "u2" || r.Active {
			t.Errorf("GetSCIMByUserName = %+v, %v", r, err)
		}
		r.Version, r.Active, r.Data = 2, true, []byte(`{"userName":"bob","active":true}`)
		if err := tx.UpdateSCIM(ctx, r); err != nil {
			return err
		}
		active, err := filter.ParseFilter([]byte("active eq true"))
		if err != nil {
			return err
		}
		total, page, err := tx.ListSCIM(ctx, store.SCIMQuery{Source: "entra", Type: "User", Filter: active, SortBy: "userName", Limit: 2})
		if err != nil || total != 3 || len(page) != 2 || page[0].UserName != "ann" || page[1].UserName != "bob" {
			t.Errorf("ListSCIM = %d %+v, %v", total, page, err)
		}
		total, page, err = tx.ListSCIM(ctx, store.SCIMQuery{Source: "entra", Type: "User", SortBy: "userName", Descending: true, Offset: 1, Limit: 5})
		if err != nil || total != 3 || len(page) != 2 || page[0].UserName != "bob" {
			t.Errorf("ListSCIM page 2 = %d %+v, %v", total, page, err)
		}
		// What the allow-list does not name is refused, not spliced.
		bad, _ := filter.ParseFilter([]byte(`password eq "x"`))
		var fe *store.FilterError
		if _, _, err := tx.ListSCIM(ctx, store.SCIMQuery{Source: "entra", Type: "User", Filter: bad, Limit: 1}); !errors.As(err, &fe) {
			t.Errorf("ListSCIM with a filter on password = %v, want a FilterError", err)
		}
		if _, _, err := tx.ListSCIM(ctx, store.SCIMQuery{Source: "entra", Type: "User", SortBy: "id; DROP TABLE x", Limit: 1}); !errors.As(err, &fe) {
			t.Errorf("ListSCIM sorted by nonsense = %v, want a FilterError", err)
		}
		if ok, err := tx.DeleteSCIM(ctx, "entra", "u0"); !ok || err != nil {
			t.Errorf("DeleteSCIM = %v, %v", ok, err)
		}
		if _, err := tx.GetSCIM(ctx, "entra", "u0"); !store.IsNotFound(err) {
			t.Errorf("GetSCIM after delete = %v", err)
		}
		if _, err := tx.GetSCIM(ctx, "okta", "u1"); !store.IsNotFound(err) {
			t.Errorf("GetSCIM of another source = %v", err)
		}
		return nil
	})
}

func testGrants(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error {
		for _, e := range []string{"b", "a"} {
			if err := tx.PutGrant(ctx, &identity.Grant{IdentityID: "i1", Entitlement: e, System: "vault", Reason: "birthright:r", CaseID: "c1", GrantedAt: t0}); err != nil {
				return err
			}
		}
		// Put again replaces.
		return tx.PutGrant(ctx, &identity.Grant{IdentityID: "i1", Entitlement: "a", System: "vault", Reason: "request", CaseID: "c2", GrantedAt: t0, ExpiresAt: t0.Add(time.Hour), ApprovedBy: "tok_9"})
	})
	update(t, s, func(tx store.Tx) error {
		gs, err := tx.ListGrants(ctx, "i1")
		if err != nil || len(gs) != 2 || gs[0].Entitlement != "a" || gs[0].Reason != "request" || !gs[0].ExpiresAt.Equal(t0.Add(time.Hour)) || gs[0].ApprovedBy != "tok_9" {
			t.Errorf("ListGrants = %+v, %v", gs, err)
		}
		if !gs[1].ExpiresAt.IsZero() {
			t.Errorf("grant without expiry has ExpiresAt %v", gs[1].ExpiresAt)
		}
		ok, err := tx.DeleteGrant(ctx, "i1", "a")
		if !ok || err != nil {
			t.Errorf("DeleteGrant = %v, %v", ok, err)
		}
		ok, err = tx.DeleteGrant(ctx, "i1", "a")
		if ok || err != nil {
			t.Errorf("second DeleteGrant = %v, %v, want false, nil", ok, err)
		}
		return nil
	})
	// InsertGrant adds a grant the identity does not hold, and refuses one
	// it holds (the store may report that only at commit).
	update(t, s, func(tx store.Tx) error {
		return tx.InsertGrant(ctx, &identity.Grant{IdentityID: "i1", Entitlement: "c", System: "vault", Reason: "birthright:r", CaseID: "c3", GrantedAt: t0})
	})
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.InsertGrant(ctx, &identity.Grant{IdentityID: "i1", Entitlement: "b", System: "vault", Reason: "other", CaseID: "c3", GrantedAt: t0})
	})
	if err == nil {
		t.Error("InsertGrant of a held grant succeeded")
	}
	view(t, s, func(tx store.Tx) error {
		gs, err := tx.ListGrants(ctx, "i1")
		if err != nil || len(gs) != 2 || gs[0].Entitlement != "b" || gs[0].Reason != "birthright:r" || gs[1].Entitlement != "c" {
			t.Errorf("after InsertGrant: ListGrants = %+v, %v", gs, err)
		}
		return nil
	})
}

// testIdentitiesByAccess: the entitlement and system filters keep exactly
// the identities jml records as holding the entitlement, or as having an
// account (not deleted), a grant or an active credential in the system,
// combined with the other filters, the reach and the cursor.
func testIdentitiesByAccess(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error {
		for _, ext := range []string{"a", "b", "c", "d", "e"} {
			id := human("idn_"+ext, ext)
			if ext == "c" {
				id.OwnerID = "idn_a"
			}
			if err := tx.InsertIdentity(ctx, id); err != nil {
				return err
			}
		}
		for _, g := range []identity.Grant{
			{IdentityID: "idn_a", Entitlement: "db-read", System: "appdb"},
			{IdentityID: "idn_b", Entitlement: "git-read", System: "vault"},
			{IdentityID: "idn_e", Entitlement: "git-read", System: "vault"},
		} {
			g.Reason, g.CaseID, g.GrantedAt = "birthright:r", "c1", t0
			if err := tx.PutGrant(ctx, &g); err != nil {
				return err
			}
		}
		for _, a := range []identity.Account{
			{IdentityID: "idn_c", System: "appdb", Status: identity.AccountDisabled},
			{IdentityID: "idn_d", System: "appdb", Status: identity.AccountDeleted},
		} {
			a.UpdatedAt = t0
			if err := tx.PutAccount(ctx, &a); err != nil {
				return err
			}
		}
		active := cred("cred_b", "idn_b", []byte("hb"), nil)
		active.System = "appdb"
		revoked := cred("cred_d", "idn_d", []byte("hd"), nil)
		revoked.System, revoked.Status = "appdb", identity.CredentialRevoked
		for _, c := range []*store.StoredCredential{active, revoked} {
			if err := tx.InsertCredential(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		for _, c := range []struct {
			name string
			f    store.IdentityFilter
			want []string
		}{
			{"entitlement", store.IdentityFilter{Entitlement: "db-read"}, []string{"idn_a"}},
			{"entitlement held twice", store.IdentityFilter{Entitlement: "git-read"}, []string{"idn_b", "idn_e"}},
			{"system: grant, active credential, disabled account; not a deleted account or revoked credential", store.IdentityFilter{System: "appdb"}, []string{"idn_a", "idn_b", "idn_c"}},
			{"system and reach", store.IdentityFilter{System: "appdb", VisibleTo: "idn_a"}, []string{"idn_a", "idn_c"}},
			{"system, first page", store.IdentityFilter{System: "appdb", Limit: 2}, []string{"idn_a", "idn_b"}},
			{"system, next page", store.IdentityFilter{System: "appdb", After: "idn_b", Limit: 2}, []string{"idn_c"}},
			{"entitlement and system", store.IdentityFilter{Entitlement: "git-read", System: "appdb"}, []string{"idn_b"}},
			{"entitlement and another filter", store.IdentityFilter{Entitlement: "git-read", Owner: "idn_a"}, nil},
			{"unheld entitlement", store.IdentityFilter{Entitlement: "nothing"}, nil},
			{"hostile value", store.IdentityFilter{Entitlement: "x' OR '1'='1", System: "x' OR '1'='1"}, nil},
		} {
			got, err := tx.ListIdentities(ctx, c.f)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			var ids []string
			for _, i := range got {
				ids = append(ids, i.ID)
			}
			if !slices.Equal(ids, c.want) {
				t.Errorf("%s: ListIdentities = %v, want %v", c.name, ids, c.want)
			}
		}
		return nil
	})
}

// testFindCases: FindCases selects by status, type, identity, time and
// reach, newest first, pages with its cursor, and lists cases kept in
// their event's row with the others.
func testFindCases(t *testing.T, s store.Store) {
	ctx := context.Background()
	step := func(st cases.StepStatus) []cases.Step {
		return []cases.Step{{Seq: 1, Step: plan.Step{Action: plan.Grant, System: "vault", Entitlement: "a"}, Status: st, UpdatedAt: t0}}
	}
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	rowCase := func(id, identityID string, typ identity.EventType, status cases.Status, created time.Time, st cases.StepStatus) *cases.Case {
		return &cases.Case{ID: id, EventID: "evt_x", IdentityID: identityID, Type: typ, Status: status, SubmittedBy: "tok_1", CreatedAt: created, UpdatedAt: created, Steps: step(st)}
	}
	update(t, s, func(tx store.Tx) error {
		for _, id := range []*identity.Identity{human("i1", "one"), human("i2", "two"), human("i3", "three")} {
			if id.ID == "i3" {
				id.OwnerID = "i1"
			}
			if err := tx.InsertIdentity(ctx, id); err != nil {
				return err
			}
		}
		for _, c := range []*cases.Case{
			rowCase("case_01A", "i1", identity.Joiner, cases.Running, at(0), cases.StepPending),
			rowCase("case_01B", "i2", identity.Leaver, cases.AwaitingApproval, at(1), cases.StepAwaitingApproval),
			rowCase("case_01D", "i3", "expiry", cases.Completed, at(3), cases.StepDone),
		} {
			if err := tx.InsertCase(ctx, c); err != nil {
				return err
			}
		}
		// A mover completed on acceptance: kept in its event's row.
		ev := &store.Event{ID: "evt_01C", Event: identity.Event{Source: "hr", ID: "m1", Type: identity.Mover, ExternalID: "one"},
			CaseID: "case_01C", IdentityID: "i1", Principal: "tok_1", Status: store.EventApplied, ReceivedAt: at(2), EffectiveAt: at(2)}
		c := &cases.Case{ID: "case_01C", EventID: ev.ID, IdentityID: "i1", Type: identity.Mover, Status: cases.Completed, SubmittedBy: "tok_1",
			CreatedAt: at(2), UpdatedAt: at(2), CompletedAt: at(2), Steps: step(cases.StepDone)}
		return tx.InsertAccepted(ctx, ev, c)
	})
	view(t, s, func(tx store.Tx) error {
		for _, c := range []struct {
			name string
			f    store.CaseFilter
			want []string
		}{
			{"all", store.CaseFilter{}, []string{"case_01D", "case_01C", "case_01B", "case_01A"}},
			{"completed, the one in its event's row too", store.CaseFilter{Status: cases.Completed}, []string{"case_01D", "case_01C"}},
			{"awaiting approval", store.CaseFilter{Status: cases.AwaitingApproval}, []string{"case_01B"}},
			{"type in an event's row", store.CaseFilter{Type: identity.Mover}, []string{"case_01C"}},
			{"type in a row", store.CaseFilter{Type: "expiry"}, []string{"case_01D"}},
			{"identity", store.CaseFilter{IdentityID: "i1"}, []string{"case_01C", "case_01A"}},
			{"since", store.CaseFilter{Since: at(2)}, []string{"case_01D", "case_01C"}},
			{"reach: own and owned", store.CaseFilter{VisibleTo: "i1"}, []string{"case_01D", "case_01C", "case_01A"}},
			{"first page", store.CaseFilter{Limit: 2}, []string{"case_01D", "case_01C"}},
			{"next page", store.CaseFilter{Limit: 2, After: "case_01C"}, []string{"case_01B", "case_01A"}},
			{"after the newest", store.CaseFilter{After: "case_01D"}, []string{"case_01C", "case_01B", "case_01A"}},
			{"combined", store.CaseFilter{Status: cases.Completed, IdentityID: "i1", Since: at(1)}, []string{"case_01C"}},
			{"none", store.CaseFilter{Status: cases.Failed}, nil},
			{"hostile value", store.CaseFilter{Type: "x' OR '1'='1", IdentityID: "x' OR '1'='1"}, nil},
		} {
			got, err := tx.FindCases(ctx, c.f)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			var ids []string
			for _, cs := range got {
				ids = append(ids, cs.ID)
			}
			if !slices.Equal(ids, c.want) {
				t.Errorf("%s: FindCases = %v, want %v", c.name, ids, c.want)
			}
		}
		got, err := tx.FindCases(ctx, store.CaseFilter{Type: identity.Mover})
		if err != nil || len(got) != 1 || got[0].EventID != "evt_01C" || got[0].Status != cases.Completed || !got[0].CreatedAt.Equal(at(2)) || got[0].SubmittedBy != "tok_1" {
			t.Errorf("case in its event's row = %+v, %v", got, err)
		}
		return nil
	})
}

func cred(id, identityID string, hash, sealed []byte) *store.StoredCredential {
	return &store.StoredCredential{Credential: identity.Credential{ID: id, IdentityID: identityID, Rule: "r", System: "vault", Type: "api_key",
		Status: identity.CredentialActive, Marker: "jml_", Fingerprint: "00ff", IssuedAt: t0, ExpiresAt: t0.Add(24 * time.Hour), CaseID: "c1"},
		Hash: hash, Sealed: sealed}
}

func testCredentials(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error {
		for _, c := range []*store.StoredCredential{
			cred("cr1", "i1", []byte{1, 2, 3}, []byte("sealed-1")),
			cred("cr2", "i1", []byte{4, 5, 6}, []byte("sealed-2")),
			cred("cr3", "i1", nil, []byte("pw")), // no hash: passwords
			cred("cr4", "i1", nil, []byte("pw")),
			cred("cr5", "i2", []byte{7}, nil),
		} {
			if err := tx.InsertCredential(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		c, err := tx.GetCredentialByHash(ctx, []byte{4, 5, 6})
		if err != nil || c.ID != "cr2" || !bytes.Equal(c.Sealed, []byte("sealed-2")) || !c.ExpiresAt.Equal(t0.Add(24*time.Hour)) {
			t.Errorf("GetCredentialByHash = %+v, %v", c, err)
		}
		if _, err := tx.GetCredentialByHash(ctx, []byte{9}); !store.IsNotFound(err) {
			t.Errorf("unknown hash = %v, want not found", err)
		}
		sealed, err := tx.TakeSecret(ctx, "cr1")
		if err != nil || string(sealed) != "sealed-1" {
			t.Errorf("TakeSecret = %q, %v", sealed, err)
		}
		if _, err := tx.TakeSecret(ctx, "cr1"); identity.ErrorCode(err) != identity.Gone {
			t.Errorf("second TakeSecret = %v, want gone", err)
		}
		if _, err := tx.TakeSecret(ctx, "nope"); !store.IsNotFound(err) {
			t.Errorf("TakeSecret(nope) = %v, want not found", err)
		}
		ids, err := tx.RevokeSystemCredentials(ctx, "i1", "vault", t0.Add(time.Minute))
		if err != nil || len(ids) != 4 {
			t.Errorf("RevokeSystemCredentials = %v, %v", ids, err)
		}
		ok, err := tx.RevokeCredential(ctx, "cr2", t0)
		if ok || err != nil {
			t.Errorf("revoking a revoked credential = %v, %v, want false", ok, err)
		}
		if _, err := tx.TakeSecret(ctx, "cr3"); identity.ErrorCode(err) != identity.Gone {
			t.Errorf("TakeSecret of a revoked credential = %v, want gone", err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		active, _ := tx.ListCredentials(ctx, "i1", true)
		all, _ := tx.ListCredentials(ctx, "i1", false)
		if len(active) != 0 || len(all) != 4 {
			t.Errorf("credentials active %d all %d, want 0 and 4", len(active), len(all))
		}
		c, _ := tx.GetCredential(ctx, "cr2")
		if c.Status != identity.CredentialRevoked || len(c.Sealed) != 0 || !c.RevokedAt.Equal(t0.Add(time.Minute)) {
			t.Errorf("revoked credential = %+v", c)
		}
		c1, _ := tx.GetCredential(ctx, "cr1")
		if !c1.Revealed {
			t.Error("revealed flag not set")
		}
		return nil
	})
}

func testCases(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := &cases.Case{ID: "case_1", EventID: "evt_1", IdentityID: "i1", Type: identity.Joiner, Status: cases.Running, SubmittedBy: "tok_1", CreatedAt: t0, UpdatedAt: t0,
		Steps: []cases.Step{
			{Seq: 1, Step: plan.Step{Action: plan.Grant, System: "vault", Entitlement: "a", Reason: "r"}, Status: cases.StepPending, UpdatedAt: t0},
			{Seq: 2, Step: plan.Step{Action: plan.Grant, System: "vault", Entitlement: "b", Duration: 2 * time.Hour, NeedsApproval: true}, Status: cases.StepAwaitingApproval, UpdatedAt: t0},
		}}
	update(t, s, func(tx store.Tx) error { return tx.InsertCase(ctx, c) })
	update(t, s, func(tx store.Tx) error {
		got, err := tx.GetCase(ctx, "case_1")
		if err != nil || len(got.Steps) != 2 || got.Steps[1].Duration != 2*time.Hour || !got.Steps[1].NeedsApproval || got.Steps[0].Entitlement != "a" {
			t.Errorf("GetCase = %+v, %v", got, err)
		}
		open, _ := tx.ListOpenSteps(ctx, "i1")
		if len(open) != 2 || open[0].Seq != 1 || open[1].Status != cases.StepAwaitingApproval {
			t.Errorf("ListOpenSteps = %+v", open)
		}
		// Only the pending step counts; the one awaiting approval does not.
		counts, err := tx.CountPendingSteps(ctx)
		if err != nil || len(counts) != 1 || counts[0] != (store.StepCount{System: "vault", Action: "grant", Count: 1}) {
			t.Errorf("CountPendingSteps = %+v, %v", counts, err)
		}
		if ids, err := tx.ListPendingCases(ctx, 10); err != nil || len(ids) != 1 || ids[0] != "case_1" {
			t.Errorf("ListPendingCases = %v, %v", ids, err)
		}
		st := got.Steps[0]
		st.Status, st.Attempts, st.Result = cases.StepDone, 1, "granted"
		if err := tx.UpdateStep(ctx, &st); err != nil {
			return err
		}
		got.Status, got.CompletedAt = cases.Completed, t0.Add(time.Second)
		return tx.UpdateCase(ctx, got)
	})
	view(t, s, func(tx store.Tx) error {
		if ids, err := tx.ListPendingCases(ctx, 10); err != nil || len(ids) != 0 {
			t.Errorf("ListPendingCases after the step ran = %v, %v", ids, err)
		}
		got, _ := tx.GetCase(ctx, "case_1")
		if got.Status != cases.Completed || got.Steps[0].Status != cases.StepDone || got.Steps[0].Attempts != 1 || !got.CompletedAt.Equal(t0.Add(time.Second)) {
			t.Errorf("after update = %+v", got)
		}
		if _, err := tx.GetCase(ctx, "nope"); !store.IsNotFound(err) {
			t.Errorf("GetCase(nope) = %v", err)
		}
		cs, _ := tx.ListCases(ctx, "i1", 10)
		if len(cs) != 1 {
			t.Errorf("ListCases = %d", len(cs))
		}
		return nil
	})

	// A case stored completed keeps its steps in its own row; it reads
	// back exactly like one whose steps are rows, and its revocations are
	// counted for the guard all the same.
	steps := func() []cases.Step {
		return []cases.Step{
			{Seq: 1, Step: plan.Step{Action: plan.RevokeCredential, System: "vault", Rule: "key", CredentialID: "cred_1", Reason: "leaver"}, Status: cases.StepDone, Attempts: 1, Result: "revoked", UpdatedAt: t0.Add(1500 * time.Nanosecond)},
			{Seq: 2, Step: plan.Step{Action: plan.RevokeGrant, System: "vault", Entitlement: "a"}, Status: cases.StepDone, Attempts: 1, Result: "revoked", UpdatedAt: t0},
			{Seq: 3, Step: plan.Step{Action: plan.Grant, System: "vault", Entitlement: "b", Duration: 90 * time.Minute, NeedsApproval: true}, Status: cases.StepDenied, DecidedBy: "tok_2", Result: "denied", UpdatedAt: t0},
		}
	}
	done := &cases.Case{ID: "case_2", EventID: "evt_2", IdentityID: "i2", Type: identity.Leaver, Status: cases.Completed, SubmittedBy: "tok_1", CreatedAt: t0, UpdatedAt: t0, CompletedAt: t0, Steps: steps()}
	running := &cases.Case{ID: "case_3", EventID: "evt_3", IdentityID: "i3", Type: identity.Leaver, Status: cases.Running, SubmittedBy: "tok_1", CreatedAt: t0, UpdatedAt: t0, Steps: steps()}
	update(t, s, func(tx store.Tx) error {
		for _, c := range []*cases.Case{done, running} {
			if err := tx.InsertCase(ctx, c); err != nil {
				return err
			}
			if err := tx.InsertAccepted(ctx, &store.Event{ID: c.EventID, Event: identity.Event{Source: "guarded", ID: c.EventID, Type: identity.Leaver, ExternalID: c.IdentityID},
				CaseID: c.ID, IdentityID: c.IdentityID, Status: store.EventApplied, ReceivedAt: t0, EffectiveAt: t0}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		a, err := tx.GetCase(ctx, "case_2")
		if err != nil {
			return err
		}
		b, err := tx.GetCase(ctx, "case_3")
		if err != nil {
			return err
		}
		for i := range a.Steps {
			x, y := a.Steps[i], b.Steps[i]
			x.CaseID, y.CaseID = "", ""
			if !reflect.DeepEqual(x, y) {
				t.Errorf("step %d stored inline = %+v\nstored as a row = %+v", i+1, x, y)
			}
		}
		if len(a.Steps) != 3 || a.Steps[0].CaseID != "case_2" {
			t.Errorf("inline steps = %+v", a.Steps)
		}
		n, err := tx.CountRevocations(ctx, "guarded", t0.Add(-time.Minute))
		if err != nil || n != 4 {
			t.Errorf("CountRevocations = %d, %v; want 2 per case", n, err)
		}
		return nil
	})
	testCaseInEvent(t, s, done)
}

// testCaseInEvent: a case completed on acceptance that shares its event's
// ULID (which SQL stores keep in the event's row) reads back like done,
// stored in a row of its own for the same identity, and is listed and
// counted with it; a case InsertAccepted cannot keep in the event's row is
// stored all the same and reads back as given.
func testCaseInEvent(t *testing.T, s store.Store, done *cases.Case) {
	ctx := context.Background()
	at := t0.Add(time.Second)
	ev := func(id string) *store.Event {
		return &store.Event{ID: id, Event: identity.Event{Source: "guarded", ID: id, Type: identity.Leaver, ExternalID: done.IdentityID},
			CaseID: "case_" + strings.TrimPrefix(id, "evt_"), IdentityID: done.IdentityID, Principal: done.SubmittedBy, Status: store.EventApplied, ReceivedAt: at, EffectiveAt: at}
	}
	inline := ev("evt_01INLINE")
	inlineCase := &cases.Case{ID: inline.CaseID, EventID: inline.ID, IdentityID: done.IdentityID, Type: identity.Leaver, Status: cases.Completed,
		SubmittedBy: done.SubmittedBy, CreatedAt: at, UpdatedAt: at, CompletedAt: at, Steps: slices.Clone(done.Steps)}
	update(t, s, func(tx store.Tx) error {
		if err := tx.InsertAccepted(ctx, inline, inlineCase); err != nil {
			return err
		}
		// An event without a case, whose case ID therefore finds nothing.
		return tx.InsertAccepted(ctx, ev("evt_01NOCASE"), nil)
	})
	// Cases that may change again, or say what an event's row cannot, for
	// another identity and source so that the counts below are done's.
	for name, change := range map[string]func(c *cases.Case){
		"running": func(c *cases.Case) { c.Status, c.CompletedAt = cases.Running, time.Time{} },
		"reason":  func(c *cases.Case) { c.Reason = "why" },
		"updated": func(c *cases.Case) { c.UpdatedAt = c.UpdatedAt.Add(time.Second) },
	} {
		e := ev("evt_01" + strings.ToUpper(name))
		e.Event.Source, e.Event.ExternalID, e.IdentityID = "other", "i9", "i9"
		c := *inlineCase
		c.ID, c.EventID, c.IdentityID = e.CaseID, e.ID, "i9"
		c.Steps = []cases.Step{{Seq: 1, Step: plan.Step{Action: plan.RevokeGrant, System: "vault", Entitlement: "a"}, Status: cases.StepPending, UpdatedAt: at}}
		change(&c)
		update(t, s, func(tx store.Tx) error { return tx.InsertAccepted(ctx, e, &c) })
		view(t, s, func(tx store.Tx) error {
			got, err := tx.GetCase(ctx, c.ID)
			if err != nil {
				t.Errorf("%s: GetCase = %v", name, err)
				return nil
			}
			if got.Status != c.Status || got.Reason != c.Reason || !got.UpdatedAt.Equal(c.UpdatedAt) || got.EventID != e.ID ||
				len(got.Steps) != 1 || got.Steps[0].Status != cases.StepPending || got.Steps[0].CaseID != c.ID {
				t.Errorf("%s: case read back = %+v, stored %+v", name, got, c)
			}
			return nil
		})
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetCase(ctx, inline.CaseID)
		if err != nil {
			return err
		}
		// It reads back as done does from its own row, but for what names
		// and times it, and its steps as done's (stored with the same
		// precision).
		row, err := tx.GetCase(ctx, done.ID)
		if err != nil {
			return err
		}
		want := *row
		want.ID, want.EventID, want.CreatedAt, want.UpdatedAt, want.CompletedAt = inline.CaseID, inline.ID, at, at, at
		want.Steps = slices.Clone(row.Steps)
		for i := range want.Steps {
			want.Steps[i].CaseID = inline.CaseID
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("case in its event's row =\n%+v\nwant\n%+v", *got, want)
		}
		for _, id := range []string{"case_01NOCASE", "case_01NEVER", "case_"} {
			if _, err := tx.GetCase(ctx, id); !store.IsNotFound(err) {
				t.Errorf("GetCase(%s) = %v, want not found", id, err)
			}
		}
		cs, err := tx.ListCases(ctx, done.IdentityID, 10)
		if err != nil || len(cs) != 2 || cs[0].ID != inline.CaseID || cs[1].ID != done.ID || cs[0].Status != cases.Completed || !cs[0].CreatedAt.Equal(at) {
			t.Errorf("ListCases = %+v, %v; want the case in the event's row, then %s", cs, err, done.ID)
		}
		if cs, _ := tx.ListCases(ctx, done.IdentityID, 1); len(cs) != 1 || cs[0].ID != inline.CaseID {
			t.Errorf("ListCases limit 1 = %+v", cs)
		}
		n, err := tx.CountRevocations(ctx, "guarded", t0.Add(-time.Minute))
		if err != nil || n != 6 {
			t.Errorf("CountRevocations = %d, %v; want 2 per case, the one in its event's row too", n, err)
		}
		if n, _ := tx.CountRevocations(ctx, "guarded", at.Add(time.Microsecond)); n != 0 {
			t.Errorf("CountRevocations after the window = %d", n)
		}
		return nil
	})
}

func testFindings(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error {
		for i, want := range []bool{true, false} {
			ok, err := tx.InsertFinding(ctx, &identity.Finding{ID: fmt.Sprintf("f%d", i), Kind: identity.FindingOwnerNotActive, IdentityID: "p1", Message: "owner left", CreatedAt: t0})
			if err != nil || ok != want {
				t.Errorf("InsertFinding #%d = %v, %v, want %v", i, ok, err, want)
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		fs, err := tx.ListFindings(ctx, store.FindingFilter{OpenOnly: true, Kind: identity.FindingOwnerNotActive})
		if err != nil || len(fs) != 1 || fs[0].IdentityID != "p1" {
			t.Errorf("ListFindings = %+v, %v", fs, err)
		}
		return nil
	})
	// The lifecycle: acknowledged until a time, open again, resolved by
	// kind (several at once, a system's only when named).
	until := t0.Add(time.Hour)
	update(t, s, func(tx store.Tx) error {
		for _, f := range []*identity.Finding{
			{ID: "f2", Kind: identity.FindingAccountAdopted, IdentityID: "p1", System: "db", Message: "m", CreatedAt: t0},
			{ID: "f3", Kind: identity.FindingAccountExistsUnmanaged, IdentityID: "p1", System: "ldap", Message: "m", CreatedAt: t0},
		} {
			if _, err := tx.InsertFinding(ctx, f); err != nil {
				return err
			}
		}
		if ok, err := tx.AcknowledgeFinding(ctx, "f0", "tok_a", "known", t0, until); !ok || err != nil {
			t.Errorf("AcknowledgeFinding = %v, %v", ok, err)
		}
		if fs, _ := tx.ListFindings(ctx, store.FindingFilter{State: identity.FindingAcknowledged}); len(fs) != 1 || fs[0].AckReason != "known" || !fs[0].AckUntil.Equal(until) {
			t.Errorf("acknowledged findings = %+v", fs)
		}
		if ok, err := tx.ReopenFinding(ctx, "f0", until.Add(time.Minute)); ok || err != nil {
			t.Errorf("ReopenFinding with another acknowledgement's end = %v, %v, want false", ok, err)
		}
		if ok, err := tx.ReopenFinding(ctx, "f0", until); !ok || err != nil {
			t.Errorf("ReopenFinding = %v, %v", ok, err)
		}
		done, err := tx.ResolveFindings(ctx, "p1", []string{identity.FindingAccountAdopted, identity.FindingAccountExistsUnmanaged}, "ldap", t0, "left")
		if err != nil || len(done) != 1 || done[0].ID != "f3" {
			t.Errorf("ResolveFindings in ldap = %+v, %v", done, err)
		}
		done, err = tx.ResolveFindings(ctx, "p1", []string{identity.FindingAccountAdopted, identity.FindingOwnerNotActive}, "", t0, "left")
		if err != nil || len(done) != 2 {
			t.Errorf("ResolveFindings of two kinds = %+v, %v", done, err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		fs, err := tx.ListFindings(ctx, store.FindingFilter{State: identity.FindingResolved})
		if err != nil || len(fs) != 3 || fs[0].Resolution != "left" || fs[0].State != identity.FindingResolved {
			t.Errorf("resolved findings = %+v, %v", fs, err)
		}
		if fs, _ := tx.ListFindings(ctx, store.FindingFilter{State: identity.FindingOpen}); len(fs) != 0 {
			t.Errorf("open findings after resolving = %+v", fs)
		}
		// Paged: in ID order, after the ID given, Limit at a time.
		var ids []string
		for after := ""; ; {
			fs, err := tx.ListFindings(ctx, store.FindingFilter{Paged: true, After: after, Limit: 2})
			if err != nil {
				return err
			}
			if len(fs) == 0 {
				break
			}
			for _, f := range fs {
				ids = append(ids, f.ID)
			}
			after = fs[len(fs)-1].ID
		}
		if strings.Join(ids, ",") != "f0,f2,f3" {
			t.Errorf("paged findings = %v, want f0,f2,f3", ids)
		}
		return nil
	})
}

// Verify checks the whole audit log of s.
func Verify(ctx context.Context, s store.Store) (int64, error) {
	if err := s.SealAudit(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := s.View(ctx, func(tx store.Tx) error {
		var err error
		n, err = audit.Verify(ctx, tx)
		return err
	})
	return n, err
}

// ChainedRecords returns one record per identity, chained from the start
// of a log as the audit_log layout (before migration 011) stored them.
func ChainedRecords(identities ...string) []audit.Record {
	var out []audit.Record
	var seq int64
	var hash string
	for i, who := range identities {
		r := audit.New(t0.Add(time.Duration(i)*time.Second), "tok_1", "event.accepted", who, "", map[string]any{"n": i})
		r.Chain(seq, hash)
		seq, hash = r.Seq, r.Hash
		out = append(out, r)
	}
	return out
}

// CheckMigratedChain appends a record for i1 to s, whose log a migration
// carried over from ChainedRecords("i1", "i2", "i1") (and, where the old
// layout had them, records not yet chained), and checks that the whole log
// verifies with want records and that i1's records, as "seq action", are
// wantI1.
func CheckMigratedChain(t *testing.T, s store.Store, want int64, wantI1 string) {
	t.Helper()
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error { return tx.AppendAudit(ctx, audit.New(t0, "tok_1", "after", "i1", "", nil)) })
	if n, err := Verify(ctx, s); err != nil || n != want {
		t.Fatalf("Verify = %d, %v; want %d records", n, err, want)
	}
	var got []string
	view(t, s, func(tx store.Tx) error {
		return audit.Scan(ctx, tx, "i1", func(r *audit.Record) error { got = append(got, fmt.Sprint(r.Seq, " ", r.Action)); return nil })
	})
	if fmt.Sprint(got) != wantI1 {
		t.Fatalf("records of i1 = %v, want %s", got, wantI1)
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		update(t, s, func(tx store.Tx) error {
			return tx.AppendAudit(ctx,
				audit.New(t0, "tok_1", "event.accepted", "i1", "c1", map[string]any{"n": i}),
				audit.New(t0, "tok_1", "step.done", "i2", "", nil))
		})
	}
	n, err := Verify(ctx, s)
	if err != nil || n != 6 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	var mine []int64
	if err := s.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	view(t, s, func(tx store.Tx) error {
		return audit.Scan(ctx, tx, "i1", func(r *audit.Record) error { mine = append(mine, r.Seq); return nil })
	})
	if fmt.Sprint(mine) != "[1 3 5]" {
		t.Fatalf("records of i1 = %v", mine)
	}
}

func testAuditConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if err := s.Update(ctx, func(tx store.Tx) error {
					return tx.AppendAudit(ctx, audit.New(t0, fmt.Sprint(g), "x", "", "", nil))
				}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, err := Verify(ctx, s); err != nil || n != 80 {
		t.Fatalf("Verify after concurrent appends = %d, %v", n, err)
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error {
		return tx.InsertToken(ctx, &store.Token{ID: "tok_1", Name: "admin", Role: "admin", Hash: []byte{1, 1}, CreatedAt: t0})
	})
	view(t, s, func(tx store.Tx) error {
		tk, err := tx.GetTokenByHash(ctx, []byte{1, 1})
		if err != nil || tk.ID != "tok_1" || tk.Role != "admin" {
			t.Errorf("GetTokenByHash = %+v, %v", tk, err)
		}
		if _, err := tx.GetTokenByHash(ctx, []byte{2}); !store.IsNotFound(err) {
			t.Errorf("unknown token = %v", err)
		}
		n, _ := tx.CountTokens(ctx)
		if n != 1 {
			t.Errorf("CountTokens = %d", n)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		if ok, err := tx.RevokeToken(ctx, "tok_1", t0); !ok || err != nil {
			t.Errorf("RevokeToken = %v, %v", ok, err)
		}
		if ok, err := tx.RevokeToken(ctx, "tok_1", t0); ok || err != nil {
			t.Errorf("second RevokeToken = %v, %v, want false, nil", ok, err)
		}
		if _, err := tx.RevokeToken(ctx, "tok_nope", t0); !store.IsNotFound(err) {
			t.Errorf("RevokeToken(unknown) = %v, want not found", err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		tks, err := tx.ListTokens(ctx)
		if err != nil || len(tks) != 1 || !tks[0].RevokedAt.Equal(t0) {
			t.Errorf("ListTokens = %+v, %v", tks, err)
		}
		if n, _ := tx.CountTokens(ctx); n != 0 {
			t.Errorf("CountTokens after revoke = %d", n)
		}
		return nil
	})
}

// testBoundTokens: a token reads with its bound identity's state, a
// person's tokens are revoked together, and VisibleTo keeps what a member
// may read.
func testBoundTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	boss := human("idn_boss", "boss")
	report := human("idn_rep", "rep")
	report.ManagerID = boss.ID
	bot := human("idn_bot", "bot")
	bot.Kind, bot.OwnerID = identity.AIAgent, boss.ID
	other := human("idn_oth", "oth")
	update(t, s, func(tx store.Tx) error {
		for _, id := range []*identity.Identity{boss, report, bot, other} {
			if err := tx.InsertIdentity(ctx, id); err != nil {
				return err
			}
		}
		for i, tk := range []*store.Token{
			{ID: "tok_b1", Name: "boss", Role: "member", IdentityID: boss.ID},
			{ID: "tok_b2", Name: "boss-approver", Role: "approver", IdentityID: boss.ID},
			{ID: "tok_src", Name: "hr", Role: "source", Source: "hr"},
		} {
			tk.Hash, tk.CreatedAt = []byte{9, byte(i)}, t0
			if err := tx.InsertToken(ctx, tk); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		tk, err := tx.GetTokenByHash(ctx, []byte{9, 0})
		if err != nil || tk.IdentityID != boss.ID || tk.IdentityState != identity.Active {
			t.Errorf("bound token = %+v, %v", tk, err)
		}
		tk, err = tx.GetToken(ctx, "tok_src")
		if err != nil || tk.Source != "hr" || tk.IdentityState != "" {
			t.Errorf("source token = %+v, %v", tk, err)
		}
		if _, err := tx.GetToken(ctx, "tok_nope"); !store.IsNotFound(err) {
			t.Errorf("GetToken(unknown) = %v", err)
		}
		ids, err := tx.ListIdentities(ctx, store.IdentityFilter{VisibleTo: boss.ID})
		var got []string
		for _, id := range ids {
			got = append(got, id.ID)
		}
		if err != nil || strings.Join(got, ",") != "idn_boss,idn_bot,idn_rep" {
			t.Errorf("VisibleTo(boss) = %v, %v", got, err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		boss.State = identity.Departed
		if err := tx.UpdateIdentity(ctx, boss); err != nil {
			return err
		}
		got, err := tx.RevokeIdentityTokens(ctx, boss.ID, t0.Add(time.Minute))
		slices.Sort(got)
		if err != nil || strings.Join(got, ",") != "tok_b1,tok_b2" {
			t.Errorf("RevokeIdentityTokens = %v, %v", got, err)
		}
		if again, err := tx.RevokeIdentityTokens(ctx, boss.ID, t0.Add(2*time.Minute)); len(again) != 0 || err != nil {
			t.Errorf("second RevokeIdentityTokens = %v, %v", again, err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		tk, err := tx.GetTokenByHash(ctx, []byte{9, 1})
		if err != nil || tk.IdentityState != identity.Departed || !tk.RevokedAt.Equal(t0.Add(time.Minute)) {
			t.Errorf("departed person's token = %+v, %v", tk, err)
		}
		if tk, _ := tx.GetToken(ctx, "tok_src"); !tk.RevokedAt.IsZero() {
			t.Errorf("unbound token revoked with the person: %+v", tk)
		}
		return nil
	})
}

func testRollback(t *testing.T, s store.Store) {
	ctx := context.Background()
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertIdentity(ctx, human("idn_rb", "rb")); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, audit.New(t0, "a", "b", "", "", nil)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.GetIdentity(ctx, "idn_rb"); !store.IsNotFound(err) {
			t.Errorf("rolled-back identity is visible: %v", err)
		}
		seq, _, _ := tx.AuditHead(ctx)
		if seq != 0 {
			t.Errorf("audit head = %d after rollback, want 0", seq)
		}
		return nil
	})
	if n, err := Verify(ctx, s); err != nil || n != 0 {
		t.Errorf("after rollback Verify = %d, %v, want 0 records", n, err)
	}
}

func testMeta(t *testing.T, s store.Store) {
	ctx := context.Background()
	view(t, s, func(tx store.Tx) error {
		if v, err := tx.GetMeta(ctx, "k"); v != "" || err != nil {
			t.Errorf("unset meta = %q, %v", v, err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error { return tx.PutMeta(ctx, "k", "1") })
	update(t, s, func(tx store.Tx) error { return tx.PutMeta(ctx, "k", "2") })
	view(t, s, func(tx store.Tx) error {
		if v, err := tx.GetMeta(ctx, "k"); v != "2" || err != nil {
			t.Errorf("meta = %q, %v, want 2", v, err)
		}
		return nil
	})
}

// testBatch checks Batcher (where a backend has it): independent updates
// commit together, and one failure commits none of them.
func testBatch(t *testing.T, s store.Store) {
	b, ok := s.(store.Batcher)
	if !ok {
		t.Skipf("%s runs updates one by one (group commit inside Update); it has no UpdateBatch", s.Backend())
	}
	ctx := context.Background()
	fns := func(prefix string, failAt int) []func(store.Tx) error {
		var out []func(store.Tx) error
		for i := 0; i < 3; i++ {
			out = append(out, func(tx store.Tx) error {
				if err := tx.InsertIdentity(ctx, human(fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("%s-ext%d", prefix, i))); err != nil {
					return err
				}
				if err := tx.PutGrant(ctx, &identity.Grant{IdentityID: fmt.Sprintf("%s%d", prefix, i), Entitlement: "e", System: "vault", GrantedAt: t0}); err != nil {
					return err
				}
				if err := tx.AppendAudit(ctx, audit.New(t0, "a", "batch", fmt.Sprintf("%s%d", prefix, i), "", nil)); err != nil {
					return err
				}
				if i == failAt {
					return errors.New("boom")
				}
				return nil
			})
		}
		return out
	}
	if err := b.UpdateBatch(ctx, fns("ok", -1)); err != nil {
		t.Fatal(err)
	}
	if err := b.UpdateBatch(ctx, fns("bad", 1)); err == nil || err.Error() != "boom" {
		t.Fatalf("failing batch = %v, want boom", err)
	}
	view(t, s, func(tx store.Tx) error {
		for i := 0; i < 3; i++ {
			if _, err := tx.GetIdentity(ctx, fmt.Sprintf("ok%d", i)); err != nil {
				t.Errorf("identity ok%d: %v", i, err)
			}
			if gs, _ := tx.ListGrants(ctx, fmt.Sprintf("ok%d", i)); len(gs) != 1 {
				t.Errorf("grants of ok%d = %d", i, len(gs))
			}
			if _, err := tx.GetIdentity(ctx, fmt.Sprintf("bad%d", i)); !store.IsNotFound(err) {
				t.Errorf("identity bad%d of the failed batch: %v, want not found", i, err)
			}
		}
		return nil
	})
	if n, err := Verify(ctx, s); err != nil || n != 3 {
		t.Fatalf("Verify = %d, %v, want the 3 records of the committed batch", n, err)
	}
}
