// Package guard is the mass-change guard: whether a number of leavers out
// of a population is more than a source may cause at once (its arithmetic,
// pure), and for sources whose events stream in, the decision, inside the
// accepting transaction, to put an event in its source's held batch (Hold,
// CheckRevocations). A broken feed looks like half the company leaving;
// the guard makes jml hold such a batch for an administrator instead of
// applying it. The engine asks it; store.Holds keeps the batches.
package guard

import (
	"context"
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// Limits are a source's thresholds. Zero fields take the defaults.
type Limits struct {
	// MaxLeavers: more leavers than this are held (default 50).
	MaxLeavers int `yaml:"maxLeavers"`
	// MaxLeaverPercent: more than this share of the source's people
	// leaving is held (default 5), once at least MinLeaversForPercent
	// leave (default 10, so that a small company's one leaver is not).
	MaxLeaverPercent     float64 `yaml:"maxLeaverPercent"`
	MinLeaversForPercent int     `yaml:"minLeaversForPercent"`
}

// WithDefaults fills zero fields and rejects negative ones.
func (l Limits) WithDefaults() (Limits, error) {
	if l.MaxLeavers < 0 || l.MaxLeaverPercent < 0 || l.MinLeaversForPercent < 0 {
		return l, fmt.Errorf("guard thresholds must not be negative")
	}
	if l.MaxLeavers == 0 {
		l.MaxLeavers = 50
	}
	if l.MaxLeaverPercent == 0 {
		l.MaxLeaverPercent = 5
	}
	if l.MinLeaversForPercent == 0 {
		l.MinLeaversForPercent = 10
	}
	return l, nil
}

// Exceeded reports whether leavers out of population break the limits,
// and says how.
func (l Limits) Exceeded(leavers, population int) (bool, string) {
	if leavers > l.MaxLeavers {
		return true, fmt.Sprintf("%d leavers, more than the %d the guard allows at once", leavers, l.MaxLeavers)
	}
	if population > 0 && leavers >= l.MinLeaversForPercent {
		pct := 100 * float64(leavers) / float64(population)
		if pct > l.MaxLeaverPercent {
			return true, fmt.Sprintf("%d leavers, %.1f%% of %d people, more than the %g%% the guard allows at once", leavers, pct, population, l.MaxLeaverPercent)
		}
	}
	return false, ""
}

// Stream is the guard of a source whose events arrive one at a time
// (SCIM, webhooks, POST /v1/events): leavers (and suspends) accepted
// within Window count against its Limits. The event that would break
// them, and every later event of the source, goes into one held batch
// until an admin releases or discards it.
type Stream struct {
	Limits `yaml:",inline"`
	Window time.Duration `yaml:"window"`
	// MaxRevocations, if set, also holds the source once the cases of its
	// events within Window plan more revoke and disable steps than this.
	MaxRevocations int `yaml:"maxRevocations"`
}

// Tx is what the guard reads and writes of a transaction.
type Tx interface {
	GetOpenHold(ctx context.Context, source string) (*store.Hold, error)
	SetHoldEvents(ctx context.Context, id string, events []identity.Event) error
	InsertHold(ctx context.Context, h *store.Hold) error
	CountNarrowingEvents(ctx context.Context, source string, since time.Time) (int, error)
	CountIdentities(ctx context.Context, source string, states []identity.State) (int, error)
	CountRevocations(ctx context.Context, source string, since time.Time) (int, error)
}

// Hold decides, in tx, whether ev goes into its source's held batch: into
// the open one if there is one (duplicate when it holds ev already), or
// into a new one (newHold fills its ID, creator and time) when ev is a
// narrowing event that takes the source over g's limits within its window,
// or when force gives a reason. It returns the batch ev is in, nil when ev
// is not held, and whether the batch is new.
func Hold(ctx context.Context, tx Tx, ev identity.Event, g Stream, force string, now time.Time, newHold func(*store.Hold)) (h *store.Hold, duplicate, created bool, err error) {
	h, err = tx.GetOpenHold(ctx, ev.Source)
	switch {
	case err == nil:
		for _, held := range h.Events {
			if held.ID == ev.ID {
				return h, true, false, nil
			}
		}
		h.Events = append(h.Events, ev)
		return h, false, false, tx.SetHoldEvents(ctx, h.ID, h.Events)
	case !store.IsNotFound(err):
		return nil, false, false, err
	}
	why := force
	if why == "" {
		narrowing := ev.Type == identity.Leaver || ev.Type == identity.Suspend
		if !narrowing || (ev.EffectiveAt != nil && ev.EffectiveAt.After(now)) {
			return nil, false, false, nil
		}
		recent, err := tx.CountNarrowingEvents(ctx, ev.Source, now.Add(-g.Window))
		if err != nil {
			return nil, false, false, err
		}
		people, err := tx.CountIdentities(ctx, ev.Source, []identity.State{identity.Active, identity.Suspended})
		if err != nil {
			return nil, false, false, err
		}
		over, reason := g.Exceeded(recent+1, people)
		if !over {
			return nil, false, false, nil
		}
		why = reason + " within " + g.Window.String()
	}
	h = &store.Hold{Source: ev.Source, Reason: why, Events: []identity.Event{ev}, Status: store.HoldHeld, CreatedAt: now}
	newHold(h)
	return h, false, true, tx.InsertHold(ctx, h)
}

// OverRevocations aborts a transaction whose event made its source's
// revocations exceed the guard: the caller runs it again with the source
// held from its first event on.
type OverRevocations struct{ Source, Why string }

func (e *OverRevocations) Error() string { return e.Why }

// CheckRevocations, after an event of source was accepted in tx, returns
// an *OverRevocations if the source's revocations within g's window now
// exceed its MaxRevocations.
func CheckRevocations(ctx context.Context, tx Tx, source string, g Stream, now time.Time) error {
	if g.MaxRevocations <= 0 {
		return nil
	}
	n, err := tx.CountRevocations(ctx, source, now.Add(-g.Window))
	if err != nil || n <= g.MaxRevocations {
		return err
	}
	return &OverRevocations{Source: source, Why: fmt.Sprintf("%d revocations planned, more than the %d the guard allows within %s", n, g.MaxRevocations, g.Window)}
}
