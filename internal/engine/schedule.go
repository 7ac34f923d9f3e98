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
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jobs"
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

// Due is something that will happen to an identity at a known time: a
// scheduled event reaching its effective time, or a grant its expiry.
type Due struct {
	At         time.Time `json:"at"`
	Kind       DueKind   `json:"kind"`
	IdentityID string    `json:"identityId"`
	// An event's: its ID, source, source event ID and type.
	EventID       string             `json:"eventId,omitempty"`
	Source        string             `json:"source,omitempty"`
	SourceEventID string             `json:"sourceEventId,omitempty"`
	Type          identity.EventType `json:"type,omitempty"`
	// A grant's: its entitlement and system.
	Entitlement string `json:"entitlement,omitempty"`
	System      string `json:"system,omitempty"`
}

// DueKind says what a Due is.
type DueKind string

const (
	DueEvent       DueKind = "event"
	DueGrantExpiry DueKind = "grant_expiry"
)

// ScheduleFilter selects what Schedule lists: of one kind ("" for both),
// due at or before Until (zero: whenever), at most Limit of each kind.
type ScheduleFilter struct {
	Kind  DueKind
	Until time.Time
	Limit int
}

// MaxScheduleLimit bounds ScheduleFilter.Limit.
const MaxScheduleLimit = 5000

