package findings

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/accept"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlite"
)

// TestOwnerNotActive runs the participant on a real store's transactions,
// with no engine: an owner's suspension opens owner_not_active for the
// NHIs it owns that have not left (once, however often), and the owner's
// resume resolves them, with records of both.
func TestOwnerNotActive(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "jml.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pol, err := policy.Parse("p.yaml", []byte("systems: [{name: vault, type: builtin}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	mk := func(id string, kind identity.Kind, state identity.State, owner string) *identity.Identity {
		return &identity.Identity{ID: id, Source: "hr", ExternalID: id, Kind: kind, State: state, OwnerID: owner, Attributes: map[string]any{}, CreatedAt: t0, UpdatedAt: t0}
	}
	ada := mk("idn_ada", identity.Human, identity.Active, "")
	if err := s.Update(ctx, func(tx store.Tx) error {
		for _, i := range []*identity.Identity{ada, mk("idn_bot", identity.Pipeline, identity.Active, "idn_ada"), mk("idn_old", identity.Pipeline, identity.Departed, "idn_ada")} {
			if err := tx.InsertIdentity(ctx, i); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n := 0
	change := func(before, after identity.State) *accept.Change {
		t.Helper()
		b, a := ada.Clone(), ada.Clone()
		b.State, a.State = before, after
		ch := &accept.Change{Policy: pol, Now: t0.Add(time.Hour), Actor: "idn_hr", Before: &b, After: &a, Case: &cases.Case{ID: "case_x"},
			NewID: func(p string) string { n++; return p + string(rune('A'+n)) }}
		if err := s.Update(ctx, func(tx store.Tx) error { ch.Tx = tx; return Participant{}.Accept(ctx, ch) }); err != nil {
			t.Fatal(err)
		}
		return ch
	}
	open := func() []identity.Finding {
		t.Helper()
		var fs []identity.Finding
		if err := s.View(ctx, func(tx store.Tx) error {
			var err error
			fs, err = tx.ListFindings(ctx, store.FindingFilter{Kind: identity.FindingOwnerNotActive, OpenOnly: true})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	if ch := change(identity.Active, identity.Suspended); ch.Findings != 1 || len(ch.Records) != 1 || ch.Records[0].Action != "finding.created" || ch.Records[0].Actor != accept.System {
		t.Fatalf("suspend: findings %d, records %+v", ch.Findings, ch.Records)
	}
	if fs := open(); len(fs) != 1 || fs[0].IdentityID != "idn_bot" {
		t.Fatalf("open findings after the suspend: %+v, want the active pipeline's", fs)
	}
	if ch := change(identity.Suspended, identity.Suspended); ch.Findings != 0 {
		t.Fatalf("a second event while suspended opened %d more", ch.Findings)
	}
	ch := change(identity.Suspended, identity.Active)
	if len(ch.Records) != 1 || ch.Records[0].Action != "finding.resolved" || ch.Records[0].Actor != "idn_hr" {
		t.Fatalf("resume: records %+v", ch.Records)
	}
	if fs := open(); len(fs) != 0 {
		t.Fatalf("open findings after the resume: %+v", fs)
	}
}
