// Package connectortest is the conformance suite every connector passes
// against its real server: idempotent operations, disable that cuts live
// sessions, rotation, listing what the system really holds, and names
// from sources that try to break out of their quoting.
package connectortest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/poll"
	"github.com/jml-dev/jml/internal/vault"
)

// Harness is one connector and what the suite needs to check it against
// its server with a plain client of that server.
type Harness struct {
	// Conn is the connector under test; it must implement
	// connector.CredentialSetter, and connector.Lister unless List is set.
	Conn connector.Connector
	// List reads what the system holds, for connectors that cannot list
	// (webhook): the receiving system's own view. Nil means Conn's
	// ListAccounts.
	List func(ctx context.Context) ([]connector.AccountState, error)
	// Entitlements are two entitlement names Conn is configured with.
	Entitlements [2]string
	// Prefix starts every account name the suite makes, so that runs
	// sharing a server do not meet.
	Prefix string
	// Login authenticates to the system as the account with secret, with
	// a plain client, and returns the live session. Nil for systems jml
	// provisions but nobody logs in to with a secret jml set (a SCIM app
	// behind single sign-on, a webhook receiver): the suite then checks
	// disable and rotation by the system's state and says so.
	Login func(ctx context.Context, name, secret string) (Session, error)
	// CreateForeign makes an account directly in the system, as an
	// administrator would without jml, holding Entitlements[0].
	CreateForeign func(ctx context.Context, name string) error
	// Hostile are names the system must either store verbatim or refuse
	// with an error; nil means DefaultHostile.
	Hostile []string
	// ServerRefuses reports the names the server under test refuses
	// although the connector's own rule lets them through (a limit of the
	// server's, not a quoting the connector gets wrong); for those alone
	// the suite accepts any error. Nil means none.
	ServerRefuses func(name string) bool
}

// Session is a live authenticated connection to the system.
type Session interface {
	// Check runs a trivial command; it fails once the session was cut.
	Check(ctx context.Context) error
	Close()
}

// DefaultHostile are names that break naive quoting in SQL, LDAP DNs and
// filters, and command protocols.
var DefaultHostile = []string{
	`o'brien`,
	`x"; DROP ROLE victim; --`,
	`a,b=c+d`,
	`star*`,
	`(cn=*)`,
	`semi;colon`,
	`back\slash`,
	"line\nbreak",
	`Jürgen-Ωmega`,
	` lead`,
	strings.Repeat("l", 300),
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	setter, ok := h.Conn.(connector.CredentialSetter)
	if !ok {
		t.Fatal("connector does not implement CredentialSetter")
	}
	list := h.List
	if list == nil {
		lister, ok := h.Conn.(connector.Lister)
		if !ok {
			t.Fatal("connector does not implement Lister and the harness gives no List")
		}
		list = lister.ListAccounts
	}
	s := &suite{h: h, set: setter, list: list}
	t.Cleanup(s.cleanup)
	t.Run("EnsureTwice", s.ensureTwice)
	t.Run("GrantTwice", s.grantTwice)
	t.Run("AlreadyDone", s.alreadyDone)
	t.Run("ListIsExact", s.listIsExact)
	if h.Login == nil {
		t.Log("DisableCutsSessions, Rotate: not applicable, the system has no login to test; Disable checks the listed state")
		t.Run("Disable", s.disable)
	} else {
		t.Run("DisableCutsSessions", s.disableCutsSessions)
		t.Run("Rotate", s.rotate)
		if ov, ok := h.Conn.(connector.OverlapRotator); ok && ov.RotationOverlap() > 0 {
			t.Run("RotateWithOverlap", func(t *testing.T) { s.rotateWithOverlap(t, ov) })
		} else {
			t.Log("RotateWithOverlap: not applicable, the connector replaces secrets at once")
		}
	}
	if ra, ok := h.Conn.(connector.RevokeAller); ok {
		t.Run("RevokeAll", func(t *testing.T) { s.revokeAll(t, ra) })
	} else {
		t.Log("RevokeAll: not implemented; leavers make a call per step")
	}
	t.Run("HostileNames", s.hostileNames)
}

