package engine

// A case's status and how it is settled: the rule that derives a case's
// status from its steps, and the plan as the audit trail keeps it.

import (
	"context"
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/store"
)

// settle recomputes a case's status from its steps and stores it. It
// returns the status the case moved to, or "" when its status did not
// change, for the caller to count once the transaction commits.
func (e *Engine) settle(ctx context.Context, tx store.Tx, caseID string, now time.Time) (store.CaseStatus, error) {
	c, err := tx.GetCase(ctx, caseID)
	if err != nil {
		return "", err
	}
	return e.settleCase(ctx, tx, c, now)
}

// settleCase is settle for a case already read in tx, its steps as
// written.
func (e *Engine) settleCase(ctx context.Context, tx store.Tx, c *store.Case, now time.Time) (store.CaseStatus, error) {
	status, reason := caseStatus(c.Steps)
	if status == c.Status && reason == c.Reason {
		return "", nil
	}
	moved := store.CaseStatus("")
	if status != c.Status {
		moved = status
	}
	c.Status, c.Reason, c.UpdatedAt = status, reason, now
	if status == store.CaseCompleted {
		c.CompletedAt = now
	}
	return moved, tx.UpdateCase(ctx, c)
}

// countSettled counts a committed change of a case's status.
func (m *Metrics) countSettled(moved store.CaseStatus) {
	switch moved {
	case store.CaseCompleted:
		m.addSettled(1, 0)
	case store.CaseFailed:
		m.addSettled(0, 1)
	}
}

// caseStatus derives a case's status from its steps: completed only when
// every step is final and none failed.
func caseStatus(steps []store.Step) (store.CaseStatus, string) {
	var pending, awaiting, failed int
	var firstFail, waiting string
	for _, s := range steps {
		switch s.Status {
		case store.StepPending:
			pending++
			if s.LastError != "" && waiting == "" {
				waiting = fmt.Sprintf("waiting on %s: %s (attempt %d)", s.System, s.LastError, s.Attempts)
			}
		case store.StepAwaitingApproval:
			awaiting++
		case store.StepFailed:
			failed++
			if firstFail == "" {
				firstFail = fmt.Sprintf("step %d (%s %s) failed: %s", s.Seq, s.Action, s.System, s.LastError)
			}
		}
	}
	switch {
	case failed > 0:
		return store.CaseFailed, firstFail
	case pending > 0:
		return store.CaseRunning, waiting
	case awaiting > 0:
		return store.CaseAwaitingApproval, fmt.Sprintf("%d step(s) await approval", awaiting)
	}
	return store.CaseCompleted, ""
}

// planSummary is the plan as the audit record keeps it: each step with its
// status and, for steps applied in the accepting transaction, the result.
func planSummary(steps []store.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = fmt.Sprintf("%d %s [%s]", s.Seq, s.Step.String(), s.Status)
		if s.Result != "" {
			out[i] += " " + s.Result
		}
	}
	return out
}
