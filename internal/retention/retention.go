// Package retention is the participant in accepting an event that sets
// the timers of account retention: a leaver disables accounts at once, and
// a system whose policy block sets deleteAfter has the account deleted that
// long after the departure. The timer (DeleteAccountArgs, a River job
// enqueued in the leaver's transaction) opens a retention case when it
// fires, unless the identity changed since (a rehire); the engine runs it.
//
// It works on an accept.Change alone; it must not import the engine.
package retention

import (
	"context"
	"time"

	"github.com/jml-dev/jml/internal/accept"
	"github.com/jml-dev/jml/internal/identity"
)

// DeleteAccountArgs is the timer of a departed identity's account: when it
// fires, the account is deleted unless the identity changed since
// DepartedAt (rehired, say).
type DeleteAccountArgs struct {
	IdentityID string    `json:"identityId"`
	System     string    `json:"system"`
	DepartedAt time.Time `json:"departedAt"`
}

func (DeleteAccountArgs) Kind() string { return "jml.delete_account" }

// Participant sets a deletion timer for each account of an identity that
// leaves, in a system with deleteAfter.
type Participant struct{}

var _ accept.Participant = Participant{}

func (Participant) Name() string { return "retention" }

func (Participant) Accept(ctx context.Context, ch *accept.Change) error {
	if !ch.Leaving() {
		return nil
	}
	id := ch.After
	for _, a := range ch.Accounts {
		sys := ch.Policy.Systems[a.System]
		if sys == nil || sys.DeleteAfter <= 0 || a.Status == identity.AccountDeleted {
			continue
		}
		if err := ch.Tx.Enqueue(ctx, DeleteAccountArgs{IdentityID: id.ID, System: a.System, DepartedAt: id.UpdatedAt},
			id.UpdatedAt.Add(sys.DeleteAfter)); err != nil {
			return err
		}
	}
	return nil
}
