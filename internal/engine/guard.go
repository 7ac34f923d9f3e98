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

// SourceGuard is the mass-change guard of a source whose events arrive
// one at a time (guard.Stream).
type SourceGuard = guard.Stream

// guard decides, in tx, whether ev goes into its source's held batch
// (guard.Hold); force, when not empty, holds it for that reason.
func (e *Engine) guard(ctx context.Context, tx store.Tx, p Principal, ev identity.Event, g SourceGuard, force string) (*Result, bool, error) {
	now := e.Now().UTC()
	h, dup, created, err := guard.Hold(ctx, tx, ev, g, force, now, func(h *store.Hold) { h.ID, h.CreatedBy = e.newID("hold_"), p.ID })
	if err != nil || h == nil {
		return nil, false, err
	}
	if created {
		if err := tx.AppendAudit(ctx, auditBy(now, p, "source.held", "", "", map[string]any{"hold": h.ID, "source": h.Source, "reason": h.Reason})); err != nil {
			return nil, false, err
		}
		e.log.Warn("mass-change guard holds a source", "source", ev.Source, "hold", h.ID, "reason", h.Reason)
	}
	return &Result{Status: store.EventHeld, HoldID: h.ID, Duplicate: dup}, true, nil
}

// submitReleased accepts an event of a batch an admin released: the
