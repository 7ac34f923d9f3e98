package engine

// Planning, the first participant in accepting an event: it supersedes
// what earlier cases of the identity have not applied, and plans the new
// case from recorded access and those possibly applied steps.

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/jml-dev/jml/internal/accept"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/store"
)

// planning gives the case its steps (plan.Make): pending, or awaiting
// approval where the policy gates a widening.
type planning struct{ e *Engine }

func (planning) Name() string { return "planning" }

func (pl planning) Accept(ctx context.Context, ch *accept.Change) error {
	e, after := pl.e, ch.After
	// A newer event replaces every step earlier cases have not applied
	// (see supersede); what was due to run may have run, and the plan
	// treats what it touched as unsettled (plan.Input.Possible).
	var superseded []string
	var possible []plan.Step
	if ch.Before != nil { // a new identity has no earlier cases
		var err error
		if superseded, possible, err = e.supersede(ctx, ch.Tx, after.ID, ch.Now, &ch.Completed); err != nil {
			return err
		}
	}
	steps := plan.Make(plan.Input{Event: ch.Type, Before: ch.Before, After: after, Policy: ch.Policy, Desired: ch.Policy.Desired(after),
		Grants: ch.Grants, Credentials: ch.Credentials, Accounts: ch.Accounts, Possible: possible, Resets: e.resets(ch.Accounts), Now: ch.Now})
	if ch.Type == identity.Joiner {
		if err := e.checkNames(after, steps); err != nil {
			return err
		}
	}
	if len(superseded) > 0 {
		ch.Audit("steps.superseded", after.ID, ch.Case.ID, map[string]any{"cases": superseded})
	}
	for i, s := range steps {
		st := cases.Step{Seq: i + 1, Step: s, Status: cases.StepPending, UpdatedAt: ch.Now}
		if s.NeedsApproval {
			st.Status = cases.StepAwaitingApproval
		}
		ch.Case.Steps = append(ch.Case.Steps, st)
	}
	return nil
}

// vaultSteps applies the built-in vault's steps in the accepting
// transaction: they are jml's own writes, applied here exactly once. Only
// steps that call out to other systems wait for a River job (unless
// Config.DeferBuiltin sends these there too). It runs after offboarding,
// whose revocations settle some of the plan's steps.
type vaultSteps struct{ e *Engine }

func (vaultSteps) Name() string { return "built-in vault" }

func (v vaultSteps) Accept(ctx context.Context, ch *accept.Change) error {
	if v.e.deferBuiltin {
		return nil
	}
	_, err := v.e.applyTransactional(ctx, ch.Tx, ch.Case, ch.After, ch.Now, false, ch.Before == nil)
	return err
}

// resets returns the systems of accounts whose connector's disable takes
// access away (connector.DisableResetter), nil when there are none.
func (e *Engine) resets(accounts []identity.Account) map[string]bool {
	var out map[string]bool
	for _, a := range accounts {
		if r, ok := e.conn(a.System).(connector.DisableResetter); ok && r.DisableRemovesAccess() {
			if out == nil {
				out = map[string]bool{}
			}
			out[a.System] = true
		}
	}
	return out
}

// checkNames refuses a joiner whose plan would create an account under a
// name one of its systems cannot hold: the event is invalid for that
// system, and saying so now beats a step that can never succeed. Other
// events are not refused for it (a mover's narrowing must apply); such a
// step fails at once, its error being permanent.
func (e *Engine) checkNames(id *identity.Identity, steps []plan.Step) error {
	for _, s := range steps {
		if s.Action != plan.EnsureAccount {
			continue
		}
		nc, ok := e.conn(s.System).(connector.NameChecker)
		if !ok {
			continue
		}
		if err := nc.CheckName(id.ExternalID); err != nil {
			msg := identity.ErrorMessage(err)
			var ie *identity.Error
			if errors.As(err, &ie) {
				msg = ie.Message
			}
			return identity.FieldError("externalId", "system %s cannot hold account %q: %s", s.System, id.ExternalID, msg)
		}
	}
	return nil
}

// supersede retires every step earlier cases of the identity have not
// applied yet (pending or awaiting approval): the new plan is made from
// recorded access and these steps, and replaces them. An approval would
// be for access computed from stale facts, a grant still queued must not
// land after a leaver, and a revoke still queued must not land after a
// mover that keeps the access.
//
// It returns the superseded cases and the superseded steps that were
// pending: their case may be running them right now (the fast path starts
// at commit) or may have called them before a crash, so they are possibly
// applied, and the caller's plan accounts for them (plan.Input.Possible).
// A step awaiting approval was never called. Runs of one identity's steps
// in one system never overlap (runSystem), so the new plan's calls there
// come after any such call has returned.
func (e *Engine) supersede(ctx context.Context, tx store.Tx, identityID string, now time.Time, completed *int) ([]string, []plan.Step, error) {
	steps, err := tx.ListOpenSteps(ctx, identityID)
	if err != nil || len(steps) == 0 {
		return nil, nil, err
	}
	touched := map[string]bool{}
	var possible []plan.Step
	for i := range steps {
		s := &steps[i]
		s.Result = "a later event replaced this plan"
		if s.Status == cases.StepPending {
			possible = append(possible, s.Step)
			s.Result += "; it may have been applied, and that plan undoes it"
		}
		s.Status, s.UpdatedAt = cases.StepSuperseded, now
		if err := tx.UpdateStep(ctx, s); err != nil {
			return nil, nil, err
		}
		touched[s.CaseID] = true
	}
	for id := range touched {
		moved, err := e.settle(ctx, tx, id, now)
		if err != nil {
			return nil, nil, err
		}
		if moved == cases.Completed {
			*completed++
		}
	}
	return slices.Sorted(maps.Keys(touched)), possible, nil
}
