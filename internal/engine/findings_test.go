package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// findings reads the identity's findings of kind, failing the test on error.
func (f *fixture) findings(t *testing.T, identityID, kind string) []identity.Finding {
	t.Helper()
	var out []identity.Finding
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		var err error
		out, err = tx.ListFindings(context.Background(), store.FindingFilter{IdentityID: identityID, Kind: kind})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// alicesPipeline submits a joiner for a pipeline ext owned by alice, as
// event id, and runs its case.
func (f *fixture) alicesPipeline(t *testing.T, id, ext string) *Result {
	t.Helper()
	return f.submit(t, ev(id, identity.Joiner, ext, func(e *identity.Event) {
		e.Kind, e.Owner, e.Attributes = identity.Pipeline, "alice", map[string]any{"cluster": "eu-1"}
	}))
}

// states lists each finding's state, oldest first.
func states(fs []identity.Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.State))
	}
	return strings.Join(out, ",")
}

// TestOwnerNotActiveResolves: the finding an owner's departure or suspend
// raises on their NHI resolves when the NHI gets a new active owner, when
// the owner is back, or when the NHI leaves; each resolution says why.
func TestOwnerNotActiveResolves(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	human := func(id, ext string) {
		f.submit(t, ev(id, identity.Joiner, ext, func(e *identity.Event) { e.Kind = identity.Human }))
	}
	human("1", "alice")
	human("2", "bob")
	handed, waiting, retired := f.alicesPipeline(t, "3", "bot-handed"), f.alicesPipeline(t, "4", "bot-waiting"), f.alicesPipeline(t, "5", "bot-retired")

	f.submit(t, ev("6", identity.Suspend, "alice", nil))
	for _, p := range []*Result{handed, waiting, retired} {
		if got := states(f.findings(t, p.IdentityID, identity.FindingOwnerNotActive)); got != "open" {
			t.Fatalf("after the owner's suspend: %s", got)
		}
	}
	// Alice is back: every finding her suspend raised resolves.
	f.submit(t, ev("7", identity.Resume, "alice", nil))
	for _, p := range []*Result{handed, waiting, retired} {
		fs := f.findings(t, p.IdentityID, identity.FindingOwnerNotActive)
		if states(fs) != "resolved" || !strings.Contains(fs[0].Resolution, "active again") {
			t.Fatalf("after the owner's resume: %+v", fs)
		}
	}
	f.submit(t, ev("8", identity.Leaver, "alice", nil))
	// A new owner for one, a leaver for another, nothing for the third.
	f.submit(t, ev("9", identity.Mover, "bot-handed", func(e *identity.Event) { e.Owner = "bob" }))
	f.submit(t, ev("10", identity.Leaver, "bot-retired", nil))
	for _, tc := range []struct {
		r     *Result
		state identity.FindingState
		cause string
	}{{handed, identity.FindingResolved, "is active"}, {waiting, identity.FindingOpen, ""}, {retired, identity.FindingResolved, "left"}} {
		var left *identity.Finding
		for _, fd := range f.findings(t, tc.r.IdentityID, identity.FindingOwnerNotActive) {
			if strings.Contains(fd.Message, "is departed") {
				left = &fd
			}
		}
		if left == nil || left.State != tc.state || !strings.Contains(left.Resolution, tc.cause) {
			t.Fatalf("the finding alice's leaver raised = %+v, want %s for %q", left, tc.state, tc.cause)
		}
	}
	var actions []string
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		return audit.Scan(context.Background(), tx, handed.IdentityID, func(r *audit.Record) error { actions = append(actions, r.Action); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(actions, " "), "finding.resolved") {
		t.Fatalf("no finding.resolved audit record: %v", actions)
	}
}

// TestAcknowledgeFinding: an admin acknowledges an open finding with a
// reason until a time; it is open again after it if still unresolved.
// Bad acknowledgements change nothing.
func TestAcknowledgeFinding(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	bot := f.alicesPipeline(t, "2", "bot")
	f.submit(t, ev("3", identity.Leaver, "alice", nil))
	fd := f.findings(t, bot.IdentityID, identity.FindingOwnerNotActive)[0]
	now := f.clock.Now()
	for _, tc := range []struct {
		p      Principal
		reason string
		until  time.Time
		code   identity.Code
	}{
		{source, "ok", now.Add(time.Hour), identity.Forbidden},
		{admin, " ", now.Add(time.Hour), identity.Invalid},
		{admin, "ok", now.Add(-time.Minute), identity.Invalid},
		{admin, "ok", now.Add(2 * MaxAcknowledgement), identity.Invalid},
		{admin, "ok", time.Time{}, identity.Invalid},
	} {
		if _, err := f.e.AcknowledgeFinding(ctx, tc.p, fd.ID, tc.reason, tc.until); identity.ErrorCode(err) != tc.code {
			t.Fatalf("acknowledge(%q, %v) = %v, want %s", tc.reason, tc.until, err, tc.code)
		}
	}
	if got := states(f.findings(t, bot.IdentityID, identity.FindingOwnerNotActive)); got != "open" {
		t.Fatalf("after refused acknowledgements: %s", got)
	}
	until := now.Add(24 * time.Hour)
	acked, err := f.e.AcknowledgeFinding(ctx, admin, fd.ID, "bot is being retired in January", until)
	if err != nil || acked.State != identity.FindingAcknowledged || acked.AckedBy != admin.ID || !acked.AckUntil.Equal(until) {
		t.Fatalf("acknowledged = %+v, %v", acked, err)
	}
	var open []identity.Finding
	f.s.View(ctx, func(tx store.Tx) error {
		var err error
		open, err = tx.ListFindings(ctx, store.FindingFilter{State: identity.FindingOpen})
		return err
	})
	if len(open) != 0 {
		t.Fatalf("open findings while acknowledged: %+v", open)
	}
	// The timer fires: still unresolved, so open again. A timer of an
	// earlier acknowledgement does nothing.
	f.clock.Advance(25 * time.Hour)
	if err := f.e.reopenFinding(ctx, ReopenFindingArgs{FindingID: fd.ID, Until: until.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := states(f.findings(t, bot.IdentityID, identity.FindingOwnerNotActive)); got != "acknowledged" {
		t.Fatalf("after a stale timer: %s", got)
	}
	if err := f.e.reopenFinding(ctx, ReopenFindingArgs{FindingID: fd.ID, Until: until}); err != nil {
		t.Fatal(err)
	}
	if got := states(f.findings(t, bot.IdentityID, identity.FindingOwnerNotActive)); got != "open" {
		t.Fatalf("after the acknowledgement expired: %s", got)
	}
	// Resolved: nothing left to acknowledge.
	f.submit(t, ev("4", identity.Leaver, "bot", nil))
	if _, err := f.e.AcknowledgeFinding(ctx, admin, fd.ID, "late", f.clock.Now().Add(time.Hour)); identity.ErrorCode(err) != identity.Conflict {
		t.Fatalf("acknowledging a resolved finding = %v", err)
	}
}

// TestResumeReissuedCredentialIsTheOwners: after an NHI's suspend and
// resume, the credential jml shows active works (introspects active) and,
// when it was issued again, its owner can reveal it.
func TestResumeReissuedCredentialIsTheOwners(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	alice := f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	bot := f.alicesPipeline(t, "2", "bot")
	owner := Principal{ID: "tok_alice", Role: RoleMember, IdentityID: alice.IdentityID}
	first := f.activeCreds(t, bot.IdentityID)
	key, _, err := f.e.Reveal(ctx, owner, first[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	f.submit(t, ev("3", identity.Suspend, "bot", nil))
	if in, _ := f.e.Introspect(ctx, key); in.Active {
		t.Fatal("a suspended pipeline's key introspects active")
	}
	f.submit(t, ev("4", identity.Resume, "bot", nil))
	now := f.activeCreds(t, bot.IdentityID)
	if len(now) != 1 {
		t.Fatalf("active credentials after resume: %+v", now)
	}
	if now[0].ID == first[0].ID {
		if in, _ := f.e.Introspect(ctx, key); !in.Active {
			t.Fatal("the key jml shows active after resume does not introspect active")
		}
		return
	}
	again, _, err := f.e.Reveal(ctx, owner, now[0].ID)
	if err != nil {
		t.Fatalf("the owner reveals the re-issued key: %v", err)
	}
	if in, _ := f.e.Introspect(ctx, again); !in.Active {
		t.Fatal("the re-issued key does not introspect active")
	}
}
