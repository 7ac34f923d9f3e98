package engine

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/store"
)

// TestPreviewNamesOnlyWhatExists: a previewed mover that rotates an agent's
// key shows the key it would replace, every step planned and the case
// planned (not completed); it stores nothing, and previewing again shows
// the same plan.
func TestPreviewNamesOnlyWhatExists(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	f.submit(t, ev("0", identity.Joiner, "alice", func(e *identity.Event) {
		e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Engineering"}
	}))
	agent := f.submit(t, ev("1", identity.Joiner, "triage-agent", func(e *identity.Event) {
		e.Kind, e.Owner, e.Attributes = identity.AIAgent, "alice", map[string]any{"tools": []any{"search-docs"}}
	}))
	keys := f.activeCreds(t, agent.IdentityID)
	if len(keys) != 1 {
		t.Fatalf("the agent holds %d credentials, want its one key", len(keys))
	}
	mover := ev("2", identity.Mover, "triage-agent", func(e *identity.Event) {
		e.Attributes = map[string]any{"tools": []any{"search-docs", "read-tickets"}}
	})
	preview := func() []byte {
		t.Helper()
		res, c, err := f.e.Preview(ctx, admin, mover)
		if err != nil {
			t.Fatal(err)
		}
		if res.EventID != "" || res.CaseID != "" || c == nil {
			t.Fatalf("preview = %+v, case %+v", res, c)
		}
		if c.Status != previewStatus || !c.CompletedAt.IsZero() || c.ID != "" {
			t.Errorf("previewed case: status %s, completed %v, id %q; want planned, never, none", c.Status, c.CompletedAt, c.ID)
		}
		rotated := false
		for _, s := range c.Steps {
			if s.Status != cases.StepPlanned && s.Status != cases.StepAwaitingApproval {
				t.Errorf("previewed step %s is %s", s.Action, s.Status)
			}
			switch s.Action {
			case plan.RotateCredential:
				rotated = true
				if s.CredentialID != keys[0].ID {
					t.Errorf("the rotation names %q, want the key it replaces, %s", s.CredentialID, keys[0].ID)
				}
			case plan.IssueCredential:
				if s.CredentialID != "" {
					t.Errorf("an issue step names %q, which the preview made up", s.CredentialID)
				}
			}
		}
		if !rotated {
			t.Fatalf("the mover's preview rotates nothing: %+v", c.Steps)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first, second := preview(), preview()
	if string(first) != string(second) {
		t.Errorf("two previews of one event differ:\n%s\n%s", first, second)
	}
	if got := f.activeCreds(t, agent.IdentityID); len(got) != 1 || got[0].ID != keys[0].ID {
		t.Errorf("after the previews the agent holds %+v, want its key %s only", got, keys[0].ID)
	}
	if err := f.s.View(ctx, func(tx store.Tx) error {
		if _, err := tx.FindEvent(ctx, "hr", "2"); !store.IsNotFound(err) {
			t.Errorf("the previewed event was stored: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