// farFuture stands for "whenever" in the store's expiry query.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// Schedule lists what is due across every identity, soonest first. It is
// an administrator's view (PermOperate): what jml will do by itself.
func (e *Engine) Schedule(ctx context.Context, p Principal, f ScheduleFilter) ([]Due, error) {
	if ReachOf(p.Role, PermOperate) != Anywhere {
		return nil, identity.Errorf(identity.Forbidden, "role %s may not read the schedule (admin only)", p.Role)
	}
	switch f.Kind {
	case "", DueEvent, DueGrantExpiry:
	default:
		return nil, identity.FieldError("kind", "must be %s or %s", DueEvent, DueGrantExpiry)
	}
	if f.Limit <= 0 || f.Limit > MaxScheduleLimit {
		return nil, identity.FieldError("limit", "must be from 1 to %d", MaxScheduleLimit)
	}
	until := f.Until
	if until.IsZero() {
		until = farFuture
	}
	var evs []store.Event
	var grants []identity.Grant
	err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		if f.Kind != DueGrantExpiry {
			if evs, err = tx.ListScheduled(ctx, "", f.Limit); err != nil {
				return err
			}
		}
		if f.Kind != DueEvent {
			grants, err = tx.ListExpiringGrants(ctx, until, f.Limit)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := dueOf(evs, grants)
	// Scheduled events are read by time alone; those after Until go.
	out = slices.DeleteFunc(out, func(d Due) bool { return d.At.After(until) })
	return out, nil
}

// dueOf merges scheduled events and time-bound grants into one list,
// soonest first (never nil).
func dueOf(evs []store.Event, grants []identity.Grant) []Due {
	out := make([]Due, 0, len(evs)+len(grants))
	for _, ev := range evs {
		out = append(out, Due{At: ev.EffectiveAt, Kind: DueEvent, IdentityID: ev.IdentityID, EventID: ev.ID, Source: ev.Event.Source, SourceEventID: ev.Event.ID, Type: ev.Event.Type})
	}
	for _, g := range grants {
		if !g.ExpiresAt.IsZero() {
			out = append(out, Due{At: g.ExpiresAt, Kind: DueGrantExpiry, IdentityID: g.IdentityID, Entitlement: g.Entitlement, System: g.System})
		}
	}
	slices.SortStableFunc(out, func(a, b Due) int { return a.At.Compare(b.At) })
	return out
}

// schedule records a future-dated event and its timer. A future joiner
// creates the identity in state pending, without access, so it is visible
// and a later event can still cancel it.
func (e *Engine) schedule(ctx context.Context, tx store.Tx, p Principal, rec *store.Event, cur *identity.Identity) (*Result, error) {
	ev := rec.Event
	now := rec.ReceivedAt
	from := identity.None
	if cur != nil {
		from = cur.State
	}
	// A joiner of a pending identity is a new start date (the scheduled
	// one it replaces was superseded); anything else follows the state
	// machine.
	if ev.Type != identity.Joiner || from != identity.Pending {
		if _, err := identity.Transition(from, ev.Type, ev.Type == identity.Joiner); err != nil {
			return nil, err
		}
	}
	if err := e.checkAttributes(ev, cur); err != nil {
		return nil, err
	}
	if ev.Type == identity.Joiner {
		id, err := e.resolve(ctx, tx, ev, cur, rec.IdentityID, now)
		if err != nil {
			return nil, err
		}
		before := identity.State(identity.None)
		if cur != nil {
			before = cur.State
		}
		id.State = identity.Pending
		if cur == nil {
			err = tx.InsertIdentity(ctx, id)
		} else {
			err = tx.UpdateIdentity(ctx, id)
		}
		if err != nil {
			return nil, err
		}
		cur = id
		if err := tx.AppendAudit(ctx, auditBy(now, p, "identity.state_changed", id.ID, "", map[string]any{"from": string(before), "to": string(identity.Pending), "event": rec.ID})); err != nil {
			return nil, err
		}
	}
	if err := tx.Enqueue(ctx, EffectiveEventArgs{EventID: rec.ID}, rec.EffectiveAt); err != nil {
		return nil, err
	}
	if err := tx.AppendAudit(ctx, auditBy(now, p, "event.scheduled", cur.ID, "", map[string]any{
		"event": rec.ID, "source": ev.Source, "sourceEventId": ev.ID, "type": string(ev.Type), "effectiveAt": rec.EffectiveAt})); err != nil {
		return nil, err
	}
	return &Result{EventID: rec.ID, IdentityID: cur.ID, Status: store.EventScheduled}, nil
}

// EffectiveEventArgs is the timer of a future-dated event.
type EffectiveEventArgs struct {
	EventID string `json:"eventId"`
}

func (EffectiveEventArgs) Kind() string { return "jml.effective_event" }

// registerSchedule declares the timer of a future-dated event.
func (e *Engine) registerSchedule(r *jobs.Registry) {
	jobs.AddFunc(r, "engine/schedule.go", "applies a future-dated event at its time, unless it was superseded", func(ctx context.Context, job *river.Job[EffectiveEventArgs]) error {
		return e.runEffective(ctx, job.Args.EventID)
	})
}

// errRejected rolls back a future-dated event that no longer applies.
var errRejected = errors.New("the event no longer applies")

// runEffective applies a future-dated event when its time comes. If it no
// longer applies (the identity moved on), the event is rejected, with the
// reason, and nothing else changes.
func (e *Engine) runEffective(ctx context.Context, eventID string) error {
	var rejected error
	var counters acceptCounters
	err := e.store.Update(ctx, func(tx store.Tx) error {
		rejected, counters = nil, acceptCounters{}
		rec, err := tx.GetEvent(ctx, eventID)
		if err != nil {
			return err
		}
		if rec.Status != store.EventScheduled {
			e.log.Debug("scheduled event timer: nothing to do", "event", eventID, "status", rec.Status, "why", cmp.Or(rec.Error, "the event is "+string(rec.Status)))
			return nil
		}
		rec.CaseID = e.newID("case_")
		cur, err := tx.GetIdentity(ctx, rec.IdentityID)
		if err != nil && !store.IsNotFound(err) {
			return err
		}
		if store.IsNotFound(err) {
			cur = nil
		}
		p, err := principalOf(ctx, tx, rec.Principal)
		if err != nil {
			return err
		}
		c, id, err := e.apply(ctx, tx, p, rec, cur, &counters, func(c *cases.Case) error { return tx.InsertCase(ctx, c) })
		if err != nil {
			var ie *identity.Error
			if !errors.As(err, &ie) {
				return err
			}
			// Nothing the event began to change may stay (the identity
			// written before a later check failed): the transaction rolls
			// back, and the rejection is recorded in one of its own.
			rejected = err
			return errRejected
		}
		rec.Status, rec.CaseID, rec.IdentityID = store.EventApplied, c.ID, id.ID
		return tx.UpdateEvent(ctx, rec)
	})
	if err != nil && !errors.Is(err, errRejected) {
		return err
	}
	if rejected == nil {
		counters.observe(e.metrics)
		e.startCases(counters.runNow)
		return nil
	}
	return e.store.Update(ctx, func(tx store.Tx) error {
		rec, err := tx.GetEvent(ctx, eventID)
		if err != nil {
			return err
		}
		rec.Status, rec.Error, rec.CaseID = store.EventRejected, identity.ErrorMessage(rejected), ""
		if err := tx.UpdateEvent(ctx, rec); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, audit.New(e.Now(), System.ID, "event.rejected", rec.IdentityID, "", map[string]any{"event": rec.ID, "error": rec.Error}))
	})
}
