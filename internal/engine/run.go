package engine

// Running a case: the fast path after commit, one run per system in
// parallel, each call under its deadline, built-in steps in the
// transaction.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jobs"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/store"
)

// fastRunTimeout bounds a fast-path run, as River's job timeout bounds a
// job's.
const fastRunTimeout = time.Minute

// startCases runs just-committed cases now, each in its own goroutine, so
// that a leaver's revocations start without waiting for a job fetch.
// Failures are left to the case's job, which is already scheduled.
func (e *Engine) startCases(cases []loaded) {
	for _, l := range cases {
		e.fastRuns.Add(1)
		go func() {
			defer e.fastRuns.Done()
			ctx, cancel := context.WithTimeout(context.Background(), fastRunTimeout)
			defer cancel()
			unlock := e.caseLocks.hold(l.c.ID)
			defer unlock()
			if err := e.runCase(ctx, l.c.ID, false, &l); err != nil {
				e.log.Debug("fast path: case left to its job", "case", l.c.ID, "error", err)
			}
		}()
	}
}

// RunCase applies a case's pending steps until none is left that can run.
// Steps of one system run in plan order (credentials, then grants, then the
// account); systems are independent, so a system that is down holds up only
// its own steps and a leaver still revokes everywhere else. Steps of
// transactional connectors (the built-in vault) are applied in the
// transaction that records them; others are called first and recorded
// after, so a crash between the two repeats an idempotent call, never skips
// one. A failed attempt is recorded and returned, so River retries the job
// with backoff; on lastAttempt the step fails for good and the case needs
// attention.
func (e *Engine) RunCase(ctx context.Context, caseID string, lastAttempt bool) error {
	return e.runCase(ctx, caseID, lastAttempt, nil)
}

// runCase is RunCase; first, when not nil, is the case and identity as the
// accepting transaction wrote them, used instead of the first read.
func (e *Engine) runCase(ctx context.Context, caseID string, lastAttempt bool, first *loaded) error {
	if err := e.callsSystems(); err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		failed   = map[string]bool{} // systems that failed during this run
		firstErr error
	)
	// fail marks a system failed for this run; err (nil when the failure
	// was final and recorded) is what River sees.
	fail := func(system string, err error) {
		mu.Lock()
		failed[system] = true
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for {
		var c *cases.Case
		var id *identity.Identity
		if first != nil {
			c, id, first = first.c, first.id, nil
		} else if err := e.store.View(ctx, func(tx store.Tx) error {
			var err error
			if c, err = tx.GetCase(ctx, caseID); err != nil {
				return err
			}
			id, err = tx.GetIdentity(ctx, c.IdentityID)
			return err
		}); err != nil {
			return err
		}
		mu.Lock()
		runnable := runnableSteps(c, failed)
		mu.Unlock()
		if len(runnable) == 0 {
			if err := e.updateAndSettle(ctx, caseID, func(store.Tx) error { return nil }); err != nil {
				return err
			}
			return firstErr
		}
		// Transactional steps (the built-in vault) go first, all in one
		// transaction; then the case is read again.
		transactional := false
		for _, s := range runnable {
			if e.conn(s.System) != nil && e.transactional(s.System) {
				transactional = true
			}
		}
		if transactional {
			if err := e.applyInTx(ctx, caseID, id); err != nil {
				return err
			}
			continue
		}
		// Every other system runs its pending steps in order, all systems
		// at once: a leaver's time to revoke is the slowest system's, not
		// the sum of them, and a system that is down delays no other.
		results := make(chan systemRun, len(runnable))
		for _, first := range runnable {
			go func() { results <- e.runSystem(ctx, c, id, first.System, lastAttempt) }()
		}
		if e.recordRuns(ctx, c, results, len(runnable), fail) {
			return firstErr
		}
	}
}

// recordWindow is how long the results of systems that finished are held
// for the others still running, so that one commit records them all.
const recordWindow = 25 * time.Millisecond

// systemRun is what one system's calls in a run of a case did.
type systemRun struct {
	system   string
	outcomes []outcome // every step called, the failure last
	failure  *outcome
	// release frees the (identity, system) lock once the run is recorded
	// (or its record failed); nil when nothing is held.
	release func()
}

