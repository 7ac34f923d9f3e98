package engine

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
)

// TestEventAttributesChecked: an event whose attribute does not fit the
// policy's declaration is refused naming the attribute, the type and the
// value, whether it is applied now or scheduled; nothing is stored and
// nothing revoked. A mover is checked as it leaves the identity.
func TestEventAttributesChecked(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(*testing.T) store.Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, open(t))
			ctx := context.Background()
			f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
			agent := f.submit(t, ev("2", identity.Joiner, "agent", func(e *identity.Event) {
				e.Kind, e.Owner, e.Attributes = identity.AIAgent, "alice", map[string]any{"tools": []any{"search-docs", "read-tickets"}}
			}))
			before := f.grants(t, agent.IdentityID)
			later := f.e.Now().Add(time.Hour)
			for _, tc := range []struct {
				name  string
				ev    identity.Event
				field string
				want  string
			}{
				{"a string for a list", ev("3", identity.Mover, "agent", func(e *identity.Event) { e.Attributes = map[string]any{"tools": "prod-db-write"} }),
					"attributes.tools", `the policy declares it list(string) of search-docs, read-tickets, prod-db-write; "prod-db-write" is a string`},
				{"a value outside values", ev("4", identity.Mover, "agent", func(e *identity.Event) { e.Attributes = map[string]any{"tools": []any{"search-docs", "deploy"}} }),
					"attributes.tools", `item 1, "deploy", is not one of them`},
				{"a number for a string", ev("5", identity.Mover, "alice", func(e *identity.Event) { e.Attributes = map[string]any{"department": 42.0} }),
					"attributes.department", `the policy declares it string; 42 is a number`},
				{"a joiner", ev("6", identity.Joiner, "bob", func(e *identity.Event) {
					e.Kind, e.Attributes = identity.Human, map[string]any{"department": []any{"Engineering"}}
				}), "attributes.department", `["Engineering"] is a list`},
				{"a scheduled mover", ev("7", identity.Mover, "agent", func(e *identity.Event) {
					e.Attributes, e.EffectiveAt = map[string]any{"tools": "search-docs"}, &later
				}), "attributes.tools", `"search-docs" is a string`},
				{"a scheduled joiner", ev("8", identity.Joiner, "carol", func(e *identity.Event) {
					e.Kind, e.Attributes, e.EffectiveAt = identity.Human, map[string]any{"cluster": true}, &later
				}), "attributes.cluster", `the policy declares it string; true is a boolean`},
			} {
				_, err := f.e.Submit(ctx, source, tc.ev)
				ie, ok := err.(*identity.Error)
				if !ok || ie.Code != identity.Invalid || ie.Field != tc.field || !strings.Contains(ie.Message, tc.want) {
					t.Errorf("%s: %v, want %s: …%s", tc.name, err, tc.field, tc.want)
				}
			}
			if got := f.grants(t, agent.IdentityID); !slices.Equal(got, before) {
				t.Fatalf("refused movers changed the agent's grants: %v, was %v", got, before)
			}
			err := f.s.View(ctx, func(tx store.Tx) error {
				for _, ext := range []string{"bob", "carol"} {
					if _, err := tx.GetIdentityByExternalID(ctx, "hr", ext); !store.IsNotFound(err) {
						t.Errorf("refused joiner stored %s: %v", ext, err)
					}
				}
				// The refused events left no record: corrected, the same IDs are accepted.
				_, err := tx.FindEvent(ctx, "hr", "3")
				if !store.IsNotFound(err) {
					t.Errorf("a refused event was stored: %v", err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			f.submit(t, ev("3", identity.Mover, "agent", func(e *identity.Event) { e.Attributes = map[string]any{"tools": []any{"search-docs"}} }))
			if got := f.grants(t, agent.IdentityID); !slices.Equal(got, []string{"tool:search-docs"}) {
				t.Fatalf("after a mover that fits: %v", got)
			}
			// Attributes the policy does not declare pass as before, and so
			// does a removal.
			f.submit(t, ev("9", identity.Mover, "agent", func(e *identity.Event) { e.Attributes = map[string]any{"team": 7.0, "tools": nil} }))
		})
	}
}

