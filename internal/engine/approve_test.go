package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/jml-dev/jml/internal/cases"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// TestNoSelfApproval: a decision on a case is refused to the owner of the
// identity the access is for and to the person who submitted the event
// (under another of their tokens), approving or denying. A refusal is
// audited as decision.refused and leaves the stored case as it was: its
// steps still await approval and no grant is written. Someone else's
// approval then applies.
func TestNoSelfApproval(t *testing.T) {
	t.Parallel()
	for _, backend := range []struct {
		name string
		open func(*testing.T) store.Store
	}{{"sqlite", openSQLite}, {"postgres", openPostgres}} {
		t.Run(backend.name, func(t *testing.T) {
			t.Parallel()
			testNoSelfApproval(t, newFixture(t, backend.open(t)))
		})
	}
}

func testNoSelfApproval(t *testing.T, f *fixture) {
	ctx := context.Background()
	owner := f.person(t, "alice", RoleApprover)
	carol := f.person(t, "carol", RoleApprover)
	// Carol submits with a source token bound to her.
	secret, _, err := f.e.IssueToken(ctx, admin, TokenSpec{Name: "carol-feed", Role: RoleSource, Source: "hr", Identity: carol.IdentityID})
	if err != nil {
		t.Fatal(err)
	}
	carolFeed, err := f.e.Authenticate(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.e.Submit(ctx, carolFeed, ev("agent", identity.Joiner, "agent", func(e *identity.Event) {
		e.Kind, e.Owner, e.Attributes = identity.AIAgent, "alice", map[string]any{"tools": []any{"prod-db-write"}}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.RunCase(ctx, res.CaseID, false); err != nil {
		t.Fatal(err)
	}
	stored := func() (*cases.Case, []string) {
		c := f.getCase(t, res.CaseID)
		return c, f.grants(t, res.IdentityID)
	}
	awaiting := func(when string) {
		t.Helper()
		c, grants := stored()
		if c.Status != cases.AwaitingApproval || len(grants) != 0 {
			t.Fatalf("%s: case %s, grants %v; want awaiting_approval and none", when, c.Status, grants)
		}
		for _, s := range c.Steps {
			if s.Entitlement == "tool:prod-db-write" && (s.Status != cases.StepAwaitingApproval || s.DecidedBy != "") {
				t.Fatalf("%s: step %s is %s decided by %q, want awaiting approval and undecided", when, s.Step.String(), s.Status, s.DecidedBy)
			}
		}
	}
	awaiting("before any decision")

	refused := 0
	for _, tc := range []struct {
		who  string
		p    Principal
		want string
	}{
		{"the agent's owner", owner, "you own"},
		{"the submitter under another token", carol, "submitted the event"},
	} {
		for _, approve := range []bool{true, false} {
			_, err := f.e.Decide(ctx, tc.p, res.CaseID, approve, "mine")
			if identity.ErrorCode(err) != identity.Forbidden || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decision (approve=%v) by %s = %v, want forbidden saying %q", approve, tc.who, err, tc.want)
			}
			refused++
			awaiting("after a decision by " + tc.who)
		}
	}
	if n := auditCount(t, f.s, res.IdentityID, "decision.refused"); n != refused {
		t.Fatalf("decision.refused records = %d, want %d", n, refused)
	}
	if n := auditCount(t, f.s, res.IdentityID, "case.approved") + auditCount(t, f.s, res.IdentityID, "case.denied"); n != 0 {
		t.Fatalf("refused decisions left %d case.approved or case.denied records", n)
	}

	lead := f.person(t, "lead", RoleApprover)
	if _, err := f.e.Decide(ctx, lead, res.CaseID, true, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.e.RunCase(ctx, res.CaseID, false); err != nil {
		t.Fatal(err)
	}
	if c, grants := stored(); c.Status != cases.Completed || strings.Join(grants, ",") != "tool:prod-db-write" {
		t.Fatalf("after someone else's approval: case %s, grants %v", c.Status, grants)
	}
	var approvedBy string
	if err := f.s.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.s.View(ctx, func(tx store.Tx) error {
		return audit.Scan(ctx, tx, res.IdentityID, func(r *audit.Record) error {
			if r.Action == "case.approved" {
				approvedBy = r.Actor
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if approvedBy != lead.IdentityID {
		t.Fatalf("case.approved by %q, want %s", approvedBy, lead.IdentityID)
	}
}
