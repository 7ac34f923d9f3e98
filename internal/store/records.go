package store

// The records the store keeps besides cases: events, held batches, API
// tokens, sealed credentials, and the filters of its lists.

import (
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
)

// EventStatus is where an accepted event is.
type EventStatus string

const (
	EventApplied   EventStatus = "applied"   // its case was created
	EventScheduled EventStatus = "scheduled" // waiting for its effective time
	EventRejected  EventStatus = "rejected"  // at its effective time, it no longer applied
	// EventHeld is an event the mass-change guard put in its source's
	// held batch instead of accepting it.
	EventHeld EventStatus = "held"
	// EventSuperseded is a scheduled event that a later event of its
	// source about the same identity replaced or cancelled before its
	// time (a new end date, a cancelled hire); Error names the later
	// event.
	EventSuperseded EventStatus = "superseded"
)

// Event is a stored lifecycle event.
type Event struct {
	ID          string         `json:"id"`
	Event       identity.Event `json:"event"`
	IdentityID  string         `json:"identityId,omitempty"`
	Principal   string         `json:"principal"`
	Status      EventStatus    `json:"status"`
	CaseID      string         `json:"caseId,omitempty"`
	Error       string         `json:"error,omitempty"`
	ReceivedAt  time.Time      `json:"receivedAt"`
	EffectiveAt time.Time      `json:"effectiveAt"`
}

// HoldStatus is where a held batch is.
type HoldStatus string

const (
	HoldHeld      HoldStatus = "held"
	HoldReleased  HoldStatus = "released"
	HoldDiscarded HoldStatus = "discarded"
)

// Hold is a batch of a source's events that the mass-change guard held
// before anything was applied.
type Hold struct {
	ID     string           `json:"id"`
	Source string           `json:"source"`
	Reason string           `json:"reason"`
	Events []identity.Event `json:"events"`
	// Cancel are source event IDs of scheduled events the import cancels
	// on release (Import.Cancel).
	Cancel    []string   `json:"cancel,omitempty"`
	Snapshot  []byte     `json:"-"` // the source's snapshot to store on release
	Status    HoldStatus `json:"status"`
	CreatedBy string     `json:"createdBy"`
	CreatedAt time.Time  `json:"createdAt"`
	DecidedBy string     `json:"decidedBy,omitempty"`
	DecidedAt time.Time  `json:"decidedAt,omitzero"`
}

// StepCount is a number of steps of one system and action.
type StepCount struct {
	System string
	Action string
	Count  int
}

// Token is an API token for jml itself; only its hash is stored.
type Token struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
	// Source binds a source token to the one source whose events it
	// submits (empty for other roles).
	Source string `json:"source,omitempty"`
	// IdentityID binds the token to an identity: it authenticates only
	// while that identity is active.
	IdentityID string    `json:"identityId,omitempty"`
	Hash       []byte    `json:"-"`
	CreatedAt  time.Time `json:"createdAt"`
	RevokedAt  time.Time `json:"revokedAt,omitzero"`
	// IdentityState is the bound identity's state when the token was read
	// (empty for an unbound token, or a bound identity that is gone); the
	// store reads it in the same query as the token.
	IdentityState identity.State `json:"identityState,omitempty"`
}

// IdentityFilter selects identities; every field is optional and matched
// exactly. After is the keyset cursor: the last ID of the previous page.
type IdentityFilter struct {
	Kind   identity.Kind
	State  identity.State
	Source string
	Owner  string
	// Entitlement keeps the identities that hold a grant of it.
	Entitlement string
	// System keeps the identities that jml records as having access in
	// it: an account there that is not deleted (active, disabled or being
	// created), a grant of one of its entitlements, or an active
	// credential.
	System string
	// VisibleTo, when set, keeps the identity of that ID and the
	// identities it owns or manages: what a member token may read.
	VisibleTo string
	After     string
	Limit     int
}

// CaseFilter selects cases; every field is optional. Cases come newest
// first, by ID (a case's ID is a ULID taken when it was opened), and After
// is the keyset cursor: the last ID of the previous page, so the page
// holds the cases older than it.
type CaseFilter struct {
	Status     cases.Status
	Type       identity.EventType
	IdentityID string
	// Since keeps the cases opened at or after it.
	Since time.Time
	// VisibleTo, when set, keeps the cases of the identity of that ID and
	// of the identities it owns or manages: what a member token may read.
	VisibleTo string
	After     string
	Limit     int
}

// FindingFilter selects findings.
type FindingFilter struct {
	Kind       string
	IdentityID string
	// OpenOnly keeps unresolved findings (open or acknowledged); State
	// keeps those in one state.
	OpenOnly bool
	State    identity.FindingState
	Limit    int
	// Paged lists in ID order from the first ID after After ("": from
	// the first), so that a caller reads every finding, Limit at a time.
	Paged bool
	After string
}

// StoredCredential is a credential with what the store keeps of its secret.
type StoredCredential struct {
	identity.Credential
	Hash   []byte // SHA-256 of the secret (API keys); empty otherwise
	Sealed []byte // the secret sealed by the vault until revealed; empty after
}

// ExternalRef names an identity by its source and its ID there.
type ExternalRef struct{ Source, ExternalID string }

// EventRef names an event by its source and the source's event ID.
type EventRef struct{ Source, ID string }
