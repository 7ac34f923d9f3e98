package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// The audit trail names people, not tokens. Every record of what a
// principal did has:
//   - actor: the identity the token is bound to, when it is bound to one
//     (a person, or a service acting through jml); else the token's ID for
//     an unbound token; "cli:USER" for a command an operating-system user
//     ran against the store; "source:NAME" for a signed webhook; "jml" for
//     what jml does by itself (timers, steps, findings);
//   - data.actorToken: the API token it acted with, whenever it used one
//     (bound or not), so a person's tokens can be told apart. The key is
//     not "token", which token.created and token.revoked use for the token
//     they are about.

// Actor is who an audit record names for what p does (see above).
func (p Principal) Actor() string {
	if p.IdentityID != "" {
		return p.IdentityID
	}
	return p.ID
}

// describe names p for a person reading a step's result: the actor, and
// the token when the actor is the identity it is bound to.
func (p Principal) describe() string {
	if p.Token && p.IdentityID != "" {
		return p.IdentityID + " (token " + p.ID + ")"
	}
	return p.Actor()
}

// auditBy is audit.New for a record of what p did: p.Actor() as its actor
// and the token p used in data (data may be nil; it is not changed).
func auditBy(at time.Time, p Principal, action, identityID, caseID string, data map[string]any) audit.Record {
	token := ""
	if p.Token {
		token = p.ID
	}
	return audit.By(at, p.Actor(), token, action, identityID, caseID, data)
}

// principalOf is the principal an event recorded as its submitter
// (store.Event.Principal) stands for when jml applies the event later: the
// token with the identity it is bound to, or the name as it was recorded.
func principalOf(ctx context.Context, tx store.Tx, id string) (Principal, error) {
	tk, err := tx.GetToken(ctx, id)
	switch {
	case store.IsNotFound(err):
		return Principal{ID: id}, nil
	case err != nil:
		return Principal{}, err
	}
	return Principal{ID: tk.ID, Name: tk.Name, Role: Role(tk.Role), Source: tk.Source, IdentityID: tk.IdentityID, Token: true}, nil
}

// Decisions whose refusals are audited (RecordRefusal).
const (
	DecisionApprove     = "approve"
	DecisionDeny        = "deny"
	DecisionRelease     = "release"
	DecisionDiscard     = "discard"
	DecisionAcknowledge = "acknowledge"
)

// RecordRefusal audits a decision refused to p: who tried (actor and
// token), what (decision and target: a case, hold or finding ID) and why
// (the refusal's message), as "decision.refused", with the case and its
// identity for approve and deny, and the finding's identity for
// acknowledge, when they exist. It is written in
// a transaction of its own after the refused one rolled back: the refusal
// itself changes nothing else. why is returned unchanged, unless the record
// could not be written.
func (e *Engine) RecordRefusal(ctx context.Context, p Principal, decision, target string, why error) error {
	// The target comes from a request's path, from whoever was refused:
	// the audit trail keeps it only if it has an ID's shape (a name of at
	// most 64 characters jml accepts anywhere), else says it was not one.
	if identity.ValidName("target", target) != nil || len(target) > 64 {
		target = fmt.Sprintf("(not an ID: %d bytes)", len(target))
	}
	err := e.store.Update(ctx, func(tx store.Tx) error {
		identityID, caseID := "", ""
		switch decision {
		case DecisionApprove, DecisionDeny:
			c, err := tx.GetCase(ctx, target)
			if err != nil && !store.IsNotFound(err) {
				return err
			}
			if err == nil {
				identityID, caseID = c.IdentityID, c.ID
			}
		case DecisionAcknowledge:
			f, err := tx.GetFinding(ctx, target)
			if err != nil && !store.IsNotFound(err) {
				return err
			}
			if err == nil {
				identityID = f.IdentityID
			}
		}
		return tx.AppendAudit(ctx, auditBy(e.Now().UTC(), p, "decision.refused", identityID, caseID, map[string]any{
			"decision": decision, "target": target, "reason": identity.ErrorMessage(why)}))
	})
	if err != nil {
		return err
	}
	return why
}
