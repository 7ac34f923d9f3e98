package engine

// A case's status and how it is settled: the rule that derives a case's
// status from its steps, and the plan as the audit trail keeps it.

import (
	"context"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/store"
)

// settle recomputes a case's status from its steps and stores it. It
// returns the status the case moved to, or "" when its status did not
// change, for the caller to count once the transaction commits.
func (e *Engine) settle(ctx context.Context, tx store.Tx, caseID string, now time.Time) (cases.Status, error) {
	c, err := tx.GetCase(ctx, caseID)
	if err != nil {
		return "", err
	}
	return e.settleCase(ctx, tx, c, now)
}

// settleCase is settle for a case already read in tx, its steps as
// written.
func (e *Engine) settleCase(ctx context.Context, tx store.Tx, c *cases.Case, now time.Time) (cases.Status, error) {
	status, reason := cases.Derive(c.Steps)
	if status == c.Status && reason == c.Reason {
		return "", nil
	}
	moved := cases.Status("")
	if status != c.Status {
		moved = status
	}
	c.Status, c.Reason, c.UpdatedAt = status, reason, now
	if status == cases.Completed {
		c.CompletedAt = now
	}
	return moved, tx.UpdateCase(ctx, c)
}

// countSettled counts a committed change of a case's status.
func (m *Metrics) countSettled(moved cases.Status) {
	switch moved {
	case cases.Completed:
		m.addSettled(1, 0)
	case cases.Failed:
		m.addSettled(0, 1)
	}
}
