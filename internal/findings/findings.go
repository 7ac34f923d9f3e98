// Package findings is the participant in accepting an event that opens
// and resolves findings whose condition the event starts or ends: an NHI
// whose owner stops being active gets owner_not_active, and each kind is
// resolved, with its cause, by the change that ends its condition.
//
// It works on an accept.Change alone; it must not import the engine.
package findings

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/accept"
	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jobs"
	"github.com/jml-dev/jml/internal/store"
)

// Participant opens and resolves the findings an accepted event starts or
// ends.
type Participant struct{}

var _ accept.Participant = Participant{}

func (Participant) Name() string { return "findings" }

// Accept opens owner_not_active for every NHI the identity owns when it
// leaves or is suspended, then resolves what the change ends (Resolve).
func (Participant) Accept(ctx context.Context, ch *accept.Change) error {
	if ch.After.State == identity.Departed || ch.After.State == identity.Suspended {
		if err := ownerNotActive(ctx, ch); err != nil {
			return err
		}
	}
	return resolve(ctx, ch)
}

// ownerNotActive records "owner not active" for every NHI the changed
// identity owns that has not left.
func ownerNotActive(ctx context.Context, ch *accept.Change) error {
	owner := ch.After
	owned, err := ch.Tx.ListIdentities(ctx, store.IdentityFilter{Owner: owner.ID})
	if err != nil {
		return err
	}
	for _, nhi := range owned {
		if nhi.State == identity.Departed {
			continue
		}
		f := &identity.Finding{ID: ch.NewID("fnd_"), Kind: identity.FindingOwnerNotActive, IdentityID: nhi.ID, CreatedAt: ch.Now,
			Message: fmt.Sprintf("owner %s (%s/%s) is %s; %s %s needs a new owner", owner.ID, owner.Source, owner.ExternalID, owner.State, nhi.Kind, nhi.ExternalID)}
		recs, err := Open(ctx, ch.Tx, f, map[string]any{"owner": owner.ID})
		if err != nil {
			return err
		}
		ch.Findings += len(recs)
		ch.Records = append(ch.Records, recs...)
	}
	return nil
}

// resolve resolves the findings whose condition the identity's change
// from Before (nil: new) to After ended:
//   - an NHI's owner_not_active when it leaves or gets an owner who is
//     active (an event that keeps its owner changes nothing about it);
//   - owner_not_active of the NHIs a person owns when the person is active
//     again (resume, rehire);
//   - a departed identity's account findings (nothing wants its accounts);
//   - attributes_invalid when the identity leaves or its attributes fit
//     the policy after the event (a mover set them anew).
func resolve(ctx context.Context, ch *accept.Change) error {
	before, after := ch.Before, ch.After
	done := func(idn, cause string, kinds ...string) error {
		fs, err := ch.Tx.ResolveFindings(ctx, idn, kinds, "", ch.Now, cause)
		for _, f := range fs {
			ch.Audit("finding.resolved", f.IdentityID, "", map[string]any{"finding": f.ID, "kind": f.Kind, "cause": cause})
		}
		return err
	}
	if after.Kind.NonHuman() {
		switch {
		case after.State == identity.Departed:
			if err := done(after.ID, "the "+string(after.Kind)+" left", identity.FindingOwnerNotActive); err != nil {
				return err
			}
		case before != nil && after.OwnerID != "" && after.OwnerID != before.OwnerID:
			owner, err := ch.Tx.GetIdentity(ctx, after.OwnerID)
			if err != nil {
				return err
			}
			if owner.State == identity.Active {
				if err := done(after.ID, fmt.Sprintf("its owner %s (%s/%s) is active", owner.ID, owner.Source, owner.ExternalID), identity.FindingOwnerNotActive); err != nil {
					return err
				}
			}
		}
	}
	if after.State == identity.Active && before != nil && before.State != identity.Active {
		owned, err := ch.Tx.ListIdentities(ctx, store.IdentityFilter{Owner: after.ID})
		if err != nil {
			return err
		}
		for _, nhi := range owned {
			if err := done(nhi.ID, fmt.Sprintf("its owner %s (%s/%s) is active again", after.ID, after.Source, after.ExternalID), identity.FindingOwnerNotActive); err != nil {
				return err
			}
		}
	}
	if after.State == identity.Departed {
		return done(after.ID, "the identity left", identity.FindingAccountExistsUnmanaged, identity.FindingAccountAdopted, identity.FindingAttributesInvalid)
	}
	if pol := ch.Policy; before != nil && before.State != identity.Departed && pol.DeclaresAttributes() &&
		pol.CheckAttributes(before.Attributes) != nil && pol.CheckAttributes(after.Attributes) == nil {
		// Only an identity whose values did not fit can have an open
		// attributes_invalid finding (the engine's stored-attribute check
		// keeps it so), so the store is asked only then.
		return done(after.ID, "an event gave it attributes that fit the policy", identity.FindingAttributesInvalid)
	}
	return nil
}

// MaxAcknowledgement bounds how long an acknowledgement lasts.
const MaxAcknowledgement = 365 * 24 * time.Hour

// ReopenArgs is the timer that ends an acknowledgement.
type ReopenArgs struct {
	FindingID string    `json:"findingId"`
	Until     time.Time `json:"until"`
}

