package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"

	"github.com/jml-dev/jml/internal/clock"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/pgtest"
	"github.com/jml-dev/jml/internal/store/postgres"
	"github.com/jml-dev/jml/internal/store/sqlite"
	"github.com/jml-dev/jml/internal/store/storetest"
	"github.com/jml-dev/jml/internal/vault"
)

type fixture struct {
	e     *Engine
	s     store.Store
	clock *clock.Fake
}

var (
	source   = Principal{ID: "tok_source", Role: RoleSource, Source: "hr"}
	idpFeed  = Principal{ID: "tok_idp", Role: RoleSource, Source: "idp"}
	approver = Principal{ID: "tok_approver", Role: RoleApprover}
	admin    = Principal{ID: "tok_admin", Role: RoleAdmin}
)

func openSQLiteB(t testing.TB) store.Store {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "jml.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openSQLite(t *testing.T) store.Store { return openSQLiteB(t) }

func openPostgres(t *testing.T) store.Store { return openPostgresB(t) }

func openPostgresB(t testing.TB) store.Store {
	s, err := postgres.Open(context.Background(), pgtest.NewDatabase(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newFixture(t *testing.T, s store.Store) *fixture { return newFixtureDeferred(t, s, false) }

func newFixtureDeferred(t *testing.T, s store.Store, deferBuiltin bool) *fixture {
	return newFixtureTB(t, s, func(c *Config) { c.DeferBuiltin = deferBuiltin })
}

func newFixtureB(b *testing.B, s store.Store) *fixture { return newFixtureTB(b, s, nil) }

// newFixtureTB builds an engine on s with the quickstart policy; configure,
// if not nil, adjusts its configuration first.
func newFixtureTB(t testing.TB, s store.Store, configure func(*Config)) *fixture {
	t.Helper()
	pol, err := policy.LoadFile("../../examples/quickstart/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := vault.NewSealer(bytes.Repeat([]byte{1}, 32))
	c := clock.NewFake(time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC))
	cfg := Config{Store: s, Policy: pol, Sealer: sealer, Clock: c, Rand: rand.Reader}
	if configure != nil {
		configure(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{e: e, s: s, clock: c}
}

// person makes an active human identity for externalID (no birthright of
// the test policies applies to department "Approvals") and returns a
// principal of role bound to it: someone who may decide.
func (f *fixture) person(t *testing.T, externalID string, role Role) Principal {
	t.Helper()
	res := f.submit(t, identity.Event{Source: "hr", ID: "person-" + externalID, Type: identity.Joiner, ExternalID: externalID, Kind: identity.Human,
		Attributes: map[string]any{"department": "Approvals"}})
	return Principal{ID: "tok_" + externalID, Role: role, IdentityID: res.IdentityID}
}

func (f *fixture) submit(t *testing.T, ev identity.Event) *Result {
	t.Helper()
	res, err := f.e.Submit(context.Background(), source, ev)
	if err != nil {
		t.Fatalf("Submit %s %s: %v", ev.Type, ev.ExternalID, err)
	}
	if res.CaseID != "" {
		if err := f.e.RunCase(context.Background(), res.CaseID, false); err != nil {
			t.Fatalf("RunCase: %v", err)
		}
	}
	return res
}

func (f *fixture) getCase(t *testing.T, id string) *cases.Case {
	t.Helper()
	var c *cases.Case
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		var err error
		c, err = tx.GetCase(context.Background(), id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) grants(t *testing.T, identityID string) []string {
	t.Helper()
	var out []string
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		gs, err := tx.ListGrants(context.Background(), identityID)
		for _, g := range gs {
			out = append(out, g.Entitlement)
		}
		return err
	}); err != nil {
		t.Fatalf("grants of %s: %v", identityID, err)
	}
	return out
}

func (f *fixture) activeCreds(t *testing.T, identityID string) []identity.Credential {
	t.Helper()
	var out []identity.Credential
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		var err error
		out, err = tx.ListCredentials(context.Background(), identityID, true)
		return err
	}); err != nil {
		t.Fatalf("credentials of %s: %v", identityID, err)
	}
	return out
}

func ev(id string, typ identity.EventType, ext string, edit func(*identity.Event)) identity.Event {
	e := identity.Event{Source: "hr", ID: id, Type: typ, ExternalID: ext}
	if edit != nil {
		edit(&e)
	}
	return e
}

func TestLifecycleSQLite(t *testing.T)   { testLifecycle(t, openSQLite(t), false) }
func TestLifecyclePostgres(t *testing.T) { testLifecycle(t, openPostgres(t), false) }

// TestLifecycleDeferred runs built-in steps through the job path.
func TestLifecycleDeferred(t *testing.T) { testLifecycle(t, openSQLite(t), true) }

// testLifecycle takes the quickstart's three identities through joiner,
// mover and leaver.
func testLifecycle(t *testing.T, s store.Store, deferBuiltin bool) {
	f := newFixtureDeferred(t, s, deferBuiltin)
	ctx := context.Background()

	alice := f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) {
		e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Engineering"}
	}))
	if c := f.getCase(t, alice.CaseID); c.Status != cases.Completed {
		t.Fatalf("engineer joiner case = %s (%s), want completed", c.Status, c.Reason)
	}
	if got := strings.Join(f.grants(t, alice.IdentityID), ","); got != "git-read,git-write" {
		t.Fatalf("engineer grants = %s", got)
	}
	aliceCreds := f.activeCreds(t, alice.IdentityID)
	if len(aliceCreds) != 1 {
		t.Fatalf("engineer credentials = %d, want 1", len(aliceCreds))
	}

	pipe := f.submit(t, ev("2", identity.Joiner, "deploy-bot", func(e *identity.Event) {
		e.Kind, e.Owner, e.Attributes = identity.Pipeline, "alice", map[string]any{"cluster": "eu-1"}
	}))
	pipeCreds := f.activeCreds(t, pipe.IdentityID)
	if len(pipeCreds) != 1 || pipeCreds[0].Marker != "jml_" {
		t.Fatalf("pipeline credentials = %+v", pipeCreds)
	}
	// The owner reveals the key once.
	owner := Principal{ID: "tok_alice", Role: RoleMember, IdentityID: alice.IdentityID}
	key, _, err := f.e.Reveal(ctx, owner, pipeCreds[0].ID)
	if err != nil || !strings.HasPrefix(key, pipeCreds[0].Marker) || vault.Fingerprint(key) != pipeCreds[0].Fingerprint {
		t.Fatalf("Reveal = %q, %v", key, err)
	}
	if _, _, err := f.e.Reveal(ctx, owner, pipeCreds[0].ID); identity.ErrorCode(err) != identity.Gone {
		t.Fatalf("second Reveal = %v, want gone", err)
	}
	if _, _, err := f.e.Reveal(ctx, approver, pipeCreds[0].ID); identity.ErrorCode(err) != identity.Forbidden {
		t.Fatalf("Reveal by a stranger = %v, want forbidden", err)
	}
	in, err := f.e.Introspect(ctx, key)
	if err != nil || !in.Active || in.Sub != pipe.IdentityID || !strings.Contains(in.Scope, "ci-deploy-staging") {
		t.Fatalf("Introspect pipeline key = %+v, %v", in, err)
	}
	// Moving cluster rotates the key: the old one stops working.
	f.submit(t, ev("2b", identity.Mover, "deploy-bot", func(e *identity.Event) { e.Attributes = map[string]any{"cluster": "us-2"} }))
	if in, _ := f.e.Introspect(ctx, key); in.Active {
		t.Fatal("pipeline key still active after rotation")
	}
	if creds := f.activeCreds(t, pipe.IdentityID); len(creds) != 1 || creds[0].ID == pipeCreds[0].ID {
		t.Fatalf("after rotation credentials = %+v", creds)
	}

	agent := f.submit(t, ev("3", identity.Joiner, "triage-agent", func(e *identity.Event) {
		e.Kind, e.Owner, e.Attributes = identity.AIAgent, "alice", map[string]any{"tools": []any{"search-docs"}}
	}))
	if got := strings.Join(f.grants(t, agent.IdentityID), ","); got != "tool:search-docs" {
		t.Fatalf("agent grants = %s", got)
	}
	// Widening to a production tool waits for approval.
	widen := f.submit(t, ev("4", identity.Mover, "triage-agent", func(e *identity.Event) {
		e.Attributes = map[string]any{"tools": []any{"search-docs", "prod-db-write"}}
	}))
	c := f.getCase(t, widen.CaseID)
	if c.Status != cases.AwaitingApproval {
		t.Fatalf("widening case = %s, want awaiting_approval", c.Status)
	}
	if got := strings.Join(f.grants(t, agent.IdentityID), ","); got != "tool:search-docs" {
		t.Fatalf("agent grants before approval = %s", got)
	}
	if _, err := f.e.Decide(ctx, source, widen.CaseID, true, ""); identity.ErrorCode(err) != identity.Forbidden {
		t.Fatalf("approval by a source = %v, want forbidden", err)
	}
	approver := f.person(t, "lead", RoleApprover)
	selfApprover := approver
	selfApprover.ID = source.ID
	if _, err := f.e.Decide(ctx, selfApprover, widen.CaseID, true, ""); identity.ErrorCode(err) != identity.Forbidden || !strings.Contains(err.Error(), "self-approval") {
		t.Fatalf("self-approval = %v, want forbidden", err)
	}
	if _, err := f.e.Decide(ctx, approver, widen.CaseID, true, "ticket OPS-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.e.RunCase(ctx, widen.CaseID, false); err != nil {
		t.Fatal(err)
	}
	if c := f.getCase(t, widen.CaseID); c.Status != cases.Completed {
		t.Fatalf("approved case = %s (%s)", c.Status, c.Reason)
	}
	var prodGrant identity.Grant
	f.s.View(ctx, func(tx store.Tx) error {
		gs, _ := tx.ListGrants(ctx, agent.IdentityID)
		for _, g := range gs {
			if g.Entitlement == "tool:prod-db-write" {
				prodGrant = g
			}
		}
		return nil
	})
	if prodGrant.ApprovedBy != approver.Actor() || !prodGrant.ExpiresAt.Equal(f.clock.Now().Add(720*time.Hour)) {
		t.Fatalf("prod grant = %+v, want approved by %s expiring in 720h", prodGrant, approver.ID)
	}
	if _, err := f.e.Decide(ctx, approver, widen.CaseID, true, ""); identity.ErrorCode(err) != identity.Conflict {
		t.Fatalf("approving twice = %v, want conflict", err)
	}
	// Narrowing applies at once.
	f.submit(t, ev("5", identity.Mover, "triage-agent", func(e *identity.Event) { e.Attributes = map[string]any{"tools": []any{"prod-db-write"}} }))
	if got := strings.Join(f.grants(t, agent.IdentityID), ","); got != "tool:prod-db-write" {
		t.Fatalf("agent grants after removing a tool = %s", got)
	}

	// The engineer leaves: credentials die in the accepting transaction.
	var aliceKey string
	f.s.View(ctx, func(tx store.Tx) error { return nil })
	aliceKey, _, err = f.e.Reveal(ctx, admin, aliceCreds[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := f.e.Introspect(ctx, aliceKey); !in.Active {
		t.Fatal("engineer key inactive before the leaver")
	}
	leave, err := f.e.Submit(ctx, source, ev("6", identity.Leaver, "alice", nil))
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := f.e.Introspect(ctx, aliceKey); in.Active {
		t.Fatal("engineer key active after the leaver was accepted")
	}
	if err := f.e.RunCase(ctx, leave.CaseID, false); err != nil {
		t.Fatal(err)
	}
	if c := f.getCase(t, leave.CaseID); c.Status != cases.Completed || len(f.grants(t, alice.IdentityID)) != 0 {
		t.Fatalf("leaver case = %s, grants %v", c.Status, f.grants(t, alice.IdentityID))
	}
	var findings []identity.Finding
	f.s.View(ctx, func(tx store.Tx) error {
		var err error
		findings, err = tx.ListFindings(ctx, store.FindingFilter{Kind: identity.FindingOwnerNotActive, OpenOnly: true})
		return err
	})
	got := map[string]bool{}
	for _, fd := range findings {
		got[fd.IdentityID] = true
	}
	if len(findings) != 2 || !got[pipe.IdentityID] || !got[agent.IdentityID] {
		t.Fatalf("findings = %+v, want owner_not_active for the pipeline and the agent", findings)
	}
	if n, err := storetest.Verify(ctx, s); err != nil || n == 0 {
		t.Fatalf("audit verify = %d, %v", n, err)
	}
}

func TestBadEventsChangeNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	head := func(t *testing.T) int64 {
		t.Helper()
		var seq int64
		if err := f.s.View(ctx, func(tx store.Tx) error {
			var err error
			seq, _, err = tx.AuditHead(ctx)
			return err
		}); err != nil {
			t.Fatalf("AuditHead: %v", err)
		}
		return seq
	}
	before := head(t)
	tests := []struct {
		name  string
		ev    identity.Event
		code  identity.Code
		field string
	}{
		{"unknown identity", ev("2", identity.Mover, "bob", nil), identity.NotFound, "externalId"},
		{"illegal transition", ev("3", identity.Resume, "alice", nil), identity.Conflict, "type"},
		{"joiner twice", ev("4", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }), identity.Conflict, "type"},
		{"unknown owner", ev("5", identity.Joiner, "bot", func(e *identity.Event) { e.Kind, e.Owner = identity.Pipeline, "ghost" }), identity.Invalid, "owner"},
		{"no owner", ev("6", identity.Joiner, "bot", func(e *identity.Event) { e.Kind = identity.Workload }), identity.Invalid, "owner"},
		{"kind change", ev("7", identity.Mover, "alice", func(e *identity.Event) { e.Kind = identity.AIAgent }), identity.Invalid, "kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.e.Submit(ctx, source, tt.ev)
			var ie *identity.Error
			if err == nil || identity.ErrorCode(err) != tt.code {
				t.Fatalf("Submit = %v, want code %s", err, tt.code)
			}
			if ok := asError(err, &ie); !ok || ie.Field != tt.field {
				t.Fatalf("error field = %+v, want %q", ie, tt.field)
			}
			if got := head(t); got != before {
				t.Fatalf("audit head moved from %d to %d: something was stored", before, got)
			}
		})
	}
	// The rejected events were not recorded, so a corrected resubmission
	// with the same event ID is accepted.
	f.submit(t, ev("6", identity.Joiner, "bot", func(e *identity.Event) { e.Kind, e.Owner = identity.Workload, "alice" }))
}

func TestDuplicateEventRunsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	e := ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human })
	first := f.submit(t, e)
	second, err := f.e.Submit(context.Background(), source, e)
	if err != nil || !second.Duplicate || second.CaseID != first.CaseID || second.EventID != first.EventID {
		t.Fatalf("duplicate = %+v, %v; first %+v", second, err, first)
	}
	if n := len(f.activeCreds(t, first.IdentityID)); n != 1 {
		t.Fatalf("credentials after a duplicate = %d, want 1", n)
	}
}

func TestFutureJoiner(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	start := f.clock.Now().Add(48 * time.Hour)
	res := f.submit(t, ev("1", identity.Joiner, "carol", func(e *identity.Event) {
		e.Kind, e.EffectiveAt, e.Attributes = identity.Human, &start, map[string]any{"department": "Engineering"}
	}))
	if res.Status != store.EventScheduled || res.CaseID != "" {
		t.Fatalf("future joiner = %+v, want scheduled without a case", res)
	}
	var id *identity.Identity
	f.s.View(ctx, func(tx store.Tx) error { id, _ = tx.GetIdentity(ctx, res.IdentityID); return nil })
	if id.State != identity.Pending || len(f.grants(t, id.ID)) != 0 {
		t.Fatalf("before start: state %s grants %v", id.State, f.grants(t, id.ID))
	}
	f.clock.Advance(48 * time.Hour)
	if err := f.e.runEffective(ctx, res.EventID); err != nil {
		t.Fatal(err)
	}
	var rec *store.Event
	f.s.View(ctx, func(tx store.Tx) error {
		rec, _ = tx.GetEvent(ctx, res.EventID)
		id, _ = tx.GetIdentity(ctx, res.IdentityID)
		return nil
	})
	if rec.Status != store.EventApplied || id.State != identity.Active {
		t.Fatalf("after start: event %s identity %s", rec.Status, id.State)
	}
	if err := f.e.RunCase(ctx, rec.CaseID, false); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.grants(t, id.ID), ","); got != "git-read,git-write" {
		t.Fatalf("grants after start = %s", got)
	}
}