// recordRuns receives n systems' runs and records them: each batch of runs
// that finish within recordWindow of the first in one transaction, so that
// a case whose systems answer promptly costs one commit after its calls,
// while a slow system holds up no other's record for longer than the
// window. A system whose record fails is failed for this run, with the
// error. It reports whether the case settled (is final) with the last
// batch; then there is nothing left to run.
func (e *Engine) recordRuns(ctx context.Context, c *cases.Case, results <-chan systemRun, n int, fail func(string, error)) bool {
	var moved cases.Status
	for n > 0 {
		batch := []systemRun{<-results}
		n--
		if n > 0 {
			t := e.clock.NewTimer(recordWindow)
		gather:
			for n > 0 {
				select {
				case r := <-results:
					batch = append(batch, r)
					n--
				case <-t.C():
					break gather
				}
			}
			t.Stop()
		}
		var outcomes []outcome
		for _, r := range batch {
			outcomes = append(outcomes, r.outcomes...)
		}
		if len(outcomes) == 0 {
			for _, r := range batch {
				if r.release != nil {
					r.release()
				}
			}
			continue
		}
		var err error
		moved, err = e.recordOutcomes(ctx, c, outcomes)
		for _, r := range batch {
			if r.release != nil {
				r.release()
			}
			switch {
			case len(r.outcomes) == 0:
			case err != nil:
				fail(r.system, err)
			case r.failure != nil:
				e.metrics.stepsFailed.WithLabelValues(r.system, string(c.Steps[r.failure.seq-1].Action)).Inc()
				if r.failure.final {
					e.log.Error("step failed for good; case needs attention", "case", c.ID, "seq", r.failure.seq, "system", r.system, "error", r.failure.err)
					fail(r.system, nil)
					continue
				}
				e.log.Warn("step failed; will retry", "case", c.ID, "seq", r.failure.seq, "system", r.system, "error", r.failure.err)
				fail(r.system, r.failure.err)
			}
		}
	}
	return moved == cases.Completed || moved == cases.Failed
}

// runSystem is callSystem under the lock of (identity, system), held by
// this process and, where the store is shared by several, across all of
// them (store.AccessLocker), until the run is recorded: no two runs call
// one system for one identity at once, and none starts before the
// previous one's results are committed. Under the lock the case is read
// again, so a step that a later event superseded, or that another run of
// the same case applied, while this run waited is not called: the later
// plan was made knowing that step might run, and its own calls there come
// after this run's. A call that outlives its deadline keeps the lock
// until it returns (its effect may still land); waiting for the lock is
// bounded by lockWaits deadlines.
func (e *Engine) runSystem(ctx context.Context, c *cases.Case, id *identity.Identity, system string, lastAttempt bool) systemRun {
	key := c.IdentityID + "/" + system
	fail := func(err error) systemRun {
		for i := range c.Steps {
			if s := &c.Steps[i]; s.System == system && s.Status == cases.StepPending {
				o := outcome{seq: s.Seq, err: err, final: lastAttempt}
				return systemRun{system: system, outcomes: []outcome{o}, failure: &o}
			}
		}
		return systemRun{system: system}
	}
	calls := &sync.WaitGroup{}
	release, err := e.lockAccess(ctx, key, calls)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", system, err))
	}
	var cur *cases.Case
	managed := false // jml records an account of the identity here
	if err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		if cur, err = tx.GetCase(ctx, c.ID); err != nil {
			return err
		}
		if !pendingEnsure(cur, system) {
			return nil // only a create asks whose the account is (claimAccount)
		}
		accounts, err := tx.ListAccounts(ctx, c.IdentityID)
		for _, a := range accounts {
			managed = managed || (a.System == system && a.Status != identity.AccountDeleted)
		}
		return err
	}); err != nil {
		release()
		return fail(err)
	}
	run := e.callSystem(ctx, cur, id, system, lastAttempt, managed, calls)
	run.release = release
	return run
}

// call runs one connector call with the system's deadline. A call that
// does not return by then is left running (calls tracks it, so that the
// run's lock outlives it) and reported as timed out: its effect may still
// land, so its step stays pending and is retried or, if superseded,
// undone.
func (e *Engine) call(ctx context.Context, system string, calls *sync.WaitGroup, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.callTimeout)
	done := make(chan error, 1)
	calls.Add(1)
	go func() {
		defer calls.Done()
		defer cancel()
		done <- fn(ctx)
	}()
	answered := func(err error) error {
		if err != nil && ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("no answer from %s within %s: %w", system, e.callTimeout, err)
		}
		return err
	}
	select {
	case err := <-done:
		return answered(err)
	case <-ctx.Done():
		// The call's own goroutine cancels ctx once it has answered, so
		// an answer may be waiting: only an empty done is a timeout.
		select {
		case err := <-done:
			return answered(err)
		default:
			return fmt.Errorf("no answer from %s within %s", system, e.callTimeout)
		}
	}
}

