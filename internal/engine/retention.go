package engine

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jobs"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/retention"
	"github.com/jml-dev/jml/internal/store"
)

// Account retention's job: the retention participant (package retention)
// sets a timer per account of a leaver in a system with deleteAfter; when
// it fires, the job below opens a retention case of one delete_account
// step, unless the identity was rehired (or changed in any way) meanwhile.
// The account's row stays, with status deleted, next to the audit trail of
// both cases.

// runRetention is the jml.delete_account job: it opens the retention case
// and runs it at once.
func (e *Engine) runRetention(ctx context.Context, a DeleteAccountArgs) error {
	caseID, err := e.DeleteAccount(ctx, a)
	if err != nil || caseID == "" {
		return err
	}
	unlock := e.caseLocks.hold(caseID)
	defer unlock()
	// Failures are left to the case's own job, already scheduled.
	if err := e.RunCase(ctx, caseID, false); err != nil {
		e.log.Warn("retention case left to its job", "case", caseID, "error", err)
	}
	return nil
}

// DeleteAccount opens the retention case a DeleteAccountArgs timer calls
// for and returns its ID; "" when there is nothing to delete: the identity
// is no longer departed, changed after a.DepartedAt, or has no account in
// the system that is not deleted already.
func (e *Engine) DeleteAccount(ctx context.Context, a DeleteAccountArgs) (string, error) {
	var caseID string
	err := e.store.Update(ctx, func(tx store.Tx) error {
		caseID = ""
		id, err := tx.GetIdentity(ctx, a.IdentityID)
		if store.IsNotFound(err) {
			e.log.Debug("account deletion timer: nothing to do", "identity", a.IdentityID, "system", a.System, "why", "the identity no longer exists")
			return nil
		}
		if err != nil {
			return err
		}
		now := e.Now().UTC()
		if id.State != identity.Departed || id.UpdatedAt.After(a.DepartedAt) {
			why := "the identity is " + string(id.State)
			if id.State == identity.Departed {
				why = "the identity changed after this departure"
			}
			return tx.AppendAudit(ctx, audit.New(now, System.ID, "account.deletion_skipped", id.ID, "", map[string]any{"system": a.System, "why": why}))
		}
		accounts, err := tx.ListAccounts(ctx, id.ID)
		if err != nil {
			return err
		}
		held := false
		for _, acc := range accounts {
			held = held || (acc.System == a.System && acc.Status != identity.AccountDeleted)
		}
		if !held {
			e.log.Debug("account deletion timer: nothing to do", "identity", id.ID, "system", a.System, "why", "no account there that is not deleted already")
			return nil
		}
		sys := e.Policy().Systems[a.System]
		reason := "retention: departed " + a.DepartedAt.UTC().Format(time.RFC3339)
		if sys != nil {
			reason += ", deleteAfter " + sys.DeleteAfter.String()
		}
		c := &cases.Case{ID: e.newID("case_"), IdentityID: id.ID, Type: CaseRetention, Status: cases.Running, SubmittedBy: System.ID, CreatedAt: now, UpdatedAt: now,
			Steps: []cases.Step{{Seq: 1, Step: plan.Step{Action: plan.DeleteAccount, System: a.System, Reason: reason}, Status: cases.StepPending, UpdatedAt: now}}}
		if err := tx.InsertCase(ctx, c); err != nil {
			return err
		}
		if err := tx.Enqueue(ctx, ApplyCaseArgs{CaseID: c.ID}, now.Add(time.Minute)); err != nil {
			return err
		}
		caseID = c.ID
		return tx.AppendAudit(ctx, audit.New(now, System.ID, "account.deletion_due", id.ID, c.ID, map[string]any{"system": a.System, "departedAt": a.DepartedAt}))
	})
	return caseID, err
}

// DeleteAccountArgs is the timer of a departed identity's account, set by
// the retention participant.
type DeleteAccountArgs = retention.DeleteAccountArgs

// registerRetention declares the timer of a departed identity's account.
func (e *Engine) registerRetention(r *jobs.Registry) {
	jobs.AddFunc(r, "retention", "deletes a departed identity's account after its system's deleteAfter, unless it changed since", func(ctx context.Context, job *river.Job[DeleteAccountArgs]) error {
		return e.runRetention(ctx, job.Args)
	})
}
