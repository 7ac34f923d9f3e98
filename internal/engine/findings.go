package engine

import (
	"context"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jobs"
	"github.com/jml-dev/jml/internal/store"
)

// A finding is opened when jml sees a condition that needs a person (an
// NHI whose owner left, an account jml did not create), resolves by
// itself when the condition ends, and can be acknowledged by an admin for
// a while, after which it is open again if it still holds. Each change is
// audited.

// MaxAcknowledgement bounds how long an acknowledgement lasts.
const MaxAcknowledgement = 365 * 24 * time.Hour

// ReopenFindingArgs is the timer that ends an acknowledgement.
type ReopenFindingArgs struct {
	FindingID string    `json:"findingId"`
	Until     time.Time `json:"until"`
}

func (ReopenFindingArgs) Kind() string { return "jml.reopen_finding" }

// reopenFinding ends an acknowledgement that is still the one the timer
// was set for, on a finding still unresolved.
func (e *Engine) reopenFinding(ctx context.Context, a ReopenFindingArgs) error {
	return e.store.Update(ctx, func(tx store.Tx) error {
		f, err := tx.GetFinding(ctx, a.FindingID)
		if store.IsNotFound(err) {
			e.log.Debug("finding reopen timer: nothing to do", "finding", a.FindingID, "why", "the finding no longer exists")
			return nil
		}
		if err != nil {
			return err
		}
		ok, err := tx.ReopenFinding(ctx, a.FindingID, a.Until)
		if err != nil {
			return err
		}
		if !ok {
			e.log.Debug("finding reopen timer: nothing to do", "finding", a.FindingID, "why", "it is resolved, or acknowledged again until a later time")
			return nil
		}
		return tx.AppendAudit(ctx, audit.New(e.Now().UTC(), System.ID, "finding.reopened", f.IdentityID, "", map[string]any{
			"finding": f.ID, "kind": f.Kind, "reason": "the acknowledgement expired and the finding is not resolved"}))
	})
}

// AcknowledgeFinding records that an admin has seen an unresolved finding,
// why it may stay, and until when (at most MaxAcknowledgement from now);
// the finding is then acknowledged, and open again after until unless its
// condition ended first.
func (e *Engine) AcknowledgeFinding(ctx context.Context, p Principal, id, reason string, until time.Time) (*identity.Finding, error) {
	if !Allowed(p.Role, PermOperate) {
		return nil, e.RecordRefusal(ctx, p, DecisionAcknowledge, id, identity.Errorf(identity.Forbidden, "role %s may not acknowledge findings", p.Role))
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return nil, identity.FieldError("reason", "is required: say why the finding may stay")
	}
	if len(reason) > 1024 {
		return nil, identity.FieldError("reason", "is longer than 1024 bytes")
	}
	now := e.Now().UTC()
	switch {
	case until.IsZero():
		return nil, identity.FieldError("until", "is required: an acknowledgement ends")
	case !until.After(now):
		return nil, identity.FieldError("until", "%s is not in the future", until.Format(time.RFC3339))
	case until.Sub(now) > MaxAcknowledgement:
		return nil, identity.FieldError("until", "is more than a year away: an acknowledgement lasts at most %d days", int(MaxAcknowledgement/(24*time.Hour)))
	}
	until = until.UTC().Truncate(time.Microsecond)
	var out *identity.Finding
	err := e.store.Update(ctx, func(tx store.Tx) error {
		f, err := tx.GetFinding(ctx, id)
		if err != nil {
			return err
		}
		if f.State == identity.FindingResolved {
			return identity.Errorf(identity.Conflict, "finding %s was resolved at %s (%s); there is nothing to acknowledge", id, f.ResolvedAt.Format(time.RFC3339), f.Resolution)
		}
		if _, err := tx.AcknowledgeFinding(ctx, id, p.ID, reason, now, until); err != nil {
			return err
		}
		if err := tx.Enqueue(ctx, ReopenFindingArgs{FindingID: id, Until: until}, until); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, auditBy(now, p, "finding.acknowledged", f.IdentityID, "", map[string]any{
			"finding": id, "kind": f.Kind, "reason": reason, "until": until})); err != nil {
			return err
		}
		out, err = tx.GetFinding(ctx, id)
		return err
	})
	return out, err
}

// resolveAccountFinding resolves the identity's account_exists_unmanaged
// finding in system once jml holds the account there.
func (e *Engine) resolveAccountFinding(ctx context.Context, tx store.Tx, identityID, system string, now time.Time) ([]audit.Record, error) {
	cause := "jml now holds the account in " + system
	done, err := tx.ResolveFindings(ctx, identityID, []string{identity.FindingAccountExistsUnmanaged}, system, now, cause)
	var recs []audit.Record
	for _, f := range done {
		recs = append(recs, audit.New(now, System.ID, "finding.resolved", f.IdentityID, "", map[string]any{"finding": f.ID, "kind": f.Kind, "system": system, "cause": cause}))
	}
	return recs, err
}

// registerFindings declares the timer that ends a finding's
// acknowledgement.
func (e *Engine) registerFindings(r *jobs.Registry) {
	jobs.AddFunc(r, "engine/findings.go", "opens an acknowledged finding again when its acknowledgement ends, if still unresolved", func(ctx context.Context, job *river.Job[ReopenFindingArgs]) error {
		return e.reopenFinding(ctx, job.Args)
	})
}
