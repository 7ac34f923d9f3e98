package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/clock"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/poll"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/vault"
)

// target is an in-memory target system for engine tests: it records what
// it was asked to do and fails while down is set. (Connectors to real
// systems are tested against real servers in their own packages.)
type target struct {
	mu     sync.Mutex
	down   error
	grants map[string]bool
	calls  int
	gate   chan struct{} // when set, calls wait until it is closed
	// deleted names the accounts DeleteAccount was called for.
	deleted []string
}

func (t *target) do(f func()) error {
	if t.gate != nil {
		<-t.gate
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if t.down != nil {
		return t.down
	}
	f()
	return nil
}

func (t *target) EnsureAccount(context.Context, connector.Op, connector.Account) error {
	return t.do(func() {})
}
func (t *target) DisableAccount(context.Context, connector.Op, connector.Account) error {
	return t.do(func() {})
}
func (t *target) DeleteAccount(_ context.Context, _ connector.Op, a connector.Account) error {
	return t.do(func() {
		t.deleted = append(t.deleted, a.Name)
		for k := range t.grants {
			if strings.HasPrefix(k, a.Name+"/") {
				delete(t.grants, k)
			}
		}
	})
}
func (t *target) Grant(_ context.Context, _ connector.Op, a connector.Account, e string) error {
	return t.do(func() { t.grants[a.Name+"/"+e] = true })
}
func (t *target) Revoke(_ context.Context, _ connector.Op, a connector.Account, e string) error {
	return t.do(func() { delete(t.grants, a.Name+"/"+e) })
}

const targetPolicy = `
systems: [{name: vault, type: builtin}, {name: crm, type: test}]
entitlements: [{name: crm-user, system: crm}, {name: wiki, system: vault}]
birthright:
  - {name: staff, when: 'identity.kind == "human"', entitlements: [crm-user, wiki]}
`

// newTargetFixture drives cases by calling RunCase itself, so the fast
// path is off; TestFastPath covers it.
func newTargetFixture(t *testing.T) (*fixture, *target) {
	return newTargetFixtureGrace(t, -1)
}

func newTargetFixtureGrace(t *testing.T, grace time.Duration) (*fixture, *target) {
	tg := &target{grants: map[string]bool{}}
	return newConnectorFixture(t, targetPolicy, grace, map[string]connector.Connector{"crm": tg}), tg
}

// newConnectorFixture is an engine on SQLite with policyYAML and the given
// connectors, and a fast path of grace (negative: off).
func newConnectorFixture(t *testing.T, policyYAML string, grace time.Duration, conns map[string]connector.Connector) *fixture {
	t.Helper()
	return newPolicyFixture(t, policyYAML, func(c *Config) { c.Connectors, c.FastPathGrace = conns, grace })
}

// newPolicyFixture is an engine on SQLite with policyYAML, a test clock
// and key, and whatever else configure sets.
func newPolicyFixture(t *testing.T, policyYAML string, configure func(*Config)) *fixture {
	t.Helper()
	pol, err := policy.Parse("test.yaml", []byte(policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := vault.NewSealer(bytes.Repeat([]byte{1}, 32))
	f := &fixture{s: openSQLite(t), clock: clock.NewFake(time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC))}
	cfg := Config{Store: f.s, Policy: pol, Sealer: sealer, Clock: f.clock, Rand: rand.Reader}
	if configure != nil {
		configure(&cfg)
	}
	if f.e, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTargetDown: a step on a system that is down keeps the case running
// with the reason, retries, fails for good on the last attempt, and a new
// case completes once the system is back.
func TestTargetDown(t *testing.T) {
	t.Parallel()
	f, tg := newTargetFixture(t)
	ctx := context.Background()
	tg.down = errors.New("connection refused")
	res, err := f.e.Submit(ctx, source, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	if err != nil {
		t.Fatal(err)
	}
	// The built-in step applied at once; the CRM step waits for the job.
	if err := f.e.RunCase(ctx, res.CaseID, false); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("RunCase with the target down = %v, want its error (River retries)", err)
	}
	c := f.getCase(t, res.CaseID)
	if c.Status != cases.Running || c.Reason != "waiting on crm: connection refused (attempt 1)" {
		t.Fatalf("case = %s %q, want running and waiting on crm", c.Status, c.Reason)
	}
	if got := strings.Join(f.grants(t, res.IdentityID), ","); got != "wiki" {
		t.Fatalf("grants while crm is down = %q, want only wiki", got)
	}
	// The last attempt fails the case for good; it never reports done.
	if err := f.e.RunCase(ctx, res.CaseID, true); err != nil {
		t.Fatalf("last attempt = %v, want nil (the failure is recorded)", err)
	}
	c = f.getCase(t, res.CaseID)
	if c.Status != cases.Failed || !strings.Contains(c.Reason, "connection refused") {
		t.Fatalf("case after the last attempt = %s %q", c.Status, c.Reason)
	}
	if n := f.e.metrics.CasesFailed(); n != 1 {
		t.Fatalf("jml_cases_failed_total = %v, want 1", n)
	}
	var failed cases.Step
	for _, s := range c.Steps {
		if s.Status == cases.StepFailed {
			failed = s
		}
	}
	if failed.Attempts != 2 || failed.LastError != "connection refused" {
		t.Fatalf("failed step = %+v", failed)
	}

	// Back up: a mover re-plans the missing access and completes.
	tg.down = nil
	res2, err := f.e.Submit(ctx, source, ev("2", identity.Mover, "alice", func(e *identity.Event) { e.Attributes = map[string]any{"x": "y"} }))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.RunCase(ctx, res2.CaseID, false); err != nil {
		t.Fatal(err)
	}
	if c := f.getCase(t, res2.CaseID); c.Status != cases.Completed {
		t.Fatalf("case after recovery = %s %q", c.Status, c.Reason)
	}
	if !tg.grants["alice/crm-user"] {
		t.Fatal("crm grant missing after recovery")
	}
	// A retry of a done step calls nothing: RunCase on a completed case is
	// a no-op.
	calls := tg.calls
	if err := f.e.RunCase(ctx, res2.CaseID, false); err != nil || tg.calls != calls {
		t.Fatalf("rerun of a completed case called the target %d times (err %v)", tg.calls-calls, err)
	}
}

func TestSuspendResume(t *testing.T) {
	t.Parallel()
	f := newFixture(t, openSQLite(t))
	ctx := context.Background()
	res := f.submit(t, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	key, _, err := f.e.Reveal(ctx, admin, f.activeCreds(t, res.IdentityID)[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	f.submit(t, ev("2", identity.Suspend, "alice", nil))
	if in, _ := f.e.Introspect(ctx, key); in.Active {
		t.Fatal("key of a suspended identity introspects active")
	}
	f.submit(t, ev("3", identity.Resume, "alice", nil))
	if in, _ := f.e.Introspect(ctx, key); !in.Active {
		t.Fatal("key inactive after resume")
	}
	f.clock.Advance(31 * 24 * time.Hour) // past the personal token's 30-day TTL
	if in, _ := f.e.Introspect(ctx, key); in.Active {
		t.Fatal("expired key introspects active")
	}
}

// TestRetryFailedCase: an operator retries a case that gave up, once the
// target is back.
func TestRetryFailedCase(t *testing.T) {
	t.Parallel()
	f, tg := newTargetFixture(t)
	ctx := context.Background()
	tg.down = errors.New("timeout")
	res, err := f.e.Submit(ctx, source, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.RunCase(ctx, res.CaseID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.Retry(ctx, admin, res.IdentityID); identity.ErrorCode(err) != identity.NotFound {
		t.Fatalf("Retry of an unknown case = %v", err)
	}
	tg.down = nil
	c, err := f.e.Retry(ctx, admin, res.CaseID)
	if err != nil || c.Status != cases.Running {
		t.Fatalf("Retry = %+v, %v", c, err)
	}
	if err := f.e.RunCase(ctx, res.CaseID, false); err != nil {
		t.Fatal(err)
	}
	if c := f.getCase(t, res.CaseID); c.Status != cases.Completed {
		t.Fatalf("retried case = %s %q", c.Status, c.Reason)
	}
	if !tg.grants["alice/crm-user"] {
		t.Fatal("crm grant missing after retry")
	}
	if _, err := f.e.Retry(ctx, admin, res.CaseID); identity.ErrorCode(err) != identity.Conflict {
		t.Fatalf("Retry of a completed case = %v, want conflict", err)
	}
}

// TestFastPath: a case with steps in another system runs as soon as the
// event is accepted, with no job worker running; its job is due only after
// the grace, and running it then finds nothing left to do.
func TestFastPath(t *testing.T) {
	t.Parallel()
	f, tg := newTargetFixtureGrace(t, time.Hour)
	ctx := context.Background()
	res, err := f.e.Submit(ctx, source, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	if err != nil {
		t.Fatal(err)
	}
	f.e.fastRuns.Wait()
	c := f.getCase(t, res.CaseID)
	if c.Status != cases.Completed {
		t.Fatalf("after the fast path the case is %s %q", c.Status, c.Reason)
	}
	tg.mu.Lock()
	calls := tg.calls
	held := tg.grants["alice/crm-user"]
	tg.mu.Unlock()
	if !held || calls != 2 { // ensure_account, grant
		t.Fatalf("crm: grant held %v after %d calls, want true after 2", held, calls)
	}
	// The job, when it runs, changes nothing and calls nobody.
	if err := f.e.RunCase(ctx, res.CaseID, false); err != nil {
		t.Fatal(err)
	}
	if tg.calls != calls {
		t.Fatalf("the job called the target again (%d calls)", tg.calls)
	}
}

// directory is a target that can revoke everything at once.
type directory struct{ *target }

func (d directory) RevokeAll(context.Context, connector.Op, connector.Account) error {
	return d.do(func() { clear(d.grants) })
}

// TestDisableCoversRevokes: on a system that can revoke everything at
// once, a leaver makes that one call and records the revoke steps as done
// with it.
func TestDisableCoversRevokes(t *testing.T) {
	t.Parallel()
	tg := &target{grants: map[string]bool{}}
	f := newConnectorFixture(t, targetPolicy, -1, map[string]connector.Connector{"crm": directory{tg}})
	e := f.e
	ctx := context.Background()
	res, err := e.Submit(ctx, source, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RunCase(ctx, res.CaseID, false); err != nil {
		t.Fatal(err)
	}
	before := tg.calls
	res, err = e.Submit(ctx, source, ev("2", identity.Leaver, "alice", nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RunCase(ctx, res.CaseID, false); err != nil {
		t.Fatal(err)
	}
	if n := tg.calls - before; n != 1 {
		t.Fatalf("the leaver made %d calls to crm, want 1 (RevokeAll)", n)
	}
	cs := f.getCase(t, res.CaseID)
	if cs.Status != cases.Completed {
		t.Fatalf("case %s %q", cs.Status, cs.Reason)
	}
	for _, st := range cs.Steps {
		if st.System == "crm" && st.Action == "revoke_grant" && !strings.HasSuffix(st.Result, "with disable_account") {
			t.Fatalf("revoke step result = %q", st.Result)
		}
	}
	if g := f.grants(t, res.IdentityID); len(g) != 0 {
		t.Fatalf("grants after the leaver: %v", g)
	}
}

// TestSlowSystemHoldsUpNoRecord: systems run at once and their results are
// recorded together when they finish together, but a system that is still
// working does not keep another's finished steps unrecorded for longer
// than the record window.
func TestSlowSystemHoldsUpNoRecord(t *testing.T) {
	t.Parallel()
	crm := &target{grants: map[string]bool{}}
	erp := &target{grants: map[string]bool{}, gate: make(chan struct{})}
	f := newConnectorFixture(t, `
systems: [{name: crm, type: test}, {name: erp, type: test}]
entitlements: [{name: crm-user, system: crm}, {name: erp-user, system: erp}]
birthright:
  - {name: staff, when: 'identity.kind == "human"', entitlements: [crm-user, erp-user]}
`, -1, map[string]connector.Connector{"crm": crm, "erp": erp})
	ctx := context.Background()
	res, err := f.e.Submit(ctx, source, ev("1", identity.Joiner, "alice", func(e *identity.Event) { e.Kind = identity.Human }))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.e.RunCase(ctx, res.CaseID, false) }()
	// crm answers at once; the recorder then waits up to the window for erp.
	poll.Until(t, 5*time.Second, time.Millisecond, func() (bool, string) {
		return f.clock.Waiting() == 1, "the recorder did not start waiting for erp"
	})
	for _, s := range f.getCase(t, res.CaseID).Steps {
		if s.Status != cases.StepPending {
			t.Fatalf("within the record window %s's step is %s, want pending (recorded with erp's if erp answers in time)", s.System, s.Status)
		}
	}
	f.clock.Advance(recordWindow)
	poll.Until(t, 5*time.Second, 5*time.Millisecond, func() (bool, string) {
		c := f.getCase(t, res.CaseID)
		status := map[string]cases.StepStatus{}
		for _, s := range c.Steps {
			status[s.System] = s.Status
		}
		if status["crm"] != cases.StepDone {
			return false, "crm's grant was not recorded while erp was still working"
		}
		if status["erp"] != cases.StepPending || c.Status != cases.Running {
			t.Fatalf("while erp works: erp step %s, case %s; want pending, running", status["erp"], c.Status)
		}
		return true, ""
	})
	close(erp.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := f.getCase(t, res.CaseID); c.Status != cases.Completed {
		t.Fatalf("case = %s %q, want completed", c.Status, c.Reason)
	}
}

// closingTarget is a target that records being closed.
type closingTarget struct {
	*target
	closed atomic.Bool
}

func (c *closingTarget) Close() error { c.closed.Store(true); return nil }

// TestReplacedConnectorClosesAfterRetireWindow: a policy reload that
// changes a system's settings opens a new connector at once and closes the
// old one only once steps already calling it have had retireAfter to
// finish.
func TestReplacedConnectorClosesAfterRetireWindow(t *testing.T) {
	t.Parallel()
	const policyAt = `
systems: [{name: crm, type: test, config: {generation: %d}}]
entitlements: [{name: crm-user, system: crm}]
`
	var opened []*closingTarget
	f := newPolicyFixture(t, fmt.Sprintf(policyAt, 1), func(c *Config) {
		c.Open = func(context.Context, connector.Config) (connector.Connector, error) {
			ct := &closingTarget{target: &target{grants: map[string]bool{}}}
			opened = append(opened, ct)
			return ct, nil
		}
	})
	pol, err := policy.Parse("test.yaml", []byte(fmt.Sprintf(policyAt, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.SetPolicy(pol); err != nil {
		t.Fatal(err)
	}
	if len(opened) != 2 {
		t.Fatalf("%d connectors opened, want the first and its replacement", len(opened))
	}
	f.clock.Advance(retireAfter - time.Nanosecond)
	if opened[0].closed.Load() {
		t.Fatal("the replaced connector was closed before steps calling it had retireAfter to finish")
	}
	f.clock.Advance(time.Nanosecond)
	if !opened[0].closed.Load() {
		t.Fatalf("the replaced connector is still open %v after the reload", retireAfter)
	}
	if opened[1].closed.Load() {
		t.Fatal("the new connector was closed")
	}
}

// pickyTarget is a target whose account names may not contain a colon.
type pickyTarget struct{ *target }

func (pickyTarget) CheckName(name string) error {
	if strings.Contains(name, ":") {
		return errors.New("names may not contain ':'")
	}
	return nil
}

// TestRejectedScheduledJoinerChangesNothing: a future-dated joiner that no
// longer applies when its time comes (here: its system cannot hold the
// name, found after the identity was written) is rejected, and the
// identity stays as scheduling left it: pending, with no case.
func TestRejectedScheduledJoinerChangesNothing(t *testing.T) {
	t.Parallel()
	f := newConnectorFixture(t, `
systems: [{name: crm, type: test}]
entitlements: [{name: crm-user, system: crm}]
birthright:
  - {name: staff, when: 'identity.kind == "human"', entitlements: [crm-user]}
`, -1, map[string]connector.Connector{"crm": pickyTarget{&target{grants: map[string]bool{}}}})
	ctx := context.Background()
	start := f.clock.Now().Add(time.Hour)
	res := f.submit(t, ev("1", identity.Joiner, "a:b", func(e *identity.Event) { e.Kind, e.EffectiveAt = identity.Human, &start }))
	if res.Status != store.EventScheduled {
		t.Fatalf("future joiner = %+v, want scheduled", res)
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
		if rec.Status != store.EventRejected || !strings.Contains(rec.Error, "cannot hold account") || rec.CaseID != "" {
			t.Errorf("event after its time = %s %q case %q, want rejected naming the name", rec.Status, rec.Error, rec.CaseID)
		}
		id, err := tx.GetIdentity(ctx, res.IdentityID)
		if err != nil {
			return err
		}
		if id.State != identity.Pending {
			t.Errorf("identity after the rejection = %s, want pending as scheduling left it", id.State)
		}
		caseList, err := tx.ListCases(ctx, id.ID, 10)
		if err != nil {
			return err
		}
		if len(caseList) != 0 {
			t.Errorf("cases after the rejection: %+v", caseList)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
