package sqlstore

import (
	"maps"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// prefetch is what Tx.Prefetch read: the identities and events it was asked
// for, by name. A name that was asked for and is missing from its map does
// not exist. The transaction's own writes of those names keep it current,
// so an answer from it is what the database would give.
type prefetch struct {
	askedIdents map[store.ExternalRef]bool
	askedEvents map[store.EventRef]bool
	idents      map[store.ExternalRef]*identity.Identity
	events      map[store.EventRef]*store.Event
}

func newPrefetch(irefs []store.ExternalRef, erefs []store.EventRef) *prefetch {
	p := &prefetch{askedIdents: map[store.ExternalRef]bool{}, askedEvents: map[store.EventRef]bool{},
		idents: map[store.ExternalRef]*identity.Identity{}, events: map[store.EventRef]*store.Event{}}
	for _, r := range irefs {
		p.askedIdents[r] = true
	}
	for _, r := range erefs {
		p.askedEvents[r] = true
	}
	return p
}

// identity answers a lookup by external ID; ok is false when the name was
// not prefetched (or there is no prefetch) and the database must answer.
// The identity returned is a copy.
func (p *prefetch) identity(source, externalID string) (id *identity.Identity, ok bool, err error) {
	ref := store.ExternalRef{Source: source, ExternalID: externalID}
	if p == nil || !p.askedIdents[ref] {
		return nil, false, nil
	}
	got, found := p.idents[ref]
	if !found {
		return nil, true, notFound("identity", source+"/"+externalID)
	}
	c := *got
	c.Attributes = maps.Clone(got.Attributes)
	return &c, true, nil
}

// event answers FindEvent as identity answers a lookup.
func (p *prefetch) event(source, id string) (ev *store.Event, ok bool, err error) {
	ref := store.EventRef{Source: source, ID: id}
	if p == nil || !p.askedEvents[ref] {
		return nil, false, nil
	}
	got, found := p.events[ref]
	if !found {
		return nil, true, notFound("event", source+"/"+id)
	}
	c := *got
	return &c, true, nil
}

// wroteIdentity keeps a prefetched identity current.
func (p *prefetch) wroteIdentity(id *identity.Identity) {
	ref := store.ExternalRef{Source: id.Source, ExternalID: id.ExternalID}
	if p == nil || !p.askedIdents[ref] {
		return
	}
	c := *id
	c.Attributes = maps.Clone(id.Attributes)
	p.idents[ref] = &c
}

// wroteEvent keeps a prefetched event current.
func (p *prefetch) wroteEvent(ev *store.Event) {
	ref := store.EventRef{Source: ev.Event.Source, ID: ev.Event.ID}
	if p == nil || !p.askedEvents[ref] {
		return
	}
	c := *ev
	p.events[ref] = &c
}
