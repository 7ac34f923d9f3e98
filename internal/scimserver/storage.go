package scimserver

import (
	"context"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// Tx is the part of a store transaction the SCIM server reads and
// writes: its resources (store.SCIM), and of the identities only the one
// a User is linked to, read to tell which lifecycle event a change makes.
// Identities themselves change only through events the engine accepts. A
// store.Tx is a Tx, so the same write runs in the server's own
// transaction or in the engine's accepting one.
type Tx interface {
	store.SCIM
	GetIdentityByExternalID(ctx context.Context, source, externalID string) (*identity.Identity, error)
}

// Store runs the transactions the SCIM server opens itself: its reads, and
// the writes that accept no event (a User created inactive, a change that
// makes no event, the delete of a User jml never provisioned or that has
// left). A write that accepts an event runs in the engine's accepting
// transaction instead (engine.SubmitWith), so that the resource and its
// event commit together.
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
}

// Parts is st as the SCIM server uses it. st must be the store the
// engine accepts events in: a resource and the identity it is linked to
// live in one database.
func Parts(st store.Store) Store { return parts{st} }

type parts struct{ st store.Store }

func (p parts) View(ctx context.Context, fn func(Tx) error) error {
	return p.st.View(ctx, func(tx store.Tx) error { return fn(tx) })
}

func (p parts) Update(ctx context.Context, fn func(Tx) error) error {
	return p.st.Update(ctx, func(tx store.Tx) error { return fn(tx) })
}
