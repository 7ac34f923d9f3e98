package engine

import (
	"context"
	"errors"
	"testing"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// TestNoSystemsOpensNothing: an engine made with NoSystems opens no
// connector (a system whose secret cannot be resolved, even one that says
// adopt, does not stop it), serves the read models and tokens, and refuses
// to accept an event or run a case, with nothing stored.
func TestNoSystemsOpensNothing(t *testing.T) {
	t.Parallel()
	opened := 0
	f := newPolicyFixture(t, `
systems: [{name: vault, type: builtin}, {name: crm, type: test, adopt: true}]
entitlements: [{name: wiki, system: vault}, {name: crm-user, system: crm}]
birthright: [{name: all, when: 'true', entitlements: [wiki, crm-user]}]
`, func(c *Config) {
		c.NoSystems = true
		c.Open = func(context.Context, connector.Config) (connector.Connector, error) {
			opened++
			return nil, errors.New("environment variable CRM_URL is not set")
		}
	})
	if opened != 0 {
		t.Fatalf("NoSystems opened %d connectors", opened)
	}
	ctx := context.Background()
	_, err := f.e.Submit(ctx, source, ev("1", identity.Joiner, "alice", human))
	if identity.ErrorCode(err) != identity.Unavailable {
		t.Fatalf("Submit on an engine that calls no system = %v, want unavailable", err)
	}
	if _, _, err := f.e.Preview(ctx, source, ev("1", identity.Joiner, "alice", human)); identity.ErrorCode(err) != identity.Unavailable {
		t.Fatalf("Preview = %v, want unavailable", err)
	}
	if err := f.e.RunCase(ctx, "case_x", false); identity.ErrorCode(err) != identity.Unavailable {
		t.Fatalf("RunCase = %v, want unavailable", err)
	}
	ids, err := f.e.Identities(ctx, System, store.IdentityFilter{Entitlement: "crm-user"})
	if err != nil || len(ids) != 0 {
		t.Fatalf("Identities = %v, %v; want none, nothing accepted", ids, err)
	}
	if _, _, err := f.e.IssueToken(ctx, System, TokenSpec{Role: RoleAuditor}); err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	// The same policy in an engine that calls systems opens crm, and
	// fails as the secret does.
	opened = 0
	cfg := Config{Store: f.s, Policy: f.e.Policy(), Sealer: f.e.sealer, Open: func(context.Context, connector.Config) (connector.Connector, error) {
		opened++
		return nil, errors.New("environment variable CRM_URL is not set")
	}}
	if _, err := New(cfg); err == nil || opened != 1 {
		t.Fatalf("New calling systems = %v after %d opens, want the secret's error", err, opened)
	}
}
