package engine

import (
	"context"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// This file holds the read models of identities named by reference: one
// identity by its source and external ID, and the owners and managers a
// list of identities refers to, so that a table can name them. Like the
// others (views.go) they apply the principal's reach.

// IdentityByExternalID is the identity source knows as externalID, if p
// may read it; otherwise, as for one that does not exist, NotFound.
func (e *Engine) IdentityByExternalID(ctx context.Context, p Principal, source, externalID string) (*identity.Identity, error) {
	if err := mayUse(p, PermRead); err != nil {
		return nil, err
	}
	var out *identity.Identity
	err := e.store.View(ctx, func(tx store.Tx) error {
		id, err := tx.GetIdentityByExternalID(ctx, source, externalID)
		if err == nil && !p.MaySee(PermRead, id) {
			err = notYours("identity", source+"/"+externalID)
		}
		out = id
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// OwnersAndManagers reads, in one transaction, the owners and managers the
// identities ids name, by ID. One that does not exist, or that p may not
// read, is left out: the caller shows its bare ID.
func (e *Engine) OwnersAndManagers(ctx context.Context, p Principal, ids []identity.Identity) (map[string]identity.Identity, error) {
	if err := mayUse(p, PermRead); err != nil {
		return nil, err
	}
	out := map[string]identity.Identity{}
	err := e.store.View(ctx, func(tx store.Tx) error {
		seen := map[string]bool{}
		for _, i := range ids {
			for _, ref := range []string{i.OwnerID, i.ManagerID} {
				if ref == "" || seen[ref] {
					continue
				}
				seen[ref] = true
				o, err := tx.GetIdentity(ctx, ref)
				if store.IsNotFound(err) {
					continue
				}
				if err != nil {
					return err
				}
				if p.MaySee(PermRead, o) {
					out[ref] = *o
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
