package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// at returns an edit that dates an event d after now on f's clock.
func (f *fixture) at(d time.Duration) func(*identity.Event) {
	return func(e *identity.Event) {
		t := f.clock.Now().Add(d)
		e.EffectiveAt = &t
	}
}

func (f *fixture) event(t *testing.T, id string) *store.Event {
	t.Helper()
	var out *store.Event
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		var err error
		out, err = tx.GetEvent(context.Background(), id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// fire advances the clock to the event's time and runs its timer, as its
// River job would.
func (f *fixture) fire(t *testing.T, eventID string) {
	t.Helper()
	ev := f.event(t, eventID)
	if d := ev.EffectiveAt.Sub(f.clock.Now()); d > 0 {
		f.clock.Advance(d)
	}
	if err := f.e.runEffective(context.Background(), eventID); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) scheduled(t *testing.T, identityID string) []string {
	t.Helper()
	var out []string
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		evs, err := tx.ListScheduled(context.Background(), identityID, 100)
		for _, e := range evs {
			out = append(out, string(e.Event.Type)+"@"+e.EffectiveAt.Sub(time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)).String())
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestScheduleSupersede: what a source says last about an identity is what
// happens. On both backends: a contract extended (a new end date) moves the
// leaver; a hire cancelled before its start never starts; a new start date
// replaces the old; a rehire is not offboarded by its earlier employment's
// end date; a scheduled mover survives a later mover.
func TestScheduleSupersede(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(*testing.T) store.Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, open(t))
			human := func(e *identity.Event) {
				e.Kind, e.Attributes = identity.Human, map[string]any{"department": "Engineering"}
			}

			t.Run("contract extended", func(t *testing.T) {
				c := f.submit(t, ev("c-join", identity.Joiner, "contractor", human))
				first, err := f.e.Submit(context.Background(), source, ev("c-end-1", identity.Leaver, "contractor", f.at(48*time.Hour)))
				if err != nil {
					t.Fatal(err)
				}
				second, err := f.e.Submit(context.Background(), source, ev("c-end-2", identity.Leaver, "contractor", f.at(96*time.Hour)))
				if err != nil {
					t.Fatal(err)
				}
				old := f.event(t, first.EventID)
				if old.Status != store.EventSuperseded || !strings.Contains(old.Error, second.EventID) || !strings.Contains(old.Error, "a later leaver replaces it") {
					t.Fatalf("the first end date: %s (%s), want superseded by %s", old.Status, old.Error, second.EventID)
				}
				if got := strings.Join(f.scheduled(t, c.IdentityID), " "); got != "leaver@96h0m0s" {
					t.Fatalf("scheduled = %s, want the new end date only", got)
				}
				f.fire(t, first.EventID)
				if st := f.identity(t, c.IdentityID).State; st != identity.Active {
					t.Fatalf("at the old end date the contractor is %s, want active", st)
				}
				f.fire(t, second.EventID)
				if st := f.identity(t, c.IdentityID).State; st != identity.Departed {
					t.Fatalf("at the new end date the contractor is %s, want departed", st)
				}
				if n := auditCount(t, f.s, c.IdentityID, "event.superseded"); n != 1 {
					t.Fatalf("event.superseded records = %d, want 1", n)
				}
			})

			t.Run("hire cancelled", func(t *testing.T) {
				hire, err := f.e.Submit(context.Background(), source, ev("h-join", identity.Joiner, "newhire", func(e *identity.Event) { human(e); f.at(48 * time.Hour)(e) }))
				if err != nil {
					t.Fatal(err)
				}
				f.submit(t, ev("h-cancel", identity.Leaver, "newhire", nil))
				if st := f.event(t, hire.EventID).Status; st != store.EventSuperseded {
					t.Fatalf("the cancelled hire's joiner is %s, want superseded", st)
				}
				f.fire(t, hire.EventID)
				if st := f.identity(t, hire.IdentityID).State; st != identity.Departed {
					t.Fatalf("after the old start date the cancelled hire is %s", st)
				}
				if got := f.grants(t, hire.IdentityID); len(got) != 0 {
					t.Fatalf("the cancelled hire holds %v", got)
				}
			})

			t.Run("new start date", func(t *testing.T) {
				first, err := f.e.Submit(context.Background(), source, ev("s-join-1", identity.Joiner, "starter", func(e *identity.Event) { human(e); f.at(48 * time.Hour)(e) }))
				if err != nil {
					t.Fatal(err)
				}
				second, err := f.e.Submit(context.Background(), source, ev("s-join-2", identity.Joiner, "starter", func(e *identity.Event) { human(e); f.at(96 * time.Hour)(e) }))
				if err != nil {
					t.Fatalf("a new start date for a pending hire: %v", err)
				}
				f.fire(t, first.EventID)
				if st := f.identity(t, first.IdentityID).State; st != identity.Pending {
					t.Fatalf("at the old start date the hire is %s, want pending", st)
				}
				f.fire(t, second.EventID)
				if st := f.identity(t, first.IdentityID).State; st != identity.Active {
					t.Fatalf("at the new start date the hire is %s, want active", st)
				}
			})

			t.Run("rehire", func(t *testing.T) {
				r := f.submit(t, ev("r-join", identity.Joiner, "returner", human))
				end, err := f.e.Submit(context.Background(), source, ev("r-end", identity.Leaver, "returner", f.at(96*time.Hour)))
				if err != nil {
					t.Fatal(err)
				}
				f.submit(t, ev("r-quit", identity.Leaver, "returner", nil))
				f.submit(t, ev("r-rehire", identity.Joiner, "returner", human))
				f.fire(t, end.EventID)
				if st := f.identity(t, r.IdentityID).State; st != identity.Active {
					t.Fatalf("the rehire after the earlier end date is %s, want active", st)
				}
			})

			t.Run("movers add up", func(t *testing.T) {
				m := f.submit(t, ev("m-join", identity.Joiner, "mover", human))
				if _, err := f.e.Submit(context.Background(), source, ev("m-1", identity.Mover, "mover", func(e *identity.Event) {
					e.Attributes = map[string]any{"department": "Sales"}
					f.at(48 * time.Hour)(e)
				})); err != nil {
					t.Fatal(err)
				}
				f.submit(t, ev("m-2", identity.Mover, "mover", func(e *identity.Event) { e.Attributes = map[string]any{"team": "x"} }))
				if got := len(f.scheduled(t, m.IdentityID)); got != 1 {
					t.Fatalf("scheduled movers after another mover = %d, want 1", got)
				}
			})
		})
	}
}