// reloaded returns the quickstart policy with the values of tools
// replaced (and the rules of tools it drops disabled), as an
// administrator would edit it before a reload.
func reloaded(t *testing.T, values string) *policy.Policy {
	t.Helper()
	const file = "../../examples/quickstart/policy.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(data), "values: [search-docs, read-tickets, prod-db-write]", "values: ["+values+"]", 1)
	for _, tool := range []string{"search-docs", "read-tickets", "prod-db-write"} {
		if !strings.Contains(values, tool) { // its rule goes with it
			src = strings.Replace(src, `"`+tool+`" in identity.attributes.tools`, "false", 1)
		}
	}
	pol, err := policy.Parse(file, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// TestStoredAttributesFindings: a policy change that stored identities'
// attributes no longer fit opens one attributes_invalid finding per
// identity and changes no access; a mover that gives valid values, a
// policy that admits them again, or a leaver resolves it; a mover that
// keeps the bad value is refused.
func TestStoredAttributesFindings(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(*testing.T) store.Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, open(t))
			ctx := context.Background()
			f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
			agent := func(id, ext string) *Result {
				return f.submit(t, ev(id, identity.Joiner, ext, func(e *identity.Event) {
					e.Kind, e.Owner, e.Attributes = identity.AIAgent, "alice", map[string]any{"tools": []any{"search-docs", "read-tickets"}}
				}))
			}
			a, b, c, d := agent("2", "a1"), agent("3", "a2"), agent("4", "a3"), agent("5", "a4")
			f.submit(t, ev("6", identity.Leaver, "a4", nil)) // departed: never reported
			held := f.grants(t, a.IdentityID)

			// read-tickets is no longer a tool.
			if err := f.e.SetPolicy(reloaded(t, "search-docs, prod-db-write")); err != nil {
				t.Fatal(err)
			}
			rep, err := f.e.CheckStoredAttributes(ctx)
			if err != nil || rep != (AttributeReport{Invalid: 3, Opened: 3}) {
				t.Fatalf("CheckStoredAttributes = %+v, %v", rep, err)
			}
			for _, r := range []*Result{a, b, c} {
				fs := f.findings(t, r.IdentityID, identity.FindingAttributesInvalid)
				if states(fs) != "open" || !strings.Contains(fs[0].Message, `attributes.tools: the policy declares it list(string) of search-docs, prod-db-write; item 1, "read-tickets", is not one of them`) {
					t.Fatalf("finding of %s: %+v", r.IdentityID, fs)
				}
				if got := f.grants(t, r.IdentityID); !slices.Equal(got, held) {
					t.Fatalf("the reload changed access: %v, was %v", got, held)
				}
			}
			if fs := f.findings(t, d.IdentityID, identity.FindingAttributesInvalid); len(fs) != 0 {
				t.Fatalf("a departed identity was reported: %+v", fs)
			}
			// Again: one finding per identity, not one per run.
			if rep, err := f.e.CheckStoredAttributes(ctx); err != nil || rep != (AttributeReport{Invalid: 3}) {
				t.Fatalf("second run = %+v, %v", rep, err)
			}

			// A mover that keeps the bad value is refused, naming it as held.
			_, err = f.e.Submit(ctx, source, ev("7", identity.Mover, "a1", func(e *identity.Event) { e.DisplayName = "A1" }))
			if ie, ok := err.(*identity.Error); !ok || ie.Field != "attributes.tools" || !strings.Contains(ie.Message, "the value the identity holds no longer fits the policy") {
				t.Fatalf("mover keeping the bad value: %v", err)
			}
			// One that sets valid tools is accepted and resolves the finding.
			f.submit(t, ev("8", identity.Mover, "a1", func(e *identity.Event) { e.Attributes = map[string]any{"tools": []any{"search-docs"}} }))
			if fs := f.findings(t, a.IdentityID, identity.FindingAttributesInvalid); states(fs) != "resolved" || !strings.Contains(fs[0].Resolution, "an event gave it attributes that fit") {
				t.Fatalf("after a mover that fits: %+v", fs)
			}
			// A leaver resolves it.
			f.submit(t, ev("9", identity.Leaver, "a2", nil))
			if fs := f.findings(t, b.IdentityID, identity.FindingAttributesInvalid); states(fs) != "resolved" || fs[0].Resolution != "the identity left" {
				t.Fatalf("after a leaver: %+v", fs)
			}
			// Another change: a new finding says what is wrong now.
			if err := f.e.SetPolicy(reloaded(t, "search-docs")); err != nil {
				t.Fatal(err)
			}
			if rep, err := f.e.CheckStoredAttributes(ctx); err != nil || rep != (AttributeReport{Invalid: 1, Opened: 1, Resolved: 1}) {
				t.Fatalf("after another change = %+v, %v", rep, err)
			}
			// (Both at one time on the fake clock: in either order.)
			fs := f.findings(t, c.IdentityID, identity.FindingAttributesInvalid)
			slices.SortFunc(fs, func(x, y identity.Finding) int { return strings.Compare(string(x.State), string(y.State)) })
			if states(fs) != "open,resolved" || !strings.Contains(fs[0].Message, "of search-docs;") {
				t.Fatalf("after another change: %+v", fs)
			}
			// The policy admits the values again: resolved, access untouched.
			if err := f.e.SetPolicy(reloaded(t, "search-docs, read-tickets, prod-db-write")); err != nil {
				t.Fatal(err)
			}
			if rep, err := f.e.CheckStoredAttributes(ctx); err != nil || rep != (AttributeReport{Resolved: 1}) {
				t.Fatalf("after the policy admits them = %+v, %v", rep, err)
			}
			fs = f.findings(t, c.IdentityID, identity.FindingAttributesInvalid)
			if states(fs) != "resolved,resolved" || !slices.ContainsFunc(fs, func(x identity.Finding) bool { return x.Resolution == "the policy now accepts its attributes" }) {
				t.Fatalf("after the policy admits them: %+v", fs)
			}
			if got := f.grants(t, c.IdentityID); !slices.Equal(got, held) {
				t.Fatalf("access changed: %v, was %v", got, held)
			}
		})
	}
}