// callSystem applies, in plan order, the pending steps of one system in c,
// stopping at the first that fails. Nothing is recorded: recordRuns
// records the run, one commit per batch of systems, not one per step. A
// crash before that commit repeats the calls, which are idempotent. Each
// step is recorded only if still pending, so a concurrent run of the same
// case cannot record one twice.
func (e *Engine) callSystem(ctx context.Context, c *cases.Case, id *identity.Identity, system string, lastAttempt, managed bool, calls *sync.WaitGroup) systemRun {
	conn := e.conn(system)
	var outcomes []outcome
	var failure *outcome
	// A case that disables the account and revokes in this system makes one
	// RevokeAll call where the connector has it; the steps it covers are
	// recorded as done by it.
	covered := map[int]bool{}
	// A departed identity's disable is always made with RevokeAll: it acts
	// by name on everything the account may hold, recorded or not. So is an
	// active one's that takes its last access in the system. A suspend's
	// never is: what the account holds stays, behind the lock, for a resume.
	if ra, ok := conn.(connector.RevokeAller); ok {
		if d := pendingDisable(c, system); d != nil && (id.State == identity.Departed || (id.State == identity.Active && pendingRevokes(c, system))) {
			o := outcome{seq: d.Seq}
			o.err = e.call(ctx, system, calls, func(ctx context.Context) error {
				return ra.RevokeAll(ctx, connector.Op{IdempotencyKey: c.ID + "/" + strconv.Itoa(d.Seq), CaseID: c.ID},
					connector.Account{IdentityID: id.ID, Name: id.ExternalID, Kind: id.Kind, Attributes: id.Attributes})
			})
			if o.err != nil {
				o.final = lastAttempt || connector.Permanent(o.err)
				failure = &o
			} else {
				outcomes = append(outcomes, o)
				covered[d.Seq] = true
				for i := range c.Steps {
					s := &c.Steps[i]
					if s.System == system && s.Status == cases.StepPending && (s.Action == plan.RevokeGrant || s.Action == plan.RevokeCredential) {
						outcomes = append(outcomes, outcome{seq: s.Seq, note: "with " + string(plan.DisableAccount)})
						covered[s.Seq] = true
					}
				}
			}
		}
	}
	for i := range c.Steps {
		s := &c.Steps[i]
		if failure != nil {
			break
		}
		if s.System != system || covered[s.Seq] {
			continue
		}
		if s.Status == cases.StepFailed {
			break
		}
		if s.Status != cases.StepPending {
			continue
		}
		if conn == nil {
			failure = &outcome{seq: s.Seq, err: fmt.Errorf("no connector for system %q", system), final: true}
			break
		}
		adopted := false
		if s.Action == plan.EnsureAccount && !managed && id.State == identity.Active {
			// The first create here: whose is an account of the name?
			claim, ok := e.claimAccount(ctx, c, id, s, conn, calls)
			if !ok {
				claim.final = claim.final || lastAttempt
				failure = &claim
				break
			}
			managed, adopted = true, claim.adopted
		}
		o := e.callExternal(ctx, c, id, s, conn, calls)
		o.adopted = adopted
		if o.err != nil {
			o.final = lastAttempt || connector.Permanent(o.err)
			failure = &o
			break
		}
		outcomes = append(outcomes, o)
	}
	if failure != nil {
		outcomes = append(outcomes, *failure)
	}
	return systemRun{system: system, outcomes: outcomes, failure: failure}
}

// runnableSteps returns, for each system, its first pending step, unless an
// earlier step of that system is pending too, failed for good, or the
// system failed during this run.
func runnableSteps(c *cases.Case, failed map[string]bool) []*cases.Step {
	blocked := map[string]bool{}
	for k := range failed {
		blocked[k] = true
	}
	var out []*cases.Step
	for i := range c.Steps {
		s := &c.Steps[i]
		switch {
		case blocked[s.System]:
		case s.Status == cases.StepFailed:
			blocked[s.System] = true
		case s.Status == cases.StepPending:
			out = append(out, s)
			blocked[s.System] = true
		}
	}
	return out
}

