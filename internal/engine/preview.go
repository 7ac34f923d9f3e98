package engine

import (
	"context"
	"errors"

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
func (e *Engine) Preview(ctx context.Context, p Principal, ev identity.Event) (*Result, *store.Case, error) {
	if err := ev.Validate(); err != nil {
		return nil, nil, err
	}
	var res *Result
	var c *store.Case
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
		c.ID, c.EventID, c.IdentityID = "", "", res.IdentityID
		for i := range c.Steps {
			s := &c.Steps[i]
			if s.Action == plan.IssueCredential {
				s.CredentialID = ""
			}
			if s.Status != store.StepAwaitingApproval {
				s.Status = store.StepPlanned
			}
			s.Result, s.Attempts, s.LastError = "", 0, ""
		}
	}
	return res, c, nil
}
