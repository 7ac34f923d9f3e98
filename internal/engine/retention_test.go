package engine

import (
	"context"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

const retentionPolicy = `
systems: [{name: crm, type: test, deleteAfter: 30d}]
entitlements: [{name: crm-user, system: crm}]
birthright:
  - {name: staff, when: 'identity.kind == "human"', entitlements: [crm-user]}
`

func newRetentionFixture(t *testing.T) (*fixture, *target) {
	tg := &target{grants: map[string]bool{}}
	return newConnectorFixture(t, retentionPolicy, -1, map[string]connector.Connector{"crm": tg}), tg
}

func (f *fixture) account(t *testing.T, identityID, system string) identity.AccountStatus {
	t.Helper()
	var status identity.AccountStatus
	err := f.s.View(context.Background(), func(tx store.Tx) error {
		accounts, err := tx.ListAccounts(context.Background(), identityID)
		for _, a := range accounts {
			if a.System == system {
				status = a.Status
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return status
}

func (f *fixture) identity(t *testing.T, id string) *identity.Identity {
	t.Helper()
	var out *identity.Identity
	if err := f.s.View(context.Background(), func(tx store.Tx) error {
		var err error
		out, err = tx.GetIdentity(context.Background(), id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func human(e *identity.Event) { e.Kind = identity.Human }

// TestAccountRetention: a leaver disables the account; when deleteAfter
// has passed the account is deleted by a retention case, once; a rehire
// afterwards gets a new account.
func TestAccountRetention(t *testing.T) {
	t.Parallel()
	f, tg := newRetentionFixture(t)
	ctx := context.Background()
	join := f.submit(t, ev("1", identity.Joiner, "alice", human))
	f.submit(t, ev("2", identity.Leaver, "alice", nil))
	if got := f.account(t, join.IdentityID, "crm"); got != identity.AccountDisabled {
		t.Fatalf("account after the leaver = %s, want disabled", got)
	}
	departed := f.identity(t, join.IdentityID).UpdatedAt
	f.clock.Advance(30 * 24 * time.Hour)
	caseID, err := f.e.DeleteAccount(ctx, DeleteAccountArgs{IdentityID: join.IdentityID, System: "crm", DepartedAt: departed})
	if err != nil || caseID == "" {
		t.Fatalf("DeleteAccount = %q, %v; want a retention case", caseID, err)
	}
	if err := f.e.RunCase(ctx, caseID, false); err != nil {
		t.Fatal(err)
	}
	c := f.getCase(t, caseID)
	if c.Type != CaseRetention || c.Status != cases.Completed || len(c.Steps) != 1 || c.Steps[0].Result != "account deleted" {
		t.Fatalf("retention case = %s %s %+v", c.Type, c.Status, c.Steps)
	}
	if len(tg.deleted) != 1 || tg.deleted[0] != "alice" {
		t.Fatalf("target deletions = %v", tg.deleted)
	}
	if got := f.account(t, join.IdentityID, "crm"); got != identity.AccountDeleted {
		t.Fatalf("account row = %s, want deleted (kept as evidence)", got)
	}
	// The timer firing again (River runs jobs at least once) opens nothing.
	if again, err := f.e.DeleteAccount(ctx, DeleteAccountArgs{IdentityID: join.IdentityID, System: "crm", DepartedAt: departed}); err != nil || again != "" {
		t.Fatalf("DeleteAccount again = %q, %v; want nothing to do", again, err)
	}
	// A rehire gets an account again.
	f.submit(t, ev("3", identity.Joiner, "alice", human))
	if got := f.account(t, join.IdentityID, "crm"); got != identity.AccountActive {
		t.Fatalf("account after the rehire = %s, want active", got)
	}
}

// TestAccountRetentionAfterRehire: a person rehired before the retention
// ends keeps the account; the timer of the earlier departure deletes
// nothing, even after the person left again.
func TestAccountRetentionAfterRehire(t *testing.T) {
	t.Parallel()
	f, tg := newRetentionFixture(t)
	ctx := context.Background()
	join := f.submit(t, ev("1", identity.Joiner, "bob", human))
	f.submit(t, ev("2", identity.Leaver, "bob", nil))
	firstDeparture := f.identity(t, join.IdentityID).UpdatedAt
	f.clock.Advance(24 * time.Hour)
	f.submit(t, ev("3", identity.Joiner, "bob", human))
	f.clock.Advance(30 * 24 * time.Hour)
	if caseID, err := f.e.DeleteAccount(ctx, DeleteAccountArgs{IdentityID: join.IdentityID, System: "crm", DepartedAt: firstDeparture}); err != nil || caseID != "" {
		t.Fatalf("DeleteAccount for a rehired identity = %q, %v; want nothing", caseID, err)
	}
	f.submit(t, ev("4", identity.Leaver, "bob", nil))
	if caseID, err := f.e.DeleteAccount(ctx, DeleteAccountArgs{IdentityID: join.IdentityID, System: "crm", DepartedAt: firstDeparture}); err != nil || caseID != "" {
		t.Fatalf("the first departure's timer after a second departure = %q, %v; want nothing", caseID, err)
	}
	if len(tg.deleted) != 0 {
		t.Fatalf("deleted %v", tg.deleted)
	}
	if got := f.account(t, join.IdentityID, "crm"); got != identity.AccountDisabled {
		t.Fatalf("account = %s, want disabled (the second departure's timer is still to come)", got)
	}
}