// applyInTx applies, in one transaction, every consecutive pending step of
// transactional connectors, and settles the case.
func (e *Engine) applyInTx(ctx context.Context, caseID string, id *identity.Identity) error {
	return e.updateAndSettle(ctx, caseID, func(tx store.Tx) error {
		c, err := tx.GetCase(ctx, caseID)
		if err != nil {
			return err
		}
		id, err := tx.GetIdentity(ctx, c.IdentityID)
		if err != nil {
			return err
		}
		recs, err := e.applyTransactional(ctx, tx, c, id, e.Now().UTC(), true, false)
		if err != nil {
			return err
		}
		return tx.AppendAudit(ctx, recs...)
	})
}

// transactional reports whether a system's connector is applied inside
// jml's own transactions (the built-in vault).
func (e *Engine) transactional(system string) bool {
	tc, ok := e.conn(system).(connector.Transactional)
	return ok && tc.InTransaction()
}

// applyTransactional applies, in order, the pending steps of c that belong
// to transactional connectors (steps of other systems are theirs to run). It
// updates c.Steps in memory; with persist it also stores each step and
// returns an audit record per step (without, the caller stores the case
// and its plan record shows the results). fresh says the identity was
// created in this transaction and so holds nothing yet.
func (e *Engine) applyTransactional(ctx context.Context, tx store.Tx, c *cases.Case, id *identity.Identity, now time.Time, persist, fresh bool) ([]audit.Record, error) {
	var recs []audit.Record
	failed := map[string]bool{}
	for i := range c.Steps {
		s := &c.Steps[i]
		if s.Status == cases.StepFailed {
			failed[s.System] = true
		}
		if s.Status.Final() || s.Status == cases.StepAwaitingApproval || failed[s.System] || !e.transactional(s.System) {
			continue
		}
		if s.Action.Widening() && id.State != identity.Active {
			s.Status, s.Result, s.UpdatedAt = cases.StepSuperseded, "not applied: the identity is "+string(id.State), now
			if persist {
				if err := tx.UpdateStep(ctx, s); err != nil {
					return nil, err
				}
			}
			continue
		}
		var secret string
		var err error
		if s.Action == plan.IssueCredential || s.Action == plan.RotateCredential {
			if secret, err = e.newSecret(s); err != nil {
				return nil, err
			}
		}
		result, err := e.record(ctx, tx, c, s, secret, now, fresh)
		if err != nil {
			return nil, err
		}
		s.Status, s.Result, s.Attempts, s.LastError, s.UpdatedAt = cases.StepDone, result, s.Attempts+1, "", now
		e.metrics.stepsDone.WithLabelValues(s.System, string(s.Action)).Inc()
		if persist {
			if err := tx.UpdateStep(ctx, s); err != nil {
				return nil, err
			}
			recs = append(recs, audit.New(now, System.ID, "step.done", c.IdentityID, c.ID, map[string]any{"seq": s.Seq, "step": s.Step.String(), "result": result}))
		}
	}
	return recs, nil
}

// updateAndSettle runs fn and then settles the case, in one transaction,
// and counts the case's new status once that commits.
func (e *Engine) updateAndSettle(ctx context.Context, caseID string, fn func(store.Tx) error) error {
	var moved cases.Status
	err := e.store.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		var err error
		moved, err = e.settle(ctx, tx, caseID, e.Now().UTC())
		return err
	})
	if err == nil {
		e.metrics.countSettled(moved)
	}
	return err
}

// outcome is what calling one step's connector did.
type outcome struct {
	seq        int
	superseded string    // not called: why
	secret     string    // the credential installed, for the record
	err        error     // the call failed
	final      bool      // ... for good
	retireAt   time.Time // rotated with overlap: retire the old secret then
	note       string    // appended to the result ("by disable_account")
	// unmanaged: the account exists and jml did not create it (the step
	// fails, a finding is raised); adopted: it did, and was taken over.
	unmanaged, adopted bool
}

