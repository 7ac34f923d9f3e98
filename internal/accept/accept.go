// Package accept is the contract between the engine and the participants
// in accepting an event. Accepting an event is one transaction: the engine
// moves the identity's state, opens the case, and then calls an ordered
// list of participants, each of which may add to the case's steps, write
// its own rows through the transaction and add audit records. The engine
// stores the case, enqueues its job and appends the records after the last
// participant.
//
// A participant sees only a Change: it needs no Engine, so it can live in
// a package of its own (findings, retention) and be tested against a store
// transaction alone. This package imports only the domain and the store's
// contract; it must not import the engine or any participant.
package accept

import (
	"context"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
)

// Participant takes part in accepting an event.
type Participant interface {
	// Name says what the participant is for, in errors and logs.
	Name() string
	// Accept does the participant's part of ch inside ch.Tx. An error
	// rolls the whole acceptance back: nothing of the event is kept.
	Accept(ctx context.Context, ch *Change) error
}

// Change is one accepted event's change to one identity, as participants
// see and extend it.
type Change struct {
	Tx     store.Tx
	Policy *policy.Policy
	// Now is the acceptance time, the time of every record it writes.
	Now time.Time
	// Actor names who caused the change as the audit trail does (the
	// identity a token is bound to, an unbound token's ID, "cli:USER");
	// ActorToken is the API token used, if any.
	Actor, ActorToken string
	// EventID and Type are the event's.
	EventID string
	Type    identity.EventType
	// Before is the identity before the event (nil: it is new), After as
	// the event leaves it, its new state included.
	Before, After *identity.Identity
	// What the identity held before the event; empty for a new identity.
	Grants      []identity.Grant
	Credentials []identity.Credential
	Accounts    []identity.Account
	// Case is the case the event opens. The planning participant gives it
	// its steps; later ones may settle steps (a credential revoked in this
	// transaction) or apply them (the built-in vault's).
	Case *cases.Case
	// NewID makes an ID under prefix from the engine's clock and
	// randomness.
	NewID func(prefix string) string

	// Records are the audit records the participants add, appended in
	// order after the event's own.
	Records []audit.Record
	// Counts of what happened, for metrics once the transaction commits.
	Revoked, Findings, Completed int
}

// System is the actor of what jml does by itself.
const System = "jml"

// Audit adds a record of what the change's actor did.
func (ch *Change) Audit(action, identityID, caseID string, data map[string]any) {
	ch.Records = append(ch.Records, audit.By(ch.Now, ch.Actor, ch.ActorToken, action, identityID, caseID, data))
}

// Leaving reports whether the change makes the identity departed.
func (ch *Change) Leaving() bool { return ch.After.State == identity.Departed }
