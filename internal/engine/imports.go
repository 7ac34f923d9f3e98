package engine

import (
	"context"
	"errors"
	"sync"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// Import is the events one snapshot of a file-fed source derives, and the
// snapshot to store once they are accepted.
type Import struct {
	Source string
	Events []identity.Event
	// Cancel are the source event IDs of the source's scheduled events
	// the snapshot no longer gives (an end date removed); they are
	// cancelled with the snapshot.
	Cancel   []string
	Snapshot []byte
	// HoldReason, when not empty, is why the mass-change guard holds the
	// import: nothing is applied, the batch waits for an administrator.
	HoldReason string
}

// ImportResult is what an import did.
type ImportResult struct {
	Hold       *store.Hold // set when held
	Accepted   int
	Duplicates int
	// Cancelled counts the scheduled events the import cancelled.
	Cancelled int
	// Failed are the events refused, with why; the snapshot is stored
	// only when none was.
	Failed []ImportFailure
}

// ImportFailure is one refused event.
type ImportFailure struct {
	Event identity.Event
	Err   error
}

// Import applies a source's snapshot: its events, then the snapshot; or,
// when the guard holds it, a hold and nothing else.
func (e *Engine) Import(ctx context.Context, p Principal, imp Import) (*ImportResult, error) {
	if !Allowed(p.Role, PermSubmit) {
		return nil, identity.Errorf(identity.Forbidden, "role %s may not submit events", p.Role)
	}
	if err := e.mayEmit(p, imp.Source); err != nil {
		return nil, err
	}
	for i := range imp.Events {
		if imp.Events[i].Source != imp.Source {
			return nil, identity.Errorf(identity.Invalid, "event %s: source %q is not the import's %q", imp.Events[i].ID, imp.Events[i].Source, imp.Source)
		}
	}
	if imp.HoldReason != "" {
		now := e.Now().UTC()
		h := &store.Hold{ID: e.newID("hold_"), Source: imp.Source, Reason: imp.HoldReason, Events: imp.Events, Cancel: imp.Cancel, Snapshot: imp.Snapshot,
			Status: store.HoldHeld, CreatedBy: p.ID, CreatedAt: now}
		err := e.store.Update(ctx, func(tx store.Tx) error {
			if err := tx.InsertHold(ctx, h); err != nil {
				return err
			}
			return tx.AppendAudit(ctx, auditBy(now, p, "import.held", "", "", map[string]any{"hold": h.ID, "source": h.Source, "reason": h.Reason, "events": len(h.Events)}))
		})
		if err != nil {
			return nil, err
		}
		e.log.Warn("mass-change guard held an import", "hold", h.ID, "source", h.Source, "reason", h.Reason, "events", len(h.Events))
		return &ImportResult{Hold: h}, nil
	}
	return e.applyImport(ctx, p, imp)
}

// applyImport submits the events and stores the snapshot if all were
// accepted. One identity's events go in the order the import gives them
// (a rehire's joiner before its new end date's leaver), identities in
// parallel. Events go in passes: one that names a manager (or owner) not
// accepted yet is tried again after the others, with the events of its
// identity that follow it, so a file's order does not matter.
func (e *Engine) applyImport(ctx context.Context, p Principal, imp Import) (*ImportResult, error) {
	res := &ImportResult{}
	todo := byIdentity(imp.Events)
	for len(todo) > 0 {
		var mu sync.Mutex
		var retry [][]identity.Event
		var failed []ImportFailure
		sem := make(chan struct{}, importConcurrency)
		var wg sync.WaitGroup
		for _, evs := range todo {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				for i, ev := range evs {
					r, err := e.submitReleased(ctx, p, ev)
					mu.Lock()
					var ie *identity.Error
					switch {
					case err == nil && r.Duplicate:
						res.Duplicates++
					case err == nil:
						res.Accepted++
					case errors.As(err, &ie) && (ie.Field == "manager" || ie.Field == "owner" || (ie.Field == "externalId" && ie.Code == identity.NotFound)):
						retry = append(retry, evs[i:])
						failed = append(failed, ImportFailure{Event: ev, Err: err})
					default:
						res.Failed = append(res.Failed, ImportFailure{Event: ev, Err: err})
						for _, later := range evs[i+1:] {
							res.Failed = append(res.Failed, ImportFailure{Event: later, Err: identity.Errorf(identity.Conflict, "not submitted: event %s of the same identity before it was refused", ev.ID)})
						}
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
		wg.Wait()
		if len(retry) == len(todo) && sameHeads(retry, todo) { // no progress: these fail for good
			res.Failed = append(res.Failed, failed...)
			break
		}
		todo = retry
	}
	if len(res.Failed) > 0 || imp.Snapshot == nil {
		return res, nil
	}
	now := e.Now().UTC()
	err := e.store.Update(ctx, func(tx store.Tx) error {
		res.Cancelled = 0
		for _, id := range imp.Cancel {
			ok, err := e.cancelScheduled(ctx, tx, p, imp.Source, id, "the source's snapshot no longer gives it")
			if err != nil {
				return err
			}
			if ok {
				res.Cancelled++
			}
		}
		if err := tx.PutSnapshot(ctx, imp.Source, imp.Snapshot, now); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, auditBy(now, p, "import.applied", "", "", map[string]any{"source": imp.Source, "accepted": res.Accepted, "duplicates": res.Duplicates, "cancelled": res.Cancelled}))
	})
	return res, err
}

// guard does not hold it again.
func (e *Engine) submitReleased(ctx context.Context, p Principal, ev identity.Event) (*Result, error) {
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return e.submitUnguarded(ctx, p, ev)
}

// byIdentity groups events by (source, external ID), each group in the
// order given, groups in the order of their first event.
func byIdentity(evs []identity.Event) [][]identity.Event {
	at := map[[2]string]int{}
	var out [][]identity.Event
	for _, ev := range evs {
		k := [2]string{ev.Source, ev.ExternalID}
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], ev)
	}
	return out
}

// sameHeads reports whether a pass made no progress: every group it tried
// is to be retried from the event it started with.
func sameHeads(retry, todo [][]identity.Event) bool {
	heads := map[string]bool{}
	for _, evs := range todo {
		heads[evs[0].ID] = true
	}
	for _, evs := range retry {
		if !heads[evs[0].ID] {
			return false
		}
	}
	return true
}

// importConcurrency is how many events of an import are in flight at
// once: enough to fill the batches of both leaders on PostgreSQL
// (maxLeaders x maxBatch), and SQLite's group commits.
const importConcurrency = maxLeaders * maxBatch
