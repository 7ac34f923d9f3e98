package engine

import (
	"context"
	"testing"

	"github.com/jml-dev/jml/internal/identity"
)

// The read models the CLI reads through apply the principal's reach as the
// API's do: a person's own token finds by external ID only the identities
// it may read, and the owners and managers named in a table only those it
// may read; what is an operator's (tokens, a source's snapshot, the whole
// audit chain) is refused to roles without that permission.
func TestReadModelsApplyReach(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, openSQLite(t))
	alice := f.person(t, "alice", RoleMember)
	f.person(t, "carol", RoleMember)
	bot := f.submit(t, identity.Event{Source: "hr", ID: "bot", Type: identity.Joiner, ExternalID: "deploy-bot", Kind: identity.Pipeline, Owner: "alice"})
	bob := f.submit(t, identity.Event{Source: "hr", ID: "bob", Type: identity.Joiner, ExternalID: "bob", Kind: identity.Human, Manager: "carol",
		Attributes: map[string]any{"department": "Approvals"}})

	got, err := f.e.IdentityByExternalID(ctx, alice, "hr", "deploy-bot")
	if err != nil || got.ID != bot.IdentityID {
		t.Fatalf("alice's own NHI by external ID: %v, %v", got, err)
	}
	_, err = f.e.IdentityByExternalID(ctx, alice, "hr", "bob")
	if identity.ErrorCode(err) != identity.NotFound || identity.ErrorMessage(err) != `identity "hr/bob" not found` {
		t.Fatalf("someone else's identity for a member: %v, want the answer a missing one gets", err)
	}
	_, err = f.e.IdentityByExternalID(ctx, admin, "hr", "nobody")
	if identity.ErrorMessage(err) != `identity "hr/nobody" not found` {
		t.Fatalf("a missing identity: %v", err)
	}
	if got, err := f.e.IdentityByExternalID(ctx, admin, "hr", "bob"); err != nil || got.ID != bob.IdentityID {
		t.Fatalf("admin by external ID: %v, %v", got, err)
	}

	var botID, bobID identity.Identity
	for _, ref := range []struct {
		id  string
		out *identity.Identity
	}{{bot.IdentityID, &botID}, {bob.IdentityID, &bobID}} {
		v, err := f.e.IdentityView(ctx, admin, ref.id)
		if err != nil {
			t.Fatal(err)
		}
		*ref.out = v.Identity
	}
	refs, err := f.e.OwnersAndManagers(ctx, alice, []identity.Identity{botID, bobID})
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[alice.IdentityID].ExternalID != "alice" {
		t.Fatalf("alice sees owners and managers %v, want only herself (bob's manager is not hers to read)", refs)
	}
	if refs, err = f.e.OwnersAndManagers(ctx, admin, []identity.Identity{botID, bobID}); err != nil || len(refs) != 2 || refs[bobID.ManagerID].ExternalID != "carol" {
		t.Fatalf("admin sees owners and managers %v, %v; want alice and carol", refs, err)
	}

	auditor := Principal{ID: "tok_auditor", Role: RoleAuditor}
	if _, err := f.e.ListTokens(ctx, auditor); identity.ErrorCode(err) != identity.Forbidden {
		t.Errorf("tokens listed to an auditor: %v", err)
	}
	if _, err := f.e.ListTokens(ctx, admin); err != nil {
		t.Errorf("tokens listed to an admin: %v", err)
	}
	if _, err := f.e.Snapshot(ctx, alice, "hr"); identity.ErrorCode(err) != identity.Forbidden {
		t.Errorf("a source's snapshot read by a member: %v", err)
	}
	if snap, err := f.e.Snapshot(ctx, admin, "hr"); err != nil || snap != nil {
		t.Errorf("no snapshot yet: %q, %v", snap, err)
	}
	if _, err := f.e.VerifyAudit(ctx, approver); identity.ErrorCode(err) != identity.Forbidden {
		t.Errorf("audit chain verified for an approver: %v", err)
	}
	if n, err := f.e.VerifyAudit(ctx, auditor); err != nil || n < 4 {
		t.Errorf("audit chain verified for an auditor: %d records, %v", n, err)
	}
}