// claimAccount runs before the first create of an identity's account in a
// system: it asks the system whether an account of the name exists
// (connector.Prober). One that does is someone else's: the step fails for
// good with an account_exists_unmanaged finding and nothing in the
// account changes, unless the system says adopt: true, when the account
// is reset (connector.Adopter) and taken over. Otherwise, or after the
// adoption, it records the account as being created (AccountCreating),
// in a transaction that locks the identity and finds the step still
// pending, so that after a crash between the create call and its record
// the account is still known as jml's. It reports false with the failed
// outcome.
func (e *Engine) claimAccount(ctx context.Context, c *cases.Case, id *identity.Identity, s *cases.Step, conn connector.Connector, calls *sync.WaitGroup) (outcome, bool) {
	o := outcome{seq: s.Seq}
	acct := connector.Account{IdentityID: id.ID, Name: id.ExternalID, Kind: id.Kind, Attributes: id.Attributes}
	if p, ok := conn.(connector.Prober); ok {
		found := make(chan bool, 1)
		o.err = e.call(ctx, s.System, calls, func(ctx context.Context) error {
			ok, err := p.AccountExists(ctx, acct)
			found <- ok
			return err
		})
		if o.err != nil {
			o.final = connector.Permanent(o.err)
			return o, false
		}
		if <-found {
			sys := e.Policy().Systems[s.System]
			ad, ok := conn.(connector.Adopter)
			if sys == nil || !sys.Adopt || !ok {
				o.err, o.final, o.unmanaged = identity.Errorf(identity.Conflict,
					"account %q exists in %s and jml did not create it; it was left as it is (adopt: true on the system takes such accounts over)", id.ExternalID, s.System), true, true
				return o, false
			}
			if o.err = e.call(ctx, s.System, calls, func(ctx context.Context) error {
				return ad.Adopt(ctx, connector.Op{IdempotencyKey: c.ID + "/" + strconv.Itoa(s.Seq) + "/adopt", CaseID: c.ID}, acct)
			}); o.err != nil {
				o.final = connector.Permanent(o.err)
				return o, false
			}
			o.adopted = true
		}
	}
	err := e.store.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.GetIdentity(ctx, id.ID)
		if err != nil {
			return err
		}
		cs, err := tx.GetCase(ctx, c.ID)
		if err != nil {
			return err
		}
		if cur.State != identity.Active || cs.Steps[s.Seq-1].Status != cases.StepPending {
			return errClaimStale
		}
		return tx.PutAccount(ctx, &identity.Account{IdentityID: id.ID, System: s.System, Status: identity.AccountCreating, UpdatedAt: e.Now().UTC()})
	})
	if err != nil {
		o.err = err
		return o, false
	}
	return o, true
}

// errClaimStale stops a create whose step a later event superseded while
// its system was asked; the run records nothing for it.
var errClaimStale = errors.New("the step was superseded before its account was created")

// pendingRevokes reports whether c has a pending revoke step in system.
func pendingRevokes(c *cases.Case, system string) bool {
	for _, s := range c.Steps {
		if s.System == system && s.Status == cases.StepPending && (s.Action == plan.RevokeGrant || s.Action == plan.RevokeCredential) {
			return true
		}
	}
	return false
}

// pendingEnsure reports whether c has a pending ensure_account step in
// system.
func pendingEnsure(c *cases.Case, system string) bool {
	for _, s := range c.Steps {
		if s.System == system && s.Status == cases.StepPending && s.Action == plan.EnsureAccount {
			return true
		}
	}
	return false
}

// pendingDisable returns the system's pending disable_account step in c,
// unless an earlier step of the system failed for good.
func pendingDisable(c *cases.Case, system string) *cases.Step {
	for i := range c.Steps {
		s := &c.Steps[i]
		if s.System != system {
			continue
		}
		if s.Status == cases.StepFailed {
			return nil
		}
		if s.Status == cases.StepPending && s.Action == plan.DisableAccount {
			return s
		}
	}
	return nil
}

// callExternal calls the connector for one step. A widening step for an
// identity that is no longer active is superseded instead of called.
func (e *Engine) callExternal(ctx context.Context, c *cases.Case, id *identity.Identity, s *cases.Step, conn connector.Connector, calls *sync.WaitGroup) outcome {
	o := outcome{seq: s.Seq}
	if s.Action.Widening() && id.State != identity.Active {
		o.superseded = "not applied: the identity is " + string(id.State)
		return o
	}
	if s.Action == plan.IssueCredential || s.Action == plan.RotateCredential {
		if o.secret, o.err = e.newSecret(s); o.err != nil {
			return o
		}
	}
	if ov, ok := conn.(connector.OverlapRotator); ok && s.Action == plan.RotateCredential && ov.RotationOverlap() > 0 {
		o.retireAt = e.Now().Add(ov.RotationOverlap())
	}
	secret := o.secret
	o.err = e.call(ctx, s.System, calls, func(ctx context.Context) error {
		return e.callStep(ctx, c, id, s, conn, secret)
	})
	return o
}

