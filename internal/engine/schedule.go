package engine

// The schedule: future-dated events wait for their effective time as
// events of status scheduled, each with a timer. A later event of the same
// source about the same identity supersedes the scheduled ones it
// contradicts, in the transaction that accepts it, so that what a source
// says last is what happens:
//
//   - an event of the same type (joiner, leaver, suspend, resume) replaces
//     it: a new start date, a new end date, a new date for a suspension;
//   - a leaver cancels what was scheduled for on or after its own time (a
//     hire cancelled before its start, a mover or resume after the end);
//   - a rehire (a joiner of a departed identity) cancels everything the
//     source had scheduled for the identity's earlier employment.
//
// Movers are never replaced by movers: each carries its own attribute
// changes. A superseded event keeps its row (status superseded, with the
// later event named) and its timer finds nothing to do.

import (
	"context"
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// maxScheduledPerIdentity bounds the scheduled events one acceptance reads
// for an identity.
const maxScheduledPerIdentity = 1000

// contradicts says why later, accepted about an identity in state from,
// supersedes earlier, a scheduled event of the same source; "" when it does
// not.
func contradicts(later *store.Event, from identity.State, earlier *store.Event) string {
	l, s := later.Event.Type, earlier.Event.Type
	switch {
	case l == s && l != identity.Mover:
		return fmt.Sprintf("a later %s replaces it (effective %s)", l, later.EffectiveAt.UTC().Format(time.RFC3339))
	case l == identity.Leaver && !earlier.EffectiveAt.Before(later.EffectiveAt):
		return fmt.Sprintf("a leaver effective %s comes first", later.EffectiveAt.UTC().Format(time.RFC3339))
	case l == identity.Joiner && from == identity.Departed:
		return "a rehire replaces what was scheduled for the earlier employment"
	}
	return ""
}

// supersedeScheduled marks superseded every scheduled event of rec's
// source about cur that rec contradicts, and returns their audit records.
// It runs in the transaction that accepts rec, after the duplicate check.
func (e *Engine) supersedeScheduled(ctx context.Context, tx store.Tx, p Principal, rec *store.Event, cur *identity.Identity) ([]audit.Record, error) {
	if cur == nil {
		return nil, nil
	}
	scheduled, err := tx.ListScheduled(ctx, cur.ID, maxScheduledPerIdentity)
	if err != nil || len(scheduled) == 0 {
		return nil, err
	}
	var recs []audit.Record
	for i := range scheduled {
		s := &scheduled[i]
		if s.Event.Source != rec.Event.Source {
			continue
		}
		why := contradicts(rec, cur.State, s)
		if why == "" {
			continue
		}
		s.Status = store.EventSuperseded
		s.Error = fmt.Sprintf("superseded by event %s (%s/%s): %s", rec.ID, rec.Event.Source, rec.Event.ID, why)
		if err := tx.UpdateEvent(ctx, s); err != nil {
			return nil, err
		}
		recs = append(recs, auditBy(rec.ReceivedAt, p, "event.superseded", cur.ID, "", map[string]any{
			"event": s.ID, "sourceEventId": s.Event.ID, "type": string(s.Event.Type), "effectiveAt": s.EffectiveAt,
			"by": rec.ID, "bySourceEventId": rec.Event.ID, "byType": string(rec.Event.Type), "why": why}))
	}
	return recs, nil
}

// CancelScheduled cancels a scheduled event of source by its source event
// ID (the source's word that it no longer holds: an HR row whose end date
// was removed). An event that is not scheduled (applied, or superseded
// already) is left as it is; the result says whether one was cancelled.
func (e *Engine) cancelScheduled(ctx context.Context, tx store.Tx, p Principal, source, sourceEventID, why string) (bool, error) {
	ev, err := tx.FindEvent(ctx, source, sourceEventID)
	if store.IsNotFound(err) {
		return false, nil
	}
	if err != nil || ev.Status != store.EventScheduled {
		return false, err
	}
	ev.Status, ev.Error = store.EventSuperseded, "cancelled: "+why
	if err := tx.UpdateEvent(ctx, ev); err != nil {
		return false, err
	}
	return true, tx.AppendAudit(ctx, auditBy(e.Now().UTC(), p, "event.superseded", ev.IdentityID, "", map[string]any{
		"event": ev.ID, "sourceEventId": ev.Event.ID, "type": string(ev.Event.Type), "effectiveAt": ev.EffectiveAt, "why": "cancelled: " + why}))
}
