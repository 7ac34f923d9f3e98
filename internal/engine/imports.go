package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jml-dev/jml/internal/guard"
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

// Holds lists held batches (status "" for all).
func (e *Engine) Holds(ctx context.Context, p Principal, status store.HoldStatus) ([]store.Hold, error) {
	if !Allowed(p.Role, PermRead) {
		return nil, identity.Errorf(identity.Forbidden, "role %s may not read holds", p.Role)
	}
	var out []store.Hold
	err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListHolds(ctx, status)
		return err
	})
	return nonNil(out), err
}

// DecideHold releases a held batch (its events are submitted and its
// snapshot stored) or discards it. Only an administrator may, and only
// once; the decision is audited.
func (e *Engine) DecideHold(ctx context.Context, p Principal, id string, release bool) (*store.Hold, *ImportResult, error) {
	status, action, decision := store.HoldDiscarded, "hold.discarded", DecisionDiscard
	if release {
		status, action, decision = store.HoldReleased, "hold.released", DecisionRelease
	}
	if !Allowed(p.Role, PermOperate) {
		return nil, nil, e.RecordRefusal(ctx, p, decision, id, identity.Errorf(identity.Forbidden, "only an admin may release or discard a held batch"))
	}
	var h *store.Hold
	now := e.Now().UTC()
	err := e.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if h, err = tx.GetHold(ctx, id); err != nil {
			return err
		}
		ok, err := tx.DecideHold(ctx, id, status, p.ID, now)
		if err != nil {
			return err
		}
		if !ok {
			return identity.Errorf(identity.Conflict, "hold %s is already %s", id, h.Status)
		}
		h.Status, h.DecidedBy, h.DecidedAt = status, p.ID, now
		return tx.AppendAudit(ctx, auditBy(now, p, action, "", "", map[string]any{"hold": id, "source": h.Source, "events": len(h.Events)}))
	})
	if err != nil || !release {
		return h, nil, err
	}
	res, err := e.applyImport(ctx, p, Import{Source: h.Source, Events: h.Events, Cancel: h.Cancel, Snapshot: h.Snapshot})
	if err == nil && len(res.Failed) > 0 {
		err = fmt.Errorf("hold %s released; %d of its events were refused (the first: %v)", id, len(res.Failed), res.Failed[0].Err)
	}
	return h, res, err
}

// SourceGuard is the mass-change guard of a source whose events arrive one
// at a time: leavers (and suspends) accepted within Window count against
// its Limits. The event that would break them, and every later event of
// the source, goes into one held batch until an admin releases or
// discards it.
type SourceGuard struct {
	guard.Limits `yaml:",inline"`
	Window       time.Duration `yaml:"window"`
	// MaxRevocations, if set, also holds the source once the cases of its
	// events within Window plan more revoke and disable steps than this.
	MaxRevocations int `yaml:"maxRevocations"`
}

// overRevocations aborts a transaction whose event made its source's
// revocations exceed the guard: it is run again with the event held.
type overRevocations struct{ source, why string }

func (e *overRevocations) Error() string { return e.why }

// guard decides, in tx, whether ev goes into its source's held batch;
// force, when not empty, holds it for that reason.
func (e *Engine) guard(ctx context.Context, tx store.Tx, p Principal, ev identity.Event, g SourceGuard, force string) (*Result, bool, error) {
	now := e.Now().UTC()
	h, err := tx.GetOpenHold(ctx, ev.Source)
	switch {
	case err == nil:
		for _, held := range h.Events {
			if held.ID == ev.ID {
				return &Result{Status: store.EventHeld, HoldID: h.ID, Duplicate: true}, true, nil
			}
		}
		h.Events = append(h.Events, ev)
		if err := tx.SetHoldEvents(ctx, h.ID, h.Events); err != nil {
			return nil, false, err
		}
		return &Result{Status: store.EventHeld, HoldID: h.ID}, true, nil
	case !store.IsNotFound(err):
		return nil, false, err
	}
	why := force
	if why == "" {
		narrowing := ev.Type == identity.Leaver || ev.Type == identity.Suspend
		if !narrowing || (ev.EffectiveAt != nil && ev.EffectiveAt.After(now)) {
			return nil, false, nil
		}
		recent, err := tx.CountNarrowingEvents(ctx, ev.Source, now.Add(-g.Window))
		if err != nil {
			return nil, false, err
		}
		people, err := tx.CountIdentities(ctx, ev.Source, []identity.State{identity.Active, identity.Suspended})
		if err != nil {
			return nil, false, err
		}
		over, reason := g.Exceeded(recent+1, people)
		if !over {
			return nil, false, nil
		}
		why = reason + " within " + g.Window.String()
	}
	h = &store.Hold{ID: e.newID("hold_"), Source: ev.Source, Reason: why, Events: []identity.Event{ev},
		Status: store.HoldHeld, CreatedBy: p.ID, CreatedAt: now}
	if err := tx.InsertHold(ctx, h); err != nil {
		return nil, false, err
	}
	if err := tx.AppendAudit(ctx, auditBy(now, p, "source.held", "", "", map[string]any{"hold": h.ID, "source": h.Source, "reason": h.Reason})); err != nil {
		return nil, false, err
	}
	e.log.Warn("mass-change guard holds a source", "source", ev.Source, "hold", h.ID, "reason", h.Reason)
	return &Result{Status: store.EventHeld, HoldID: h.ID}, true, nil
}

// checkRevocations, after ev was accepted in tx, fails the transaction
// with overRevocations if its source's recent revocations now exceed the
// guard's MaxRevocations.
func (e *Engine) checkRevocations(ctx context.Context, tx store.Tx, ev identity.Event, g SourceGuard) error {
	if g.MaxRevocations <= 0 {
		return nil
	}
	n, err := tx.CountRevocations(ctx, ev.Source, e.Now().UTC().Add(-g.Window))
	if err != nil || n <= g.MaxRevocations {
		return err
	}
	return &overRevocations{source: ev.Source, why: fmt.Sprintf("%d revocations planned, more than the %d the guard allows within %s", n, g.MaxRevocations, g.Window)}
}

// submitReleased accepts an event of a batch an admin released: the
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
