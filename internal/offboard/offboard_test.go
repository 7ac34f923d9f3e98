package offboard

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/accept"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlite"
)

var t0 = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

// TestLeaverLosesJMLAccessInItsTransaction runs the participant on a real
// store's transaction, with no engine: a leaver's credentials of every
// built-in system and its tokens are revoked, as stored, at the acceptance
// time; another system's credential and another person's token are not;
// the plan's revoke step is settled; a suspend changes nothing.
func TestLeaverLosesJMLAccessInItsTransaction(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "jml.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pol, err := policy.Parse("p.yaml", []byte("systems: [{name: vault, type: builtin}, {name: keys, type: builtin}, {name: app, type: webhook, config: {url: 'http://127.0.0.1:1/'}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ada := &identity.Identity{ID: "idn_ada", Source: "hr", ExternalID: "ada", Kind: identity.Human, State: identity.Active, Attributes: map[string]any{}, CreatedAt: t0, UpdatedAt: t0}
	bob := &identity.Identity{ID: "idn_bob", Source: "hr", ExternalID: "bob", Kind: identity.Human, State: identity.Active, Attributes: map[string]any{}, CreatedAt: t0, UpdatedAt: t0}
	cred := func(id, who, system string) *store.StoredCredential {
		return &store.StoredCredential{Credential: identity.Credential{ID: id, IdentityID: who, Rule: "r", System: system, Type: "api_key",
			Status: identity.CredentialActive, Marker: "jml_", Fingerprint: "00", IssuedAt: t0, CaseID: "c0"}, Hash: []byte(id)}
	}
	if err := s.Update(ctx, func(tx store.Tx) error {
		for _, i := range []*identity.Identity{ada, bob} {
			if err := tx.InsertIdentity(ctx, i); err != nil {
				return err
			}
		}
		for _, c := range []*store.StoredCredential{cred("cred_v", "idn_ada", "vault"), cred("cred_k", "idn_ada", "keys"), cred("cred_a", "idn_ada", "app"), cred("cred_b", "idn_bob", "vault")} {
			if err := tx.InsertCredential(ctx, c); err != nil {
				return err
			}
		}
		for _, tk := range []*store.Token{{ID: "tok_ada", Role: "member", IdentityID: "idn_ada", Hash: []byte{1}, CreatedAt: t0}, {ID: "tok_bob", Role: "member", IdentityID: "idn_bob", Hash: []byte{2}, CreatedAt: t0}} {
			if err := tx.InsertToken(ctx, tk); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	run := func(state identity.State) *accept.Change {
		t.Helper()
		after := ada.Clone()
		after.State = state
		now := t0.Add(time.Hour)
		c := &cases.Case{ID: "case_1", IdentityID: ada.ID, Steps: []cases.Step{
			{Seq: 1, Step: plan.Step{Action: plan.RevokeCredential, System: "vault", CredentialID: "cred_v"}, Status: cases.StepPending},
			{Seq: 2, Step: plan.Step{Action: plan.RevokeCredential, System: "app", CredentialID: "cred_a"}, Status: cases.StepPending}}}
		ch := &accept.Change{Policy: pol, Now: now, Actor: "idn_hr", EventID: "evt_1", Type: identity.Leaver, Before: ada, After: &after, Case: c}
		if err := s.Update(ctx, func(tx store.Tx) error {
			ch.Tx, ch.Records, ch.Revoked = tx, nil, 0
			return Participant{}.Accept(ctx, ch)
		}); err != nil {
			t.Fatal(err)
		}
		return ch
	}
	status := func(id string) (identity.CredentialStatus, time.Time) {
		t.Helper()
		var c *store.StoredCredential
		if err := s.View(ctx, func(tx store.Tx) error {
			var err error
			c, err = tx.GetCredential(ctx, id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return c.Status, c.RevokedAt
	}
	tokenRevoked := func(id string) bool {
		t.Helper()
		var tk *store.Token
		if err := s.View(ctx, func(tx store.Tx) error {
			var err error
			tk, err = tx.GetToken(ctx, id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return !tk.RevokedAt.IsZero()
	}

	if ch := run(identity.Suspended); len(ch.Records) != 0 || ch.Case.Steps[0].Status != cases.StepPending {
		t.Fatalf("a suspend: records %v, steps %+v; want nothing done", ch.Records, ch.Case.Steps)
	}
	if st, _ := status("cred_v"); st != identity.CredentialActive || tokenRevoked("tok_ada") {
		t.Fatalf("after a suspend: cred_v %s, token revoked %v", st, tokenRevoked("tok_ada"))
	}

	ch := run(identity.Departed)
	for _, id := range []string{"cred_v", "cred_k"} {
		if st, at := status(id); st != identity.CredentialRevoked || !at.Equal(ch.Now) {
			t.Errorf("%s: %s at %s, want revoked at %s", id, st, at, ch.Now)
		}
	}
	for _, id := range []string{"cred_a", "cred_b"} {
		if st, _ := status(id); st != identity.CredentialActive {
			t.Errorf("%s: %s, want active (another system's, another person's)", id, st)
		}
	}
	if !tokenRevoked("tok_ada") || tokenRevoked("tok_bob") {
		t.Errorf("tokens revoked: ada %v, bob %v; want ada's only", tokenRevoked("tok_ada"), tokenRevoked("tok_bob"))
	}
	if s := ch.Case.Steps; s[0].Status != cases.StepDone || s[1].Status != cases.StepPending {
		t.Errorf("steps %+v: want the vault's revoke settled, the app's left to run", s)
	}
	if ch.Revoked != 2 || len(ch.Records) != 2 || ch.Records[0].Action != "credentials.revoked" || ch.Records[1].Action != "tokens.revoked" {
		t.Errorf("revoked %d, records %+v", ch.Revoked, ch.Records)
	}
}
