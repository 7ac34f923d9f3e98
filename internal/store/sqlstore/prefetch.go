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
func (p *prefetch) identity(source, externalID string) (id *identity.Identity, ok bool, err error) {
	if p == nil {
		return nil, false, nil
	}
	got, asked := p.idents[store.ExternalRef{Source: source, ExternalID: externalID}]
	switch {
	case !asked:
		return nil, false, nil
	case got == nil:
		return nil, true, notFound("identity", source+"/"+externalID)
	}
	c := *got
	c.Attributes = maps.Clone(got.Attributes)
	return &c, true, nil
}

// event answers FindEvent as identity answers a lookup.
func (p *prefetch) event(source, id string) (ev *store.Event, ok bool, err error) {
	if p == nil {
		return nil, false, nil
	}
	got, asked := p.events[store.EventRef{Source: source, ID: id}]
	switch {
	case !asked:
		return nil, false, nil
	case got == nil:
		return nil, true, notFound("event", source+"/"+id)
	}
	c := *got
	return &c, true, nil
}

// insertedIdentity records an identity whose insert is deferred. The
// caller must not change id afterwards (lookups copy it).
func (p *prefetch) insertedIdentity(id *identity.Identity) {
	ref := store.ExternalRef{Source: id.Source, ExternalID: id.ExternalID}
	if p == nil {
		return
	}
	if _, asked := p.idents[ref]; asked {
		p.idents[ref] = id
	}
}

// updatedIdentity forgets an identity the transaction has updated in the
// database, which now answers for it.
func (p *prefetch) updatedIdentity(id *identity.Identity) {
	if p != nil {
		delete(p.idents, store.ExternalRef{Source: id.Source, ExternalID: id.ExternalID})
	}
}

// insertedEvent records an event whose insert is deferred, as
// insertedIdentity does.
func (p *prefetch) insertedEvent(ev *store.Event) {
	ref := store.EventRef{Source: ev.Event.Source, ID: ev.Event.ID}
	if p == nil {
		return
	}
	if _, asked := p.events[ref]; asked {
		p.events[ref] = ev
	}
}
