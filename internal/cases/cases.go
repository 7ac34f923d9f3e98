// Package cases is a case's home: one event's processing (Case), its plan
// steps with their progress (Step), their statuses, and the rule that
// derives a case's status from its steps. It is pure: no I/O, no clock.
// The store keeps cases; the engine opens and runs them.
package cases

import (
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
)

// Status is where a case is.
type Status string

const (
	Running          Status = "running"
	AwaitingApproval Status = "awaiting_approval"
	Completed        Status = "completed"
	// Failed needs attention: a step exhausted its attempts.
	Failed Status = "failed"
)

// Case is one event's processing.
type Case struct {
	ID          string             `json:"id"`
	EventID     string             `json:"eventId"`
	IdentityID  string             `json:"identityId"`
	Type        identity.EventType `json:"type"`
	Status      Status             `json:"status"`
	SubmittedBy string             `json:"submittedBy"`
	// Reason says why a case is not done: what it waits on, or what failed.
	Reason      string    `json:"reason,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	CompletedAt time.Time `json:"completedAt,omitzero"`
	Steps       []Step    `json:"steps"`
}

// Revocations counts the case's steps that take access away (revoke a
// grant or a credential, disable an account): what the mass-change guard
// adds up.
func (c *Case) Revocations() int {
	n := 0
	for _, s := range c.Steps {
		if s.Action.Revokes() {
			n++
		}
	}
	return n
}

// StepStatus is where a step is.
type StepStatus string

const (
	StepPending          StepStatus = "pending"
	StepAwaitingApproval StepStatus = "awaiting_approval"
	StepDone             StepStatus = "done"
	// StepPlanned is a step of a preview (jml plan): what would run; it
	// never is stored.
	StepPlanned StepStatus = "planned"
	StepFailed  StepStatus = "failed" // gave up after its attempts
	StepDenied  StepStatus = "denied"
	// StepSuperseded is a gated step a later event of the same identity
	// replaced before it was approved.
	StepSuperseded StepStatus = "superseded"
)

// Final reports whether a step in status s will not change again.
func (s StepStatus) Final() bool {
	return s == StepDone || s == StepFailed || s == StepDenied || s == StepSuperseded
}

// Step is one plan step as stored with its progress.
type Step struct {
	CaseID string `json:"-"`
	Seq    int    `json:"seq"`
	plan.Step
	Status    StepStatus `json:"status"`
	Attempts  int        `json:"attempts"`
	LastError string     `json:"lastError,omitempty"`
	Result    string     `json:"result,omitempty"`
	DecidedBy string     `json:"decidedBy,omitempty"`
	UpdatedAt time.Time  `json:"updatedAt"`
}

// Derive is a case's status from its steps, with the reason a case that
// is not completed gives: completed only when every step is final and
// none failed; failed when one did; running while one is pending (with
// what it waits on); otherwise awaiting approval.
func Derive(steps []Step) (Status, string) {
	var pending, awaiting, failed int
	var firstFail, waiting string
	for _, s := range steps {
		switch s.Status {
		case StepPending:
			pending++
			if s.LastError != "" && waiting == "" {
				waiting = fmt.Sprintf("waiting on %s: %s (attempt %d)", s.System, s.LastError, s.Attempts)
			}
		case StepAwaitingApproval:
			awaiting++
		case StepFailed:
			failed++
			if firstFail == "" {
				firstFail = fmt.Sprintf("step %d (%s %s) failed: %s", s.Seq, s.Action, s.System, s.LastError)
			}
		}
	}
	switch {
	case failed > 0:
		return Failed, firstFail
	case pending > 0:
		return Running, waiting
	case awaiting > 0:
		return AwaitingApproval, fmt.Sprintf("%d step(s) await approval", awaiting)
	}
	return Completed, ""
}

// Summary is the plan as the audit trail keeps it: each step with its
// status and, for steps already applied, the result.
func Summary(steps []Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = fmt.Sprintf("%d %s [%s]", s.Seq, s.Step.String(), s.Status)
		if s.Result != "" {
			out[i] += " " + s.Result
		}
	}
	return out
}
