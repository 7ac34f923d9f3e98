package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/store"
)

var errPreview = errors.New("preview: roll back")

// Preview shows what Submit would do with ev, without doing it: it runs the
// same code in a transaction that it always rolls back, so the preview and
// the real thing cannot drift apart. The case it returns was never stored,
// and shows no ID the preview made: no event, case or new identity ID, no
// ID of a credential it would issue, and every step is planned (or awaits
// approval). A duplicate's IDs are the stored ones.
// previewStatus is a previewed case's status: planned, not run.
const previewStatus cases.Status = "planned"

func (e *Engine) Preview(ctx context.Context, p Principal, ev identity.Event) (*Result, *cases.Case, error) {
	if err := ev.Validate(); err != nil {
		return nil, nil, err
	}
	var res *Result
	var c *cases.Case
	existing := false
	err := e.store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.GetIdentityByExternalID(ctx, ev.Source, ev.ExternalID); err == nil {
			existing = true
		}
		var err error
		res, c, err = e.accept(ctx, tx, p, ev, &acceptCounters{})
		if err != nil {
			return err
		}
		if res.CaseID != "" {
			if c, err = tx.GetCase(ctx, res.CaseID); err != nil {
				return err
			}
		}
		return errPreview
	})
	if !errors.Is(err, errPreview) {
		return nil, nil, err
	}
	if res.Duplicate {
		return res, c, nil
	}
	res.EventID, res.CaseID, res.Status, res.CaseStatus = "", "", "planned", ""
	if !existing {
		res.IdentityID = ""
	}
	if c != nil {
		// The case is a plan: nothing ran, so it is neither completed nor
		// running, and it names only what exists.
		caseID := c.ID
		c.ID, c.EventID, c.IdentityID = "", "", res.IdentityID
		c.Status, c.Reason, c.CompletedAt = previewStatus, "", time.Time{}
		for i := range c.Steps {
			s := &c.Steps[i]
			switch {
			case s.Action == plan.IssueCredential:
				s.CredentialID = "" // minted by the preview
			case s.Action == plan.RotateCredential && s.CredentialID == credentialID(caseID, s.Seq):
				// Applied in the preview (the built-in vault): the step
				// names the credential it issued; show the one it
				// replaces, which its result names (record).
				_, s.CredentialID, _ = strings.Cut(s.Result, ", revoked ")
			}
			if s.Status != cases.StepAwaitingApproval {
				s.Status = cases.StepPlanned
			}
			s.Result, s.Attempts, s.LastError = "", 0, ""
		}
	}
	return res, c, nil
}