func asError(err error, target **identity.Error) bool {
	for err != nil {
		if ie, ok := err.(*identity.Error); ok {
			*target = ie
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestLeaverOvertakesQueuedJoiner: with the joiner's steps still queued,
// a leaver arrives; the joiner's job must not grant or issue afterwards.
func TestLeaverOvertakesQueuedJoiner(t *testing.T) {
	t.Parallel()
	f := newFixtureDeferred(t, openSQLite(t), true)
	ctx := context.Background()
	join, err := f.e.Submit(ctx, source, ev("1", identity.Joiner, "alice", func(e *identity.Event) {
		e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Engineering"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	leave, err := f.e.Submit(ctx, source, ev("2", identity.Leaver, "alice", nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{join.CaseID, leave.CaseID} {
		if err := f.e.RunCase(ctx, id, false); err != nil {
			t.Fatal(err)
		}
		if c := f.getCase(t, id); c.Status != cases.Completed {
			t.Fatalf("case %s = %s", id, c.Status)
		}
	}
	if g := f.grants(t, join.IdentityID); len(g) != 0 {
		t.Fatalf("grants after leaver = %v", g)
	}
	if c := f.activeCreds(t, join.IdentityID); len(c) != 0 {
		t.Fatalf("active credentials after leaver = %v", c)
	}
	for _, s := range f.getCase(t, join.CaseID).Steps {
		if s.Status != cases.StepSuperseded {
			t.Fatalf("joiner step %d = %s, want superseded", s.Seq, s.Status)
		}
	}
}

// TestNoSelfManagement: an identity can no more manage itself than own
// itself; the refused mover changes nothing.
func TestNoSelfManagement(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	bob := f.submit(t, ev("1", identity.Joiner, "bob", func(e *identity.Event) { e.Kind = identity.Human }))
	_, err := f.e.Submit(context.Background(), source, ev("2", identity.Mover, "bob", func(e *identity.Event) { e.Manager = "bob" }))
	if identity.ErrorCode(err) != identity.Invalid || !strings.Contains(err.Error(), "cannot manage itself") {
		t.Fatalf("self-management = %v", err)
	}
	var id *identity.Identity
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		var err error
		id, err = tx.GetIdentity(context.Background(), bob.IdentityID)
		return err
	}); err != nil || id.ManagerID != "" {
		t.Fatalf("bob after the refused mover: %+v, %v", id, err)
	}
}
