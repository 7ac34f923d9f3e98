package engine

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// TestScheduledEventNamesItsSubmitter: an event submitted with a person's
// token and applied later, by jml's timer, is recorded as that person's
// (with the token), as its acceptance was, not as a bare token ID.
func TestScheduledEventNamesItsSubmitter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	pam := f.submit(t, ev("p", identity.Joiner, "pam", func(e *identity.Event) { e.Kind = identity.Human }))
	secret, tk, err := f.e.IssueToken(ctx, admin, TokenSpec{Name: "pam", Role: RoleAdmin, Identity: pam.IdentityID})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.e.Authenticate(ctx, secret)
	if err != nil || !p.Token || p.Actor() != pam.IdentityID {
		t.Fatalf("pam's token authenticates as %+v (%v), want a token principal whose actor is %s", p, err, pam.IdentityID)
	}
	start := f.clock.Now().Add(24 * time.Hour)
	res, err := f.e.Submit(ctx, p, ev("1", identity.Joiner, "quentin", func(e *identity.Event) { e.Kind, e.EffectiveAt = identity.Human, &start }))
	if err != nil || res.Status != store.EventScheduled {
		t.Fatalf("future joiner = %+v, %v", res, err)
	}
	f.clock.Advance(24 * time.Hour)
	if err := f.e.runEffective(ctx, res.EventID); err != nil {
		t.Fatal(err)
	}
	byAction := map[string]audit.Record{}
	f.s.View(ctx, func(tx store.Tx) error {
		return tx.ScanAudit(ctx, res.IdentityID, func(r *audit.Record) error { byAction[r.Action] = *r; return nil })
	})
	for _, action := range []string{"event.scheduled", "event.accepted"} {
		r, ok := byAction[action]
		var data map[string]any
		json.Unmarshal(r.Data, &data)
		if !ok || r.Actor != pam.IdentityID || data["actorToken"] != tk.ID {
			t.Errorf("%s: actor %q, data %s; want actor %s with actorToken %s", action, r.Actor, r.Data, pam.IdentityID, tk.ID)
		}
	}
}
