package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// Decide approves (approve=true) or denies every step of a case that awaits
// approval. Decisions are made by people, never on their own behalf: the
// principal's token must be bound to an active human identity, who is not
// the person that submitted the event (under any of their tokens), not the
// identity the access is for, and not the owner of that identity (an owner
// deciding on their own agent's access is deciding for themselves). On
// approval the access is reviewed afresh: a step whose entitlement the
// identity's policy no longer grants, or whose identity is no longer
// active, is superseded instead of applied. A refusal changes nothing but
// the audit trail, which records it (RecordRefusal).
func (e *Engine) Decide(ctx context.Context, p Principal, caseID string, approve bool, comment string) (*cases.Case, error) {
	c, err := e.decide(ctx, p, caseID, approve, comment)
	if identity.ErrorCode(err) == identity.Forbidden {
		decision := DecisionDeny
		if approve {
			decision = DecisionApprove
		}
		return nil, e.RecordRefusal(ctx, p, decision, caseID, err)
	}
	return c, err
}

func (e *Engine) decide(ctx context.Context, p Principal, caseID string, approve bool, comment string) (*cases.Case, error) {
	if !Allowed(p.Role, PermDecide) {
		return nil, identity.Errorf(identity.Forbidden, "role %s cannot approve or deny", p.Role)
	}
	if p.IdentityID == "" {
		return nil, identity.Errorf(identity.Forbidden, "decisions are made by people: this token is not bound to a person. Make one with: jml token create --role approver --identity SOURCE/EXTERNAL_ID")
	}
	var out *cases.Case
	var moved cases.Status
	err := e.store.Update(ctx, func(tx store.Tx) error {
		c, id, err := lockedCase(ctx, tx, caseID)
		if err != nil {
			return err
		}
		if err := e.mayDecide(ctx, tx, p, c, id); err != nil {
			return err
		}
		var awaiting []int
		for i, s := range c.Steps {
			if s.Status == cases.StepAwaitingApproval {
				awaiting = append(awaiting, i)
			}
		}
		if len(awaiting) == 0 {
			return identity.Errorf(identity.Conflict, "case %s has no step awaiting approval (status %s)", caseID, c.Status)
		}
		now := e.Now().UTC()
		still := map[string]bool{}
		if id.State == identity.Active {
			for _, g := range e.Policy().Desired(id).Grants {
				still[g.Entitlement] = true
			}
		}
		decided := []string{}
		pending := 0
		for _, i := range awaiting {
			s := &c.Steps[i]
			// The person who decided, as the audit trail names them.
			s.DecidedBy, s.UpdatedAt = p.Actor(), now
			switch {
			case !approve:
				s.Status, s.Result = cases.StepDenied, "denied by "+p.describe()+withComment(comment)
			case !still[s.Entitlement]:
				s.Status, s.Result = cases.StepSuperseded, fmt.Sprintf("not applied: on review, %s is no longer granted to this %s identity", s.Entitlement, id.State)
			default:
				s.Status, s.Result = cases.StepPending, "approved by "+p.describe()+withComment(comment)
				pending++
			}
			if err := tx.UpdateStep(ctx, s); err != nil {
				return err
			}
			decided = append(decided, fmt.Sprintf("%d %s: %s", s.Seq, s.Step.String(), s.Status))
		}
		action := "case.denied"
		if approve {
			action = "case.approved"
		}
		if err := tx.AppendAudit(ctx, auditBy(now, p, action, c.IdentityID, c.ID, map[string]any{"steps": decided, "comment": comment})); err != nil {
			return err
		}
		if pending > 0 {
			if err := tx.Enqueue(ctx, ApplyCaseArgs{CaseID: c.ID}, time.Time{}); err != nil {
				return err
			}
		}
		if moved, err = e.settle(ctx, tx, c.ID, now); err != nil {
			return err
		}
		out, err = tx.GetCase(ctx, c.ID)
		return err
	})
	if err == nil {
		e.metrics.countSettled(moved)
	}
	return out, err
}

