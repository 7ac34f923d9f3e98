// Package offboard is the participant in accepting an event that ends
// jml's own access with the identity, inside the leaver's transaction:
// every credential of the built-in vault (its API keys and passwords) and
// every API token for jml itself bound to the identity is revoked before
// the transaction commits, so there is no moment in which a departed
// identity's key still introspects active or its token still calls jml.
// The plan's revoke steps for those credentials are settled as done.
//
// (A suspended identity's credentials and tokens are not revoked: they
// stop working while it is not active, and a resume brings them back.)
//
// It works on an accept.Change alone; it must not import the engine.
package offboard

import (
	"context"
	"maps"
	"slices"

	"github.com/jml-dev/jml/internal/accept"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/plan"
)

// Participant revokes a leaver's credentials of the built-in vault and
// API tokens in the accepting transaction. It runs after planning, whose
// revoke steps it settles.
type Participant struct{}

var _ accept.Participant = Participant{}

func (Participant) Name() string { return "offboard" }

func (Participant) Accept(ctx context.Context, ch *accept.Change) error {
	if !ch.Leaving() {
		return nil
	}
	id, c := ch.After, ch.Case
	revoked := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(ch.Policy.Systems)) {
		if !ch.Policy.Systems[name].Builtin() {
			continue
		}
		ids, err := ch.Tx.RevokeSystemCredentials(ctx, id.ID, name, ch.Now)
		if err != nil {
			return err
		}
		for _, cred := range ids {
			revoked[cred] = true
		}
	}
	if len(revoked) > 0 {
		ch.Revoked += len(revoked)
		ch.Audit("credentials.revoked", id.ID, c.ID, map[string]any{"credentials": slices.Sorted(maps.Keys(revoked)), "when": "in the leaver's transaction"})
		for i := range c.Steps {
			s := &c.Steps[i]
			if s.Action == plan.RevokeCredential && revoked[s.CredentialID] && s.Status == cases.StepPending {
				s.Status, s.Result, s.Attempts = cases.StepDone, "revoked in the transaction that accepted the event", 1
			}
		}
	}
	// Authenticate already refuses a token whose identity is not active;
	// revoking them means a rehire does not bring them back.
	tokens, err := ch.Tx.RevokeIdentityTokens(ctx, id.ID, ch.Now)
	if err != nil {
		return err
	}
	if len(tokens) > 0 {
		ch.Audit("tokens.revoked", id.ID, c.ID, map[string]any{"tokens": tokens, "reason": "the identity departed (event " + ch.EventID + ")"})
	}
	return nil
}