func (ReopenArgs) Kind() string { return "jml.reopen_finding" }

// Deps is what the findings' timer needs of the process that runs it.
type Deps struct {
	Store store.Store
	Now   func() time.Time
	Log   *slog.Logger
}

// Register declares the timer that ends a finding's acknowledgement.
func Register(r *jobs.Registry, d Deps) {
	jobs.AddFunc(r, "findings", "opens an acknowledged finding again when its acknowledgement ends, if still unresolved", func(ctx context.Context, job *river.Job[ReopenArgs]) error {
		return Reopen(ctx, d, job.Args)
	})
}

// Reopen ends an acknowledgement that is still the one the timer was set
// for, on a finding still unresolved; otherwise it says why at debug level.
func Reopen(ctx context.Context, d Deps, a ReopenArgs) error {
	return d.Store.Update(ctx, func(tx store.Tx) error {
		f, err := tx.GetFinding(ctx, a.FindingID)
		if store.IsNotFound(err) {
			d.Log.Debug("finding reopen timer: nothing to do", "finding", a.FindingID, "why", "the finding no longer exists")
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
			d.Log.Debug("finding reopen timer: nothing to do", "finding", a.FindingID, "why", "it is resolved, or acknowledged again until a later time")
			return nil
		}
		return tx.AppendAudit(ctx, audit.New(d.Now().UTC(), accept.System, "finding.reopened", f.IdentityID, "", map[string]any{
			"finding": f.ID, "kind": f.Kind, "reason": "the acknowledgement expired and the finding is not resolved"}))
	})
}

// Acknowledge records, in tx, that by has seen an unresolved finding, why
// it may stay (reason) and until when, and sets the timer that opens it
// again then; record makes the audit record of it (the caller's actor).
// A resolved finding is a Conflict. The caller checks the bounds.
func Acknowledge(ctx context.Context, tx store.Tx, id, by, reason string, now, until time.Time, record func(identityID string, data map[string]any) audit.Record) (*identity.Finding, error) {
	f, err := tx.GetFinding(ctx, id)
	if err != nil {
		return nil, err
	}
	if f.State == identity.FindingResolved {
		return nil, identity.Errorf(identity.Conflict, "finding %s was resolved at %s (%s); there is nothing to acknowledge", id, f.ResolvedAt.Format(time.RFC3339), f.Resolution)
	}
	if _, err := tx.AcknowledgeFinding(ctx, id, by, reason, now, until); err != nil {
		return nil, err
	}
	if err := tx.Enqueue(ctx, ReopenArgs{FindingID: id, Until: until}, until); err != nil {
		return nil, err
	}
	if err := tx.AppendAudit(ctx, record(f.IdentityID, map[string]any{"finding": id, "kind": f.Kind, "reason": reason, "until": until})); err != nil {
		return nil, err
	}
	return tx.GetFinding(ctx, id)
}

// Open inserts f in tx and returns the audit record of it, by jml, whose
// data is the finding's ID and kind and extra; none when a finding of its
// kind is open for the identity (and system) already.
func Open(ctx context.Context, tx store.Tx, f *identity.Finding, extra map[string]any) ([]audit.Record, error) {
	ok, err := tx.InsertFinding(ctx, f)
	if err != nil || !ok {
		return nil, err
	}
	data := map[string]any{"finding": f.ID, "kind": f.Kind}
	for k, v := range extra {
		data[k] = v
	}
	return []audit.Record{audit.New(f.CreatedAt, accept.System, "finding.created", f.IdentityID, "", data)}, nil
}

// Resolve resolves, in tx, the identity's unresolved findings of kinds (in
// system, when not "") with cause, and returns an audit record by jml of
// each, naming the system when one is given.
func Resolve(ctx context.Context, tx store.Tx, identityID string, kinds []string, system string, now time.Time, cause string) ([]audit.Record, error) {
	done, err := tx.ResolveFindings(ctx, identityID, kinds, system, now, cause)
	var recs []audit.Record
	for _, f := range done {
		data := map[string]any{"finding": f.ID, "kind": f.Kind, "cause": cause}
		if system != "" {
			data["system"] = system
		}
		recs = append(recs, audit.New(now, accept.System, "finding.resolved", f.IdentityID, "", data))
	}
	return recs, err
}

// OpenAccount records, in tx, a finding of kind about the identity's
// account in system, and returns its audit record; none if one is open
// already.
func OpenAccount(ctx context.Context, tx store.Tx, newID func(string) string, identityID, system, kind, msg string, now time.Time) ([]audit.Record, error) {
	f := &identity.Finding{ID: newID("fnd_"), Kind: kind, IdentityID: identityID, System: system, CreatedAt: now, Message: msg}
	return Open(ctx, tx, f, map[string]any{"system": system})
}

// ResolveAccount resolves, in tx, the identity's account_exists_unmanaged
// finding in system once jml holds the account there.
func ResolveAccount(ctx context.Context, tx store.Tx, identityID, system string, now time.Time) ([]audit.Record, error) {
	return Resolve(ctx, tx, identityID, []string{identity.FindingAccountExistsUnmanaged}, system, now, "jml now holds the account in "+system)
}