// Retry puts the failed steps of a case back to pending and runs the case
// again: for when an operator has fixed what made a step give up. Only a
// failed case can be retried.
func (e *Engine) Retry(ctx context.Context, p Principal, caseID string) (*cases.Case, error) {
	var out *cases.Case
	err := e.store.Update(ctx, func(tx store.Tx) error {
		c, id, err := lockedCase(ctx, tx, caseID)
		if err != nil {
			return err
		}
		if c.Status != cases.Failed {
			return identity.Errorf(identity.Conflict, "case %s is %s; only a failed case can be retried", caseID, c.Status)
		}
		now := e.Now().UTC()
		var retried []int
		for i := range c.Steps {
			s := &c.Steps[i]
			if s.Status == cases.StepFailed {
				if s.Action.Widening() && (id.State != identity.Active || id.UpdatedAt.After(c.CreatedAt)) {
					// A later event planned without it (a failed step is
					// not open): running it now would give access no
					// plan expects.
					s.Status, s.Result, s.UpdatedAt = cases.StepSuperseded, "not retried: a later event replaced this plan", now
					if err := tx.UpdateStep(ctx, s); err != nil {
						return err
					}
					continue
				}
				s.Status, s.UpdatedAt = cases.StepPending, now
				if err := tx.UpdateStep(ctx, s); err != nil {
					return err
				}
				retried = append(retried, s.Seq)
			}
		}
		if err := tx.Enqueue(ctx, ApplyCaseArgs{CaseID: c.ID}, time.Time{}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, auditBy(now, p, "case.retried", c.IdentityID, c.ID, map[string]any{"steps": retried})); err != nil {
			return err
		}
		if _, err := e.settle(ctx, tx, c.ID, now); err != nil {
			return err
		}
		out, err = tx.GetCase(ctx, c.ID)
		return err
	})
	return out, err
}

// mayDecide refuses a decision that is not a person's, or is on their own
// behalf (see Decide).
func (e *Engine) mayDecide(ctx context.Context, tx store.Tx, p Principal, c *cases.Case, subject *identity.Identity) error {
	me, err := tx.GetIdentity(ctx, p.IdentityID)
	if err != nil {
		return err
	}
	if me.Kind != identity.Human || me.State != identity.Active {
		return identity.Errorf(identity.Forbidden, "decisions are made by active people: this token is bound to %s, of kind %s, %s", me.ID, me.Kind, me.State)
	}
	if c.SubmittedBy == p.ID {
		return identity.Errorf(identity.Forbidden, "no self-approval: this token submitted the event of case %s", c.ID)
	}
	if c.SubmittedBy != "" {
		sub, err := tx.GetToken(ctx, c.SubmittedBy)
		if err != nil && !store.IsNotFound(err) {
			return err
		}
		if err == nil && sub.IdentityID == me.ID {
			return identity.Errorf(identity.Forbidden, "no self-approval: %s submitted the event of case %s (with token %s)", me.ID, c.ID, sub.ID)
		}
	}
	if subject.ID == me.ID {
		return identity.Errorf(identity.Forbidden, "no self-approval: the access of case %s is for your own identity", c.ID)
	}
	if subject.OwnerID == me.ID {
		return identity.Errorf(identity.Forbidden, "no self-approval: you own %s %s, so its access is decided by someone else", subject.Kind, subject.ID)
	}
	return nil
}

// withComment appends a decision's comment to its step result.
func withComment(c string) string {
	if c == "" {
		return ""
	}
	return ": " + c
}

// lockedCase reads a case and locks its identity, then reads the case
// again: a decision made under the identity's lock sees every step as the
// last accepted event left it (one that superseded a step meanwhile has
// committed), and no event is accepted until the decision commits.
func lockedCase(ctx context.Context, tx store.Tx, caseID string) (*cases.Case, *identity.Identity, error) {
	c, err := tx.GetCase(ctx, caseID)
	if err != nil {
		return nil, nil, err
	}
	id, err := tx.GetIdentity(ctx, c.IdentityID)
	if err != nil {
		return nil, nil, err
	}
	if c, err = tx.GetCase(ctx, caseID); err != nil {
		return nil, nil, err
	}
	return c, id, nil
}
