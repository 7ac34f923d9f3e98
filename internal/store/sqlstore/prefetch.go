package sqlstore

import (
	"maps"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// prefetch is what Tx.Prefetch read: the identities and events it was asked
// for, by name, nil for a name that does not exist. A name missing from its
// map was not asked for. The transaction's own writes of those names keep
// it exact: a deferred insert (which a later read would not see in the
// database) is recorded in it, an immediate update drops the name so that
// the database answers.
type prefetch struct {
	idents map[store.ExternalRef]*identity.Identity
	events map[store.EventRef]*store.Event
}

func newPrefetch(irefs []store.ExternalRef, erefs []store.EventRef) *prefetch {
	p := &prefetch{idents: make(map[store.ExternalRef]*identity.Identity, len(irefs)), events: make(map[store.EventRef]*store.Event, len(erefs))}
	for _, r := range irefs {
		p.idents[r] = nil
	}
	for _, r := range erefs {
		p.events[r] = nil
	}
	return p
}

// identity answers a lookup by external ID; ok is false when the name was
// not prefetched (or there is no prefetch) and the database must answer.
// The identity returned is the caller's to change.
func (p *prefetch) identity(source, externalID string) (*identity.Identity, bool, error) {
	if p == nil {
		return nil, false, nil
	}
	id, ok, err := known(p.idents, store.ExternalRef{Source: source, ExternalID: externalID}, "identity", source+"/"+externalID)
	if id != nil {
		id.Attributes = maps.Clone(id.Attributes)
	}
	return id, ok, err
}

// event answers FindEvent as identity answers a lookup.
func (p *prefetch) event(source, id string) (*store.Event, bool, error) {
	if p == nil {
		return nil, false, nil
	}
	return known(p.events, store.EventRef{Source: source, ID: id}, "event", source+"/"+id)
}

// known answers a lookup of k from m with a copy of what it holds: ok is
// false when k was not asked for; a nil entry is a name that does not
// exist, a NotFound error about kind what.
func known[K comparable, V any](m map[K]*V, k K, kind, what string) (*V, bool, error) {
	got, asked := m[k]
	switch {
	case !asked:
		return nil, false, nil
	case got == nil:
		return nil, true, notFound(kind, what)
	}
	c := *got
	return &c, true, nil
}

// inserted records v under k, whose insert is deferred, if k was asked
// for. The caller must not change v afterwards (lookups copy it).
func inserted[K comparable, V any](m map[K]*V, k K, v *V) {
	if _, asked := m[k]; asked {
		m[k] = v
	}
}

// insertedIdentity records an identity whose insert is deferred.
func (p *prefetch) insertedIdentity(id *identity.Identity) {
	if p != nil {
		inserted(p.idents, store.ExternalRef{Source: id.Source, ExternalID: id.ExternalID}, id)
	}
}

// updatedIdentity forgets an identity the transaction has updated in the
// database, which now answers for it.
func (p *prefetch) updatedIdentity(id *identity.Identity) {
	if p != nil {
		delete(p.idents, store.ExternalRef{Source: id.Source, ExternalID: id.ExternalID})
	}
}

// insertedEvent records an event whose insert is deferred.
func (p *prefetch) insertedEvent(ev *store.Event) {
	if p != nil {
		inserted(p.events, store.EventRef{Source: ev.Event.Source, ID: ev.Event.ID}, ev)
	}
}
