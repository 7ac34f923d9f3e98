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

	"github.com/jml-dev/jml/internal/accept"
	"github.com/jml-dev/jml/internal/identity"
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
		ok, err := ch.Tx.InsertFinding(ctx, f)
		if err != nil {
			return err
		}
		if ok {
			ch.Findings++
			ch.AuditSystem("finding.created", nhi.ID, "", map[string]any{"finding": f.ID, "kind": f.Kind, "owner": owner.ID})
		}
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
