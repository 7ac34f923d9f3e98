package engine

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
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
		return audit.Scan(ctx, tx, res.IdentityID, func(r *audit.Record) error { byAction[r.Action] = *r; return nil })
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

// TestRefusalTargetIsAnID: a refused decision's target comes from the
// caller's request path; the audit trail keeps it only when it has an
// ID's shape, so a refused caller cannot write text into the chain.
func TestRefusalTargetIsAnID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	nobody := Principal{ID: "tok_r", Role: RoleResource, Token: true}
	for _, target := range []string{"case_doesnotexist\nfake record", strings.Repeat("x", 6000), "case_01M99NTE10CQJPSPTDHTKB20Y4"} {
		if err := f.e.RecordRefusal(ctx, nobody, DecisionApprove, target, identity.Errorf(identity.Forbidden, "no")); err == nil {
			t.Fatal("RecordRefusal returned no error")
		}
	}
	var targets []string
	if err := f.s.View(ctx, func(tx store.Tx) error {
		return audit.Scan(ctx, tx, "", func(r *audit.Record) error {
			if r.Action == "decision.refused" {
				var d struct{ Target string }
				if err := json.Unmarshal(r.Data, &d); err != nil {
					return err
				}
				targets = append(targets, d.Target)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"(not an ID: 29 bytes)", "(not an ID: 6000 bytes)", "case_01M99NTE10CQJPSPTDHTKB20Y4"}
	if !slices.Equal(targets, want) {
		t.Fatalf("targets recorded = %q, want %q", targets, want)
	}
}
