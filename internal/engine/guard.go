package engine

// The mass-change guard's engine side: a source's events that would take
// away more access at once than its limits allow (package guard's
// arithmetic) are held in one batch (store.Holds) until an administrator
// releases or discards it. File imports ask it before submitting anything
// (imports.go); streaming sources (SCIM, webhooks, POST /v1/events) are
// counted over a window as their events arrive.

import (
	"context"
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/guard"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

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
