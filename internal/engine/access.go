package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// This file holds the read models of access: who holds an entitlement or
// has access in a system, and everything one identity holds. Like the
// others (views.go) they apply the principal's reach, and they read jml's
// records, never the systems: what jml granted, created and issued.

// Holding is one identity's access to an entitlement, or in a system, as
// jml records it.
type Holding struct {
	Identity identity.Identity `json:"identity"`
	// Grants are the identity's grants of the entitlement, or of the
	// system's entitlements.
	Grants []identity.Grant `json:"grants"`
	// Accounts and Credentials (active ones) are the identity's in the
	// system; empty when holdings are listed by entitlement.
	Accounts    []identity.Account    `json:"accounts"`
	Credentials []identity.Credential `json:"credentials"`
}

// Holders lists the identities f selects by entitlement or by system (at
// least one is required; the other filters, the cursor and the reach work
// as in Identities) with what each holds of it.
func (e *Engine) Holders(ctx context.Context, p Principal, f store.IdentityFilter) ([]Holding, error) {
	if f.Entitlement == "" && f.System == "" {
		return nil, identity.FieldError("entitlement", "give an entitlement, or a system, whose holders to list")
	}
	ids, err := e.Identities(ctx, p, f)
	if err != nil {
		return nil, err
	}
	out := make([]Holding, 0, len(ids))
	err = e.store.View(ctx, func(tx store.Tx) error {
		for _, id := range ids {
			a, err := accessOf(ctx, tx, &id)
			if err != nil {
				return err
			}
			h := Holding{Identity: id, Grants: []identity.Grant{}, Accounts: []identity.Account{}, Credentials: []identity.Credential{}}
			for _, g := range a.Grants {
				if (f.Entitlement == "" || g.Entitlement == f.Entitlement) && (f.System == "" || g.System == f.System) {
					h.Grants = append(h.Grants, g)
				}
			}
			if f.System != "" {
				for _, acc := range a.Accounts {
					if acc.System == f.System && acc.Status != identity.AccountDeleted {
						h.Accounts = append(h.Accounts, acc)
					}
				}
				for _, c := range a.Credentials {
					if c.System == f.System {
						h.Credentials = append(h.Credentials, c)
					}
				}
			}
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Access is everything jml records one identity as holding, across
// systems: its accounts (of every status, disabled and deleted ones
// included, for the record), its grants with their reasons, and its
// active credentials.
type Access struct {
	Identity    identity.Identity     `json:"identity"`
	Accounts    []identity.Account    `json:"accounts"`
	Grants      []identity.Grant      `json:"grants"`
	Credentials []identity.Credential `json:"credentials"`
}

// AccessOf is the access of the identity ref names (a jml ID or
// SOURCE/EXTERNAL_ID), if p may read it; otherwise, as for one that does
// not exist, NotFound.
func (e *Engine) AccessOf(ctx context.Context, p Principal, ref string) (*Access, error) {
	if err := mayUse(p, PermRead); err != nil {
		return nil, err
	}
	var out *Access
	err := e.store.View(ctx, func(tx store.Tx) error {
		id, err := readableIdentity(ctx, tx, p, ref)
		if err != nil {
			return err
		}
		out, err = accessOf(ctx, tx, id)
		return err
	})
	return out, err
}

func accessOf(ctx context.Context, tx store.Tx, id *identity.Identity) (*Access, error) {
	a := &Access{Identity: *id}
	var err error
	if a.Accounts, err = tx.ListAccounts(ctx, id.ID); err != nil {
		return nil, err
	}
	if a.Grants, err = tx.ListGrants(ctx, id.ID); err != nil {
		return nil, err
	}
	if a.Credentials, err = tx.ListCredentials(ctx, id.ID, true); err != nil {
		return nil, err
	}
	a.Accounts, a.Grants, a.Credentials = nonNil(a.Accounts), nonNil(a.Grants), nonNil(a.Credentials)
	return a, nil
}

// readableIdentity finds the identity ref names (a jml ID or
// SOURCE/EXTERNAL_ID) if p may read it. One p may not read gets the
// answer of one that does not exist, so that names cannot be probed.
func readableIdentity(ctx context.Context, tx store.Tx, p Principal, ref string) (*identity.Identity, error) {
	id, err := tx.GetIdentity(ctx, ref)
	if src, ext, ok := strings.Cut(ref, "/"); store.IsNotFound(err) && ok {
		id, err = tx.GetIdentityByExternalID(ctx, src, ext)
	}
	if err == nil && !p.MaySee(PermRead, id) {
		err = store.ErrNotFound
	}
	if store.IsNotFound(err) {
		return nil, identity.Errorf(identity.NotFound, "no identity %q (give a jml ID, idn_…, or SOURCE/EXTERNAL_ID)", ref)
	}
	return id, err
}

// checkAccessFilter refuses an entitlement or a system the policy does not
// name: a misspelt name would otherwise list nobody, which reads as "nobody
// has access".
func (e *Engine) checkAccessFilter(f store.IdentityFilter) error {
	pol := e.Policy()
	if f.Entitlement != "" && pol.Entitlement(f.Entitlement) == nil {
		return identity.FieldError("entitlement", "the policy has no entitlement %q (it has %s)", f.Entitlement, someNames(slices.Sorted(maps.Keys(pol.Entitlements))))
	}
	if f.System != "" && pol.Systems[f.System] == nil {
		return identity.FieldError("system", "the policy has no system %q (it has %s)", f.System, someNames(slices.Sorted(maps.Keys(pol.Systems))))
	}
	return nil
}

// someNames lists names for an error message, the first 20 of them.
func someNames(names []string) string {
	const most = 20
	switch {
	case len(names) == 0:
		return "none"
	case len(names) > most:
		return strings.Join(names[:most], ", ") + fmt.Sprintf(" and %d more", len(names)-most)
	}
	return strings.Join(names, ", ")
}