// revokeAll: one call leaves the account disabled, with no entitlement,
// its session cut and its secret refused; again, or on a missing account,
// it succeeds.
func (s *suite) revokeAll(t *testing.T, ra connector.RevokeAller) {
	ctx := ctxT(t)
	a := s.account("revokeall")
	must(t, "EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	must(t, "Grant", s.h.Conn.Grant(ctx, s.op(), a, s.h.Entitlements[0]))
	must(t, "Grant", s.h.Conn.Grant(ctx, s.op(), a, s.h.Entitlements[1]))
	var sess Session
	secret := "Pw-" + strings.Repeat("ra", 16)
	if s.h.Login != nil {
		must(t, "SetCredential", s.set.SetCredential(ctx, s.op(), a, connector.Credential{ID: "cred_ra", Type: "password", Secret: secret}))
		sess = s.login(t, ctx, a.Name, secret)
		defer sess.Close()
	}
	must(t, "RevokeAll", ra.RevokeAll(ctx, s.op(), a))
	st, n := s.state(t, ctx, a.Name)
	if n != 1 || !st.Disabled || len(st.Entitlements) != 0 {
		t.Fatalf("after RevokeAll: %d listed, %+v; want disabled with no entitlements", n, st)
	}
	if sess != nil {
		poll.Until(t, 3*time.Second, 20*time.Millisecond, func() (bool, string) {
			return sess.Check(ctx) != nil, "the live session still works after RevokeAll"
		})
		s.refused(t, ctx, a.Name, secret, "after RevokeAll")
	}
	must(t, "RevokeAll again", ra.RevokeAll(ctx, s.op(), a))
	must(t, "RevokeAll of a missing account", ra.RevokeAll(ctx, s.op(), s.account("never-revoked")))
}

type suite struct {
	h       Harness
	set     connector.CredentialSetter
	list    func(context.Context) ([]connector.AccountState, error)
	created []string
	ops     int
}

// op returns a new step identity for each call, as the engine gives each
// step its own: receivers that deduplicate on the key (webhooks) must not
// mistake two operations for one.
func (s *suite) op() connector.Op {
	s.ops++
	return connector.Op{IdempotencyKey: fmt.Sprintf("case_test/%d", s.ops), CaseID: "case_test"}
}

func (s *suite) account(name string) connector.Account {
	full := s.h.Prefix + name
	if !slices.Contains(s.created, full) {
		s.created = append(s.created, full)
	}
	return connector.Account{IdentityID: "idn_" + name, Name: full}
}

func (s *suite) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range s.created {
		s.h.Conn.DeleteAccount(ctx, s.op(), connector.Account{Name: name})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// state returns the listed state of the account named name.
func (s *suite) state(t *testing.T, ctx context.Context, name string) (connector.AccountState, int) {
	t.Helper()
	all, err := s.list(ctx)
	if err != nil {
		t.Fatalf("ListAccounts: %v", err)
	}
	var found connector.AccountState
	n := 0
	for _, a := range all {
		if a.Name == name {
			found = a
			n++
		}
	}
	return found, n
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (s *suite) ensureTwice(t *testing.T) {
	ctx := ctxT(t)
	a := s.account("ensure")
	must(t, "first EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	must(t, "second EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	st, n := s.state(t, ctx, a.Name)
	if n != 1 || st.Disabled {
		t.Fatalf("after ensuring twice: %d accounts named %q, state %+v; want one, enabled", n, a.Name, st)
	}
}

func (s *suite) grantTwice(t *testing.T) {
	ctx := ctxT(t)
	a := s.account("grant")
	e0 := s.h.Entitlements[0]
	must(t, "EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	must(t, "first Grant", s.h.Conn.Grant(ctx, s.op(), a, e0))
	must(t, "second Grant", s.h.Conn.Grant(ctx, s.op(), a, e0))
	if st, _ := s.state(t, ctx, a.Name); !slices.Equal(st.Entitlements, []string{e0}) {
		t.Fatalf("after granting %s twice the account holds %v", e0, st.Entitlements)
	}
	must(t, "Revoke", s.h.Conn.Revoke(ctx, s.op(), a, e0))
	if st, _ := s.state(t, ctx, a.Name); len(st.Entitlements) != 0 {
		t.Fatalf("after revoking %s the account holds %v", e0, st.Entitlements)
	}
}

func (s *suite) alreadyDone(t *testing.T) {
	ctx := ctxT(t)
	a := s.account("done")
	missing := s.account("never-created")
	must(t, "EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	must(t, "Revoke of an entitlement never granted", s.h.Conn.Revoke(ctx, s.op(), a, s.h.Entitlements[1]))
	must(t, "Revoke on a missing account", s.h.Conn.Revoke(ctx, s.op(), missing, s.h.Entitlements[1]))
	must(t, "DisableAccount of a missing account", s.h.Conn.DisableAccount(ctx, s.op(), missing))
	must(t, "DeleteAccount of a missing account", s.h.Conn.DeleteAccount(ctx, s.op(), missing))
	if s.h.Login != nil {
		must(t, "RevokeCredential of a missing account", s.set.RevokeCredential(ctx, s.op(), missing, "cred_x"))
	}
	must(t, "DeleteAccount", s.h.Conn.DeleteAccount(ctx, s.op(), a))
	must(t, "DeleteAccount again", s.h.Conn.DeleteAccount(ctx, s.op(), a))
	if _, n := s.state(t, ctx, a.Name); n != 0 {
		t.Fatalf("deleted account %q is still listed", a.Name)
	}
}

func (s *suite) login(t *testing.T, ctx context.Context, name, secret string) Session {
	t.Helper()
	sess, err := s.h.Login(ctx, name, secret)
	if err != nil {
		t.Fatalf("login as %q: %v", name, err)
	}
	if err := sess.Check(ctx); err != nil {
		sess.Close()
		t.Fatalf("session of %q: %v", name, err)
	}
	return sess
}

func (s *suite) refused(t *testing.T, ctx context.Context, name, secret, when string) {
	t.Helper()
	sess, err := s.h.Login(ctx, name, secret)
	if err == nil {
		err = sess.Check(ctx)
		sess.Close()
	}
	if err == nil {
		t.Fatalf("%s: login as %q still works", when, name)
	}
}

func (s *suite) disableCutsSessions(t *testing.T) {
	ctx := ctxT(t)
	a := s.account("disable")
	must(t, "EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	must(t, "Grant", s.h.Conn.Grant(ctx, s.op(), a, s.h.Entitlements[0]))
	secret := "Pw-" + strings.Repeat("d1", 16)
	must(t, "SetCredential", s.set.SetCredential(ctx, s.op(), a, connector.Credential{ID: "cred_d", Type: "password", Secret: secret, ExpiresAt: time.Now().Add(time.Hour)}))
	sess := s.login(t, ctx, a.Name, secret)
	defer sess.Close()
	must(t, "DisableAccount", s.h.Conn.DisableAccount(ctx, s.op(), a))
	// The session must be cut by the disable itself; a short grace covers
	// the server delivering it.
	poll.Until(t, 3*time.Second, 20*time.Millisecond, func() (bool, string) {
		return sess.Check(ctx) != nil, "the live session still works after DisableAccount"
	})
	s.refused(t, ctx, a.Name, secret, "after DisableAccount")
	st, n := s.state(t, ctx, a.Name)
	if n != 1 || !st.Disabled {
		t.Fatalf("after DisableAccount: %d listed, state %+v; want one, disabled", n, st)
	}
	must(t, "DisableAccount again", s.h.Conn.DisableAccount(ctx, s.op(), a))
	// Enabling again takes a new credential (a disable may have
	// invalidated the old one).
	must(t, "EnsureAccount after disable", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	secret2 := "Pw-" + strings.Repeat("d2", 16)
	must(t, "SetCredential", s.set.SetCredential(ctx, s.op(), a, connector.Credential{ID: "cred_d2", Type: "password", Secret: secret2}))
	s.login(t, ctx, a.Name, secret2).Close()
	if st, _ := s.state(t, ctx, a.Name); st.Disabled {
		t.Fatalf("after EnsureAccount the account is still disabled: %+v", st)
	}
}

// disable, for systems without a login: the account is listed disabled,
// keeps being so when disabled again, and is enabled by EnsureAccount.
func (s *suite) disable(t *testing.T) {
	ctx := ctxT(t)
	a := s.account("disable")
	must(t, "EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	must(t, "Grant", s.h.Conn.Grant(ctx, s.op(), a, s.h.Entitlements[0]))
	must(t, "DisableAccount", s.h.Conn.DisableAccount(ctx, s.op(), a))
	must(t, "DisableAccount again", s.h.Conn.DisableAccount(ctx, s.op(), a))
	if st, n := s.state(t, ctx, a.Name); n != 1 || !st.Disabled {
		t.Fatalf("after DisableAccount: %d listed, state %+v; want one, disabled", n, st)
	}
	must(t, "EnsureAccount after disable", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	if st, _ := s.state(t, ctx, a.Name); st.Disabled {
		t.Fatalf("after EnsureAccount the account is still disabled: %+v", st)
	}
}

func (s *suite) rotate(t *testing.T) {
	ctx := ctxT(t)
	a := s.account("rotate")
	must(t, "EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	old, cur := "Pw-"+strings.Repeat("r1", 16), "Pw-"+strings.Repeat("r2", 16)
	must(t, "SetCredential", s.set.SetCredential(ctx, s.op(), a, connector.Credential{ID: "cred_1", Type: "password", Secret: old}))
	s.login(t, ctx, a.Name, old).Close()
	must(t, "SetCredential (rotate)", s.set.SetCredential(ctx, s.op(), a, connector.Credential{ID: "cred_2", Type: "password", Secret: cur}))
	must(t, "SetCredential (rotate, retried)", s.set.SetCredential(ctx, s.op(), a, connector.Credential{ID: "cred_2", Type: "password", Secret: cur}))
	s.refused(t, ctx, a.Name, old, "after rotation, the old secret")
	s.login(t, ctx, a.Name, cur).Close()
	must(t, "RevokeCredential", s.set.RevokeCredential(ctx, s.op(), a, "cred_2"))
	s.refused(t, ctx, a.Name, cur, "after RevokeCredential")
	must(t, "RevokeCredential again", s.set.RevokeCredential(ctx, s.op(), a, "cred_2"))
}

// rotateWithOverlap: during the overlap both secrets work; retiring keeps
// only the new one.
func (s *suite) rotateWithOverlap(t *testing.T, ov connector.OverlapRotator) {
	ctx := ctxT(t)
	a := s.account("overlap")
	must(t, "EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	old, cur := "Pw-"+strings.Repeat("o1", 16), "Pw-"+strings.Repeat("o2", 16)
	must(t, "SetCredential", s.set.SetCredential(ctx, s.op(), a, connector.Credential{ID: "cred_1", Type: "password", Secret: old}))
	must(t, "AddCredential", ov.AddCredential(ctx, s.op(), a, connector.Credential{ID: "cred_2", Type: "password", Secret: cur}))
	s.login(t, ctx, a.Name, old).Close()
	s.login(t, ctx, a.Name, cur).Close()
	must(t, "RetireCredentials", ov.RetireCredentials(ctx, s.op(), a, vault.Fingerprint(cur)))
	must(t, "RetireCredentials again", ov.RetireCredentials(ctx, s.op(), a, vault.Fingerprint(cur)))
	s.refused(t, ctx, a.Name, old, "after the overlap, the old secret")
	s.login(t, ctx, a.Name, cur).Close()
}

func (s *suite) listIsExact(t *testing.T) {
	ctx := ctxT(t)
	e0, e1 := s.h.Entitlements[0], s.h.Entitlements[1]
	foreign := s.h.Prefix + "foreign"
	s.created = append(s.created, foreign)
	must(t, "CreateForeign", s.h.CreateForeign(ctx, foreign))
	a := s.account("listed")
	must(t, "EnsureAccount", s.h.Conn.EnsureAccount(ctx, s.op(), a))
	must(t, "Grant", s.h.Conn.Grant(ctx, s.op(), a, e0))
	must(t, "Grant", s.h.Conn.Grant(ctx, s.op(), a, e1))
	want := []string{e0, e1}
	slices.Sort(want)
	all, err := s.list(ctx)
	must(t, "ListAccounts", err)
	got := map[string]connector.AccountState{}
	for _, st := range all {
		if _, dup := got[st.Name]; dup {
			t.Errorf("account %q listed twice", st.Name)
		}
		got[st.Name] = st
	}
	if st, ok := got[foreign]; !ok || st.Disabled || !slices.Equal(st.Entitlements, []string{e0}) {
		t.Errorf("account made outside jml: listed %v, state %+v; want enabled holding [%s]", ok, st, e0)
	}
	if st, ok := got[a.Name]; !ok || !slices.Equal(st.Entitlements, want) {
		t.Errorf("account %q: listed %v, state %+v; want %v", a.Name, ok, st, want)
	}
	for name, st := range got {
		if !slices.IsSorted(st.Entitlements) || !slices.IsSorted(st.Other) {
			t.Errorf("account %q: entitlements %v / other %v not sorted", name, st.Entitlements, st.Other)
		}
	}
}

func (s *suite) hostileNames(t *testing.T) {
	hostile := s.h.Hostile
	if hostile == nil {
		hostile = DefaultHostile
	}
	for i, name := range hostile {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ctx := ctxT(t)
			a := s.account(name)
			checker, declares := s.h.Conn.(connector.NameChecker)
			if err := s.h.Conn.EnsureAccount(ctx, s.op(), a); err != nil {
				// A refusal is the connector's own rule, said before the
				// system is called: a coded, permanent error (a step that
				// cannot succeed is not retried) and, where the connector
				// declares its rule, one CheckName gives too (the engine
				// refuses such an event up front). Any other error is a
				// name the connector should have accepted: a quoting that
				// broke, or a rule that does not say what it refuses.
				switch {
				case s.h.ServerRefuses != nil && s.h.ServerRefuses(a.Name):
					t.Logf("refused %q, as the harness says the server does: %v", a.Name, err)
				case !connector.Permanent(err):
					t.Errorf("EnsureAccount refused %q with an error that is not the connector's own name rule (not a permanent coded error): %v", a.Name, err)
				case declares && checker.CheckName(a.Name) == nil:
					t.Errorf("EnsureAccount refused %q (%v) but CheckName accepts it", a.Name, err)
				default:
					t.Logf("refused %q: %v", a.Name, err)
				}
				// Refused names must stay refused for every operation, and
				// the operations that accept missing accounts still do.
				if err := s.h.Conn.Grant(ctx, s.op(), a, s.h.Entitlements[0]); err == nil {
					t.Errorf("EnsureAccount refused %q but Grant accepted it", a.Name)
				}
				return
			}
			if declares {
				if err := checker.CheckName(a.Name); err != nil {
					t.Errorf("EnsureAccount accepted %q but CheckName refuses it: %v", a.Name, err)
				}
			}
			st, n := s.state(t, ctx, a.Name)
			if n != 1 {
				t.Fatalf("%q accepted but listed %d times (stored under another name?)", a.Name, n)
			}
			must(t, "Grant", s.h.Conn.Grant(ctx, s.op(), a, s.h.Entitlements[0]))
			if s.h.Login != nil {
				secret := "Pw-" + strings.Repeat("h3", 16)
				must(t, "SetCredential", s.set.SetCredential(ctx, s.op(), a, connector.Credential{ID: "cred_h", Type: "password", Secret: secret}))
				s.login(t, ctx, a.Name, secret).Close()
			}
			must(t, "DisableAccount", s.h.Conn.DisableAccount(ctx, s.op(), a))
			if st, _ = s.state(t, ctx, a.Name); !st.Disabled {
				t.Fatalf("%q not disabled: %+v", a.Name, st)
			}
			must(t, "DeleteAccount", s.h.Conn.DeleteAccount(ctx, s.op(), a))
			if _, n := s.state(t, ctx, a.Name); n != 0 {
				t.Fatalf("%q still listed after DeleteAccount", a.Name)
			}
		})
	}
	// Nothing the hostile names tried reached anyone else: the account made
	// outside jml is intact.
	ctx := ctxT(t)
	if st, n := s.state(t, ctx, s.h.Prefix+"foreign"); n != 1 || st.Disabled {
		t.Fatalf("after the hostile names, the foreign account is %d listed, %+v", n, st)
	}
}
