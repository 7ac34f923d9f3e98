package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// Coalescing: on a store that can run several updates in one transaction
// (store.Batcher, PostgreSQL), concurrent Submit calls are accepted
// together. There is no background goroutine: a caller that finds fewer
// than maxLeaders batches running leads, taking every waiting submission it
// can into batches until none is left; the others wait for their result.
// A lone submission is a batch of one and runs at once.
//
// Batched submissions must be independent: no two touch the same identity,
// directly or as owner or manager, so that none reads what another writes
// (the store may hold inserts back until the end of the batch). When a
// batch fails as a whole (one bad event fails the transaction), each of its
// submissions is run again on its own, so a bad event gets its own error
// and the others are accepted.
const (
	maxBatch   = 32
	maxLeaders = 2
)

type submission struct {
	ctx context.Context
	p   Principal
	ev  identity.Event
	// keys are ev's identityKeys, computed once: a submission may wait
	// through several batches, each of which looks at it.
	keys     []string
	res      *Result
	err      error
	counters acceptCounters
	done     chan struct{}
}

type coalescer struct {
	store   store.Batcher
	mu      sync.Mutex
	pending []*submission
	leaders int
	// multi counts batches of more than one submission; fallbacks, those
	// that failed as a whole and were run one by one.
	multi, fallbacks atomic.Int64
}

func (e *Engine) submitCoalesced(ctx context.Context, p Principal, ev identity.Event) (*Result, error) {
	s := &submission{ctx: ctx, p: p, ev: ev, keys: identityKeys(ev), done: make(chan struct{})}
	c := e.coalescer
	c.mu.Lock()
	c.pending = append(c.pending, s)
	lead := c.leaders < maxLeaders
	if lead {
		c.leaders++
	}
	c.mu.Unlock()
	if lead {
		e.lead()
	}
	<-s.done
	return s.res, s.err
}

// lead runs batches until no submission waits.
func (e *Engine) lead() {
	c := e.coalescer
	for {
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.leaders--
			c.mu.Unlock()
			return
		}
		var batch []*submission
		batch, c.pending = independent(c.pending, maxBatch)
		c.mu.Unlock()
		e.runBatch(batch)
	}
}

// independent takes, in arrival order, up to max submissions that touch
// no identity another taken one touches, and returns them and the rest.
// Once max are taken it looks no further: with many callers waiting, every
// batch would otherwise pass over all of them.
func independent(pending []*submission, max int) (taken, rest []*submission) {
	touched := make(map[string]bool, 3*min(max, len(pending)))
	for i, s := range pending {
		if len(taken) == max {
			rest = append(rest, pending[i:]...)
			break
		}
		free := true
		for _, k := range s.keys {
			if touched[k] {
				free = false
			}
		}
		if !free {
			rest = append(rest, s)
			continue
		}
		for _, k := range s.keys {
			touched[k] = true
		}
		taken = append(taken, s)
	}
	return taken, rest
}

// identityKeys names the identities an event reads or writes by source and
// external ID: its own, its owner's and its manager's. (The leaver's owned
// NHIs are covered: an event about one of them names it or its owner.)
func identityKeys(ev identity.Event) []string {
	// The event's own (source, ID) is a key too: two submissions of one
	// event must not share a batch, where neither would see the other.
	keys := []string{ev.Source + "\x00" + ev.ExternalID, "event\x00" + ev.Source + "\x00" + ev.ID}
	if ev.Owner != "" {
		src := ev.OwnerSource
		if src == "" {
			src = ev.Source
		}
		keys = append(keys, src+"\x00"+ev.Owner)
	}
	if ev.Manager != "" {
		keys = append(keys, ev.Source+"\x00"+ev.Manager)
	}
	return keys
}

func (e *Engine) runBatch(batch []*submission) {
	defer func() {
		for _, s := range batch {
			close(s.done)
		}
	}()
	// A lone submission is a batch of one too: the batch path's lookups
	// and held writes cost two round trips where a plain transaction pays
	// one per statement (a lone joiner on PostgreSQL: 637 -> 547 µs,
	// BenchmarkSubmitJoinerPostgres). It runs under its caller's context;
	// a batch of several, whose callers may leave, under its own.
	ctx := batch[0].ctx
	if len(batch) > 1 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
	}
	// The batch's identities and events are read in one round trip up front
	// (the store holds its writes to the end): a batch costs a few round
	// trips however many events it holds.
	fns := make([]func(store.Tx) error, 0, len(batch)+1)
	fns = append(fns, func(tx store.Tx) error { return prefetch(ctx, tx, batch) })
	for _, s := range batch {
		fns = append(fns, func(tx store.Tx) error {
			s.counters = acceptCounters{}
			var err error
			s.res, _, err = e.accept(ctx, tx, s.p, s.ev, &s.counters)
			return err
		})
	}
	if len(batch) > 1 {
		e.coalescer.multi.Add(1)
	}
	if err := e.coalescer.store.UpdateBatch(ctx, fns); err != nil {
		if len(batch) == 1 { // its own error already
			batch[0].res, batch[0].err = nil, err
			return
		}
		e.coalescer.fallbacks.Add(1)
		for _, s := range batch {
			s.res, s.err = e.submitOne(s.ctx, s.p, s.ev)
		}
		return
	}
	for _, s := range batch {
		e.observeAccepted(s.ev, s.res, s.counters)
	}
}

// prefetch reads, for the rest of the batch's transaction, every identity
// the batch's events name (their own, owners, managers) and every event
// already stored under their (source, event ID).
func prefetch(ctx context.Context, tx store.Tx, batch []*submission) error {
	asked := map[store.ExternalRef]bool{}
	var irefs []store.ExternalRef
	erefs := make([]store.EventRef, 0, len(batch))
	ask := func(r store.ExternalRef) {
		if !asked[r] {
			asked[r] = true
			irefs = append(irefs, r)
		}
	}
	for _, s := range batch {
		ev := s.ev
		erefs = append(erefs, store.EventRef{Source: ev.Source, ID: ev.ID})
		ask(store.ExternalRef{Source: ev.Source, ExternalID: ev.ExternalID})
		if ev.Owner != "" {
			src := ev.OwnerSource
			if src == "" {
				src = ev.Source
			}
			ask(store.ExternalRef{Source: src, ExternalID: ev.Owner})
		}
		if ev.Manager != "" {
			ask(store.ExternalRef{Source: ev.Source, ExternalID: ev.Manager})
		}
	}
	return tx.Prefetch(ctx, irefs, erefs)
}
