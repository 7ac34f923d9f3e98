package store

// Cases and their steps as stored.

import (
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
)

// CaseStatus is where a case is.
type CaseStatus string

const (
	CaseRunning          CaseStatus = "running"
	CaseAwaitingApproval CaseStatus = "awaiting_approval"
	CaseCompleted        CaseStatus = "completed"
	// CaseFailed needs attention: a step exhausted its attempts.
	CaseFailed CaseStatus = "failed"
)

// Case is one event's processing.
type Case struct {
	ID          string             `json:"id"`
	EventID     string             `json:"eventId"`
	IdentityID  string             `json:"identityId"`
	Type        identity.EventType `json:"type"`
	Status      CaseStatus         `json:"status"`
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