// TestScheduledEventCheckedAtItsTime: a future mover that fit when it was
// submitted is checked again when it takes effect; if a reload dropped
// its value meanwhile, it is rejected and changes nothing.
func TestScheduledEventCheckedAtItsTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	agent := f.submit(t, ev("2", identity.Joiner, "agent", func(e *identity.Event) {
		e.Kind, e.Owner, e.Attributes = identity.AIAgent, "alice", map[string]any{"tools": []any{"search-docs"}}
	}))
	at := f.clock.Now().Add(time.Hour)
	res := f.submit(t, ev("3", identity.Mover, "agent", func(e *identity.Event) {
		e.Attributes, e.EffectiveAt = map[string]any{"tools": []any{"read-tickets"}}, &at
	}))
	if res.Status != store.EventScheduled {
		t.Fatalf("future mover = %+v", res)
	}
	if err := f.e.SetPolicy(reloaded(t, "search-docs, prod-db-write")); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if err := f.e.runEffective(ctx, res.EventID); err != nil {
		t.Fatal(err)
	}
	err := f.s.View(ctx, func(tx store.Tx) error {
		rec, err := tx.GetEvent(ctx, res.EventID)
		if err != nil {
			return err
		}
		if rec.Status != store.EventRejected || !strings.HasPrefix(rec.Error, `attributes.tools: the policy declares it list(string) of search-docs, prod-db-write; item 0, "read-tickets"`) {
			t.Errorf("event at its time = %s %q, want rejected naming tools", rec.Status, rec.Error)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.grants(t, agent.IdentityID); !slices.Equal(got, []string{"tool:search-docs"}) {
		t.Fatalf("grants after the rejection: %v", got)
	}
}