// callStep makes the connector call of one step, with the secret to install
// for a credential step. It may outlive its caller (see call), so it
// writes nothing the caller reads.
func (e *Engine) callStep(ctx context.Context, c *cases.Case, id *identity.Identity, s *cases.Step, conn connector.Connector, secret string) error {
	op := connector.Op{IdempotencyKey: c.ID + "/" + strconv.Itoa(s.Seq), CaseID: c.ID}
	acct := connector.Account{IdentityID: id.ID, Name: id.ExternalID, Kind: id.Kind, Attributes: id.Attributes}
	switch s.Action {
	case plan.EnsureAccount, plan.EnableAccount:
		return conn.EnsureAccount(ctx, op, acct)
	case plan.DisableAccount:
		return conn.DisableAccount(ctx, op, acct)
	case plan.DeleteAccount:
		return conn.DeleteAccount(ctx, op, acct)
	case plan.Grant:
		return conn.Grant(ctx, op, acct, s.Entitlement)
	case plan.RevokeGrant:
		return conn.Revoke(ctx, op, acct, s.Entitlement)
	case plan.IssueCredential, plan.RotateCredential, plan.RevokeCredential:
		setter, ok := conn.(connector.CredentialSetter)
		if !ok {
			return fmt.Errorf("system %s cannot hold credentials", s.System)
		}
		if s.Action == plan.RevokeCredential {
			return setter.RevokeCredential(ctx, op, acct, s.CredentialID)
		}
		rule := e.Policy().CredentialRule(s.Rule)
		cred := connector.Credential{ID: credentialID(c.ID, s.Seq), Type: string(rule.Type), Secret: secret}
		if rule.TTL > 0 {
			cred.ExpiresAt = e.Now().Add(rule.TTL)
		}
		// A rotation on a system that keeps the previous secret for an
		// overlap adds the new one; a job retires the old one when the
		// overlap ends.
		if ov, ok := conn.(connector.OverlapRotator); ok && s.Action == plan.RotateCredential && ov.RotationOverlap() > 0 {
			return ov.AddCredential(ctx, op, acct, cred)
		}
		return setter.SetCredential(ctx, op, acct, cred)
	}
	return fmt.Errorf("unknown action %q", s.Action)
}

// ApplyCaseArgs is the job that runs a case's pending steps in order.
type ApplyCaseArgs struct {
	CaseID string `json:"caseId"`
}

func (ApplyCaseArgs) Kind() string { return "jml.apply_case" }

// registerRun declares the job that runs a case, with its retry policy.
func (e *Engine) registerRun(r *jobs.Registry) {
	jobs.Add(r, "engine/run.go", "runs a case's pending steps; retried with backoff from 1 s to 5 min", river.Worker[ApplyCaseArgs](&applyCaseWorker{e: e}))
}

type applyCaseWorker struct {
	river.WorkerDefaults[ApplyCaseArgs]
	e *Engine
}

func (w *applyCaseWorker) Work(ctx context.Context, job *river.Job[ApplyCaseArgs]) error {
	unlock := w.e.caseLocks.hold(job.Args.CaseID)
	defer unlock()
	return w.e.RunCase(ctx, job.Args.CaseID, job.Attempt >= job.MaxAttempts)
}

// NextRetry backs off exponentially from one second to five minutes, so a
// system that is down for a while is retried often at first and then
// steadily, well inside River's default 25 attempts.
func (w *applyCaseWorker) NextRetry(job *river.Job[ApplyCaseArgs]) time.Time {
	d := time.Second << min(job.Attempt, 9)
	return w.e.Now().Add(min(d, 5*time.Minute))
}

// Resume enqueues a job, due now, for every case that has a step waiting
// to run, and returns how many. jml serve calls it on start: a case whose
// run died with the previous process (its fast path, or a job River still
// counts as running until its rescuer's delay has passed) then resumes
// within a job fetch instead of minutes later. A second job for a case
// that another replica is running is harmless: runs of one case, like runs
// of one identity in one system, never overlap, and a run calls only the
// steps still pending once it holds the lock.
func (e *Engine) Resume(ctx context.Context) (int, error) {
	var ids []string
	if err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		ids, err = tx.ListPendingCases(ctx, 100000)
		return err
	}); err != nil {
		return 0, err
	}
	for start := 0; start < len(ids); start += 500 {
		batch := ids[start:min(start+500, len(ids))]
		if err := e.store.Update(ctx, func(tx store.Tx) error {
			for _, id := range batch {
				if err := tx.Enqueue(ctx, ApplyCaseArgs{CaseID: id}, time.Time{}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}
