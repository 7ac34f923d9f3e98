package engine

import (
	"context"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// TestLeaverRevokesInItsTransaction: accepting a leaver revokes the
// identity's credentials in jml's own vault and its tokens for jml's API in
// the accepting transaction. The test reads the stored rows as soon as
// Submit returns, before any case runs: each is revoked at the moment the
// event was accepted. It does not ask Introspect or Authenticate, which
// refuse anything of an identity that is not active and so cannot tell
// whether the transaction revoked it. With the built-in steps deferred to
// a job, nothing but the accepting transaction can have revoked them; run
// inline, the transaction's own revocation is what its audit record and
// the plan's steps say.
func TestLeaverRevokesInItsTransaction(t *testing.T) {
	t.Parallel()
	for _, backend := range []struct {
		name string
		open func(*testing.T) store.Store
	}{{"sqlite", openSQLite}, {"postgres", openPostgres}} {
		for _, deferBuiltin := range []bool{false, true} {
			name := backend.name
			if deferBuiltin {
				name += "-deferred"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				testLeaverRevokesInItsTransaction(t, newFixtureDeferred(t, backend.open(t), deferBuiltin))
			})
		}
	}
}

func testLeaverRevokesInItsTransaction(t *testing.T, f *fixture) {
	ctx := context.Background()
	alice := f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) {
		e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Engineering"}
	}))
	creds := f.activeCreds(t, alice.IdentityID)
	if len(creds) != 1 {
		t.Fatalf("joiner's credentials = %+v, want one", creds)
	}
	_, member, err := f.e.IssueToken(ctx, admin, TokenSpec{Name: "alice", Role: RoleMember, Identity: alice.IdentityID})
	if err != nil {
		t.Fatal(err)
	}
	_, unbound, err := f.e.IssueToken(ctx, admin, TokenSpec{Name: "ops", Role: RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}

	f.clock.Advance(90 * time.Minute)
	accepted := f.clock.Now().UTC()
	leave, err := f.e.Submit(ctx, source, ev("2", identity.Leaver, "alice", nil))
	if err != nil {
		t.Fatal(err)
	}
	// Later than the acceptance: a revocation stamped with this time was
	// made by something that ran after Submit.
	f.clock.Advance(time.Hour)

	var stored []identity.Credential
	var tokens []*store.Token
	if err := f.s.View(ctx, func(tx store.Tx) error {
		var err error
		if stored, err = tx.ListCredentials(ctx, alice.IdentityID, false); err != nil {
			return err
		}
		for _, id := range []string{member.ID, unbound.ID} {
			tk, err := tx.GetToken(ctx, id)
			if err != nil {
				return err
			}
			tokens = append(tokens, tk)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].ID != creds[0].ID {
		t.Fatalf("stored credentials = %+v, want the joiner's one", stored)
	}
	if c := stored[0]; c.Status != identity.CredentialRevoked || !c.RevokedAt.Equal(accepted) {
		t.Fatalf("credential after the leaver was accepted: status %s revokedAt %s, want revoked at %s", c.Status, c.RevokedAt, accepted)
	}
	if tk := tokens[0]; !tk.RevokedAt.Equal(accepted) {
		t.Fatalf("bound token after the leaver was accepted: revokedAt %s, want %s", tk.RevokedAt, accepted)
	}
	if tk := tokens[1]; !tk.RevokedAt.IsZero() {
		t.Fatalf("unbound token revoked at %s by someone else's leaver", tk.RevokedAt)
	}

	// The transaction says it revoked them, and the plan's revocation of
	// the credential is done, not left to a run.
	var revoked, tokensRevoked int
	if err := f.s.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.s.View(ctx, func(tx store.Tx) error {
		return audit.Scan(ctx, tx, alice.IdentityID, func(r *audit.Record) error {
			if r.CaseID != leave.CaseID || !r.At.Equal(accepted) {
				return nil
			}
			switch r.Action {
			case "credentials.revoked":
				revoked++
			case "tokens.revoked":
				tokensRevoked++
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if revoked != 1 || tokensRevoked != 1 {
		t.Fatalf("leaver's case %s audited credentials.revoked %d times and tokens.revoked %d times at its acceptance, want once each", leave.CaseID, revoked, tokensRevoked)
	}
	found := false
	for _, s := range f.getCase(t, leave.CaseID).Steps {
		if s.CredentialID == creds[0].ID {
			found = true
			if s.Status != cases.StepDone {
				t.Fatalf("leaver's step %s is %s before any run, want done", s.Step.String(), s.Status)
			}
		}
	}
	if !found {
		t.Fatalf("leaver's case %s has no step revoking %s", leave.CaseID, creds[0].ID)
	}
}
