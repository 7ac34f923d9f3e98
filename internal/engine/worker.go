package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/vault"
)

// ApplyCaseArgs is the job that runs a case's pending steps in order.
type ApplyCaseArgs struct {
	CaseID string `json:"caseId"`
}

func (ApplyCaseArgs) Kind() string { return "jml.apply_case" }

// EffectiveEventArgs is the timer of a future-dated event.
type EffectiveEventArgs struct {
	EventID string `json:"eventId"`
}

func (EffectiveEventArgs) Kind() string { return "jml.effective_event" }

// ExpireGrantArgs is the timer of a time-bound grant.
type ExpireGrantArgs struct {
	IdentityID  string    `json:"identityId"`
	Entitlement string    `json:"entitlement"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

func (ExpireGrantArgs) Kind() string { return "jml.expire_grant" }

// RetireCredentialsArgs ends a rotation overlap: every secret of the
// identity's account in System but its current credential of Rule is
// removed.
type RetireCredentialsArgs struct {
	IdentityID string `json:"identityId"`
	System     string `json:"system"`
	Rule       string `json:"rule"`
}

func (RetireCredentialsArgs) Kind() string { return "jml.retire_credentials" }

// DeleteAccountArgs is the timer of a departed identity's account: when it
// fires, the account is deleted unless the identity changed since
// DepartedAt (rehired, say).
type DeleteAccountArgs struct {
	IdentityID string    `json:"identityId"`
	System     string    `json:"system"`
	DepartedAt time.Time `json:"departedAt"`
}

func (DeleteAccountArgs) Kind() string { return "jml.delete_account" }

// Workers returns the River workers of the engine's jobs.
func (e *Engine) Workers() *river.Workers {
	w := river.NewWorkers()
	river.AddWorker(w, &applyCaseWorker{e: e})
	river.AddWorker(w, &effectiveEventWorker{e: e})
	river.AddWorker(w, &expireGrantWorker{e: e})
	river.AddWorker(w, &retireCredentialsWorker{e: e})
	river.AddWorker(w, &deleteAccountWorker{e: e})
	river.AddWorker(w, &reopenFindingWorker{e: e})
	return w
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

// keyLocks are mutexes by key that can be waited for with a deadline,
// dropped when nobody holds or waits.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds a token while locked
	refs int
}

// hold takes key's lock, waiting as long as it takes.
func (l *keyLocks) hold(key string) (unlock func()) {
	unlock, _ = l.lock(context.Background(), key)
	return unlock
}

// lock takes key's lock, or returns ctx's error if ctx ends first.
func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	kl := l.m[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		l.m[key] = kl
	}
	kl.refs++
	l.mu.Unlock()
	drop := func() {
		l.mu.Lock()
		if kl.refs--; kl.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case kl.ch <- struct{}{}:
		return func() { <-kl.ch; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}

// NextRetry backs off exponentially from one second to five minutes, so a
// system that is down for a while is retried often at first and then
// steadily, well inside River's default 25 attempts.
func (w *applyCaseWorker) NextRetry(job *river.Job[ApplyCaseArgs]) time.Time {
	d := time.Second << min(job.Attempt, 9)
	return w.e.now().Add(min(d, 5*time.Minute))
}

type effectiveEventWorker struct {
	river.WorkerDefaults[EffectiveEventArgs]
	e *Engine
}

func (w *effectiveEventWorker) Work(ctx context.Context, job *river.Job[EffectiveEventArgs]) error {
	return w.e.runEffective(ctx, job.Args.EventID)
}

type expireGrantWorker struct {
	river.WorkerDefaults[ExpireGrantArgs]
	e *Engine
}

func (w *expireGrantWorker) Work(ctx context.Context, job *river.Job[ExpireGrantArgs]) error {
	return w.e.expireGrant(ctx, job.Args)
}

type retireCredentialsWorker struct {
	river.WorkerDefaults[RetireCredentialsArgs]
	e *Engine
}

func (w *retireCredentialsWorker) Work(ctx context.Context, job *river.Job[RetireCredentialsArgs]) error {
	return w.e.RetireCredentials(ctx, job.Args)
}

// RetireCredentials ends a rotation overlap (the jml.retire_credentials
// job): it keeps the identity's active credential of the rule (by
// fingerprint) and removes every other secret of the account. If none is
// active any more (revoked meanwhile), it removes them all.
func (e *Engine) RetireCredentials(ctx context.Context, a RetireCredentialsArgs) error {
	// Under the (identity, system) lock, so that no issue or rotation of
	// the account is between its call and its record while the secret to
	// keep is read.
	calls := &sync.WaitGroup{}
	release, err := e.lockAccess(ctx, a.IdentityID+"/"+a.System, calls)
	if err != nil {
		return err
	}
	defer release()
	var id *identity.Identity
	var keep string
	err = e.store.View(ctx, func(tx store.Tx) error {
		var err error
		if id, err = tx.GetIdentity(ctx, a.IdentityID); err != nil {
			return err
		}
		creds, err := tx.ListCredentials(ctx, a.IdentityID, true)
		if err != nil {
			return err
		}
		for _, c := range creds {
			if c.System == a.System && c.Rule == a.Rule {
				keep = c.Fingerprint // the newest active one wins
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	ov, ok := e.conn(a.System).(connector.OverlapRotator)
	if !ok {
		return fmt.Errorf("system %s no longer rotates with overlap", a.System)
	}
	op := connector.Op{IdempotencyKey: "retire/" + a.IdentityID + "/" + a.System + "/" + a.Rule}
	if err := e.call(ctx, a.System, calls, func(ctx context.Context) error {
		return ov.RetireCredentials(ctx, op, connector.Account{IdentityID: id.ID, Name: id.ExternalID, Kind: id.Kind, Attributes: id.Attributes}, keep)
	}); err != nil {
		return err
	}
	return e.store.Update(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, audit.New(e.now().UTC(), System.ID, "credentials.retired", id.ID, "", map[string]any{"system": a.System, "rule": a.Rule, "kept": keep}))
	})
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
		var c *store.Case
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
func (e *Engine) recordRuns(ctx context.Context, c *store.Case, results <-chan systemRun, n int, fail func(string, error)) bool {
	var moved store.CaseStatus
	for n > 0 {
		batch := []systemRun{<-results}
		n--
		if n > 0 {
			t := time.NewTimer(recordWindow)
		gather:
			for n > 0 {
				select {
				case r := <-results:
					batch = append(batch, r)
					n--
				case <-t.C:
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
	return moved == store.CaseCompleted || moved == store.CaseFailed
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
func (e *Engine) runSystem(ctx context.Context, c *store.Case, id *identity.Identity, system string, lastAttempt bool) systemRun {
	key := c.IdentityID + "/" + system
	fail := func(err error) systemRun {
		for i := range c.Steps {
			if s := &c.Steps[i]; s.System == system && s.Status == store.StepPending {
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
	var cur *store.Case
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

// lockWaits is how many call deadlines a run waits for the (identity,
// system) lock: the run holding it may make several calls.
const lockWaits = 5

// lockAccess takes the (identity, system) lock of key, in this process
// and, where the store is shared, across replicas, waiting at most
// lockWaits call deadlines. The returned release frees it once every call
// tracked by calls has returned.
func (e *Engine) lockAccess(ctx context.Context, key string, calls *sync.WaitGroup) (release func(), err error) {
	wait, cancel := context.WithTimeout(ctx, lockWaits*e.callTimeout)
	defer cancel()
	unlock, err := e.accessLocks.lock(wait, key)
	if err != nil {
		return nil, fmt.Errorf("an earlier run for this identity has not finished after %s", lockWaits*e.callTimeout)
	}
	releases := []func(){unlock}
	release = func() {
		// After every call of the run has returned, timed out or not.
		go func() {
			calls.Wait()
			for i := len(releases) - 1; i >= 0; i-- {
				releases[i]()
			}
		}()
	}
	if l, ok := e.store.(store.AccessLocker); ok {
		r, err := l.LockAccess(wait, key)
		if err != nil {
			release()
			return nil, fmt.Errorf("an earlier run for this identity (here or on another replica) has not finished after %s: %v", lockWaits*e.callTimeout, err)
		}
		releases = append(releases, r)
	}
	return release, nil
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
func (e *Engine) callSystem(ctx context.Context, c *store.Case, id *identity.Identity, system string, lastAttempt, managed bool, calls *sync.WaitGroup) systemRun {
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
					if s.System == system && s.Status == store.StepPending && (s.Action == plan.RevokeGrant || s.Action == plan.RevokeCredential) {
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
		if s.Status == store.StepFailed {
			break
		}
		if s.Status != store.StepPending {
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
func runnableSteps(c *store.Case, failed map[string]bool) []*store.Step {
	blocked := map[string]bool{}
	for k := range failed {
		blocked[k] = true
	}
	var out []*store.Step
	for i := range c.Steps {
		s := &c.Steps[i]
		switch {
		case blocked[s.System]:
		case s.Status == store.StepFailed:
			blocked[s.System] = true
		case s.Status == store.StepPending:
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
		recs, err := e.applyTransactional(ctx, tx, c, id, e.now().UTC(), true, false)
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
func (e *Engine) applyTransactional(ctx context.Context, tx store.Tx, c *store.Case, id *identity.Identity, now time.Time, persist, fresh bool) ([]audit.Record, error) {
	var recs []audit.Record
	failed := map[string]bool{}
	for i := range c.Steps {
		s := &c.Steps[i]
		if s.Status == store.StepFailed {
			failed[s.System] = true
		}
		if s.Status.Final() || s.Status == store.StepAwaitingApproval || failed[s.System] || !e.transactional(s.System) {
			continue
		}
		if s.Action.Widening() && id.State != identity.Active {
			s.Status, s.Result, s.UpdatedAt = store.StepSuperseded, "not applied: the identity is "+string(id.State), now
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
		s.Status, s.Result, s.Attempts, s.LastError, s.UpdatedAt = store.StepDone, result, s.Attempts+1, "", now
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
	var moved store.CaseStatus
	err := e.store.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		var err error
		moved, err = e.settle(ctx, tx, caseID, e.now().UTC())
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
func (e *Engine) claimAccount(ctx context.Context, c *store.Case, id *identity.Identity, s *store.Step, conn connector.Connector, calls *sync.WaitGroup) (outcome, bool) {
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
		if cur.State != identity.Active || cs.Steps[s.Seq-1].Status != store.StepPending {
			return errClaimStale
		}
		return tx.PutAccount(ctx, &identity.Account{IdentityID: id.ID, System: s.System, Status: identity.AccountCreating, UpdatedAt: e.now().UTC()})
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
func pendingRevokes(c *store.Case, system string) bool {
	for _, s := range c.Steps {
		if s.System == system && s.Status == store.StepPending && (s.Action == plan.RevokeGrant || s.Action == plan.RevokeCredential) {
			return true
		}
	}
	return false
}

// pendingEnsure reports whether c has a pending ensure_account step in
// system.
func pendingEnsure(c *store.Case, system string) bool {
	for _, s := range c.Steps {
		if s.System == system && s.Status == store.StepPending && s.Action == plan.EnsureAccount {
			return true
		}
	}
	return false
}

// pendingDisable returns the system's pending disable_account step in c,
// unless an earlier step of the system failed for good.
func pendingDisable(c *store.Case, system string) *store.Step {
	for i := range c.Steps {
		s := &c.Steps[i]
		if s.System != system {
			continue
		}
		if s.Status == store.StepFailed {
			return nil
		}
		if s.Status == store.StepPending && s.Action == plan.DisableAccount {
			return s
		}
	}
	return nil
}

// callExternal calls the connector for one step. A widening step for an
// identity that is no longer active is superseded instead of called.
func (e *Engine) callExternal(ctx context.Context, c *store.Case, id *identity.Identity, s *store.Step, conn connector.Connector, calls *sync.WaitGroup) outcome {
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
		o.retireAt = e.now().Add(ov.RotationOverlap())
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
func (e *Engine) callStep(ctx context.Context, c *store.Case, id *identity.Identity, s *store.Step, conn connector.Connector, secret string) error {
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
			cred.ExpiresAt = e.now().Add(rule.TTL)
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

// recordOutcomes records, in one transaction that then settles the case,
// each outcome whose step is still pending: its effect in jml's tables and
// an audit record.
//
// It first locks the identity, as accepting an event about it does, so
// that a record and a later event apply one after the other on every
// backend. A widening call that landed for a step no longer pending (a
// later event superseded it meanwhile, planning without it) or for an
// identity no longer active is not recorded as access: it is undone by a
// compensating case opened in the same transaction (plan.Undo), which runs
// at once.
func (e *Engine) recordOutcomes(ctx context.Context, c *store.Case, outcomes []outcome) (store.CaseStatus, error) {
	var moved store.CaseStatus
	var undo *loaded
	err := e.store.Update(ctx, func(tx store.Tx) error {
		undo = nil
		id, err := tx.GetIdentity(ctx, c.IdentityID)
		if err != nil {
			return err
		}
		cur, err := tx.GetCase(ctx, c.ID)
		if err != nil {
			return err
		}
		now := e.now().UTC()
		var recs []audit.Record
		var landed []plan.Step // widening effects that must not stand
		for _, o := range outcomes {
			st := &cur.Steps[o.seq-1]
			applied := o.err == nil && o.superseded == "" && st.Action.Widening()
			if st.Status != store.StepPending {
				// Another run recorded it first (done), or a later event
				// superseded it while its call was in flight.
				if applied && st.Status == store.StepSuperseded {
					landed = append(landed, st.Step)
				}
				continue
			}
			switch {
			case applied && id.State != identity.Active:
				st.Status, st.Result, st.UpdatedAt = store.StepSuperseded, "applied after the identity became "+string(id.State)+"; undone", now
				landed = append(landed, st.Step)
			case o.superseded != "":
				st.Status, st.Result, st.UpdatedAt = store.StepSuperseded, o.superseded, now
			case o.err != nil:
				msg := o.err.Error()
				st.Attempts++
				st.LastError, st.UpdatedAt = msg, now
				action := "step.retrying"
				if o.final {
					st.Status, action = store.StepFailed, "step.failed"
				}
				recs = append(recs, audit.New(now, System.ID, action, cur.IdentityID, cur.ID, map[string]any{"seq": st.Seq, "step": st.Step.String(), "error": msg, "attempt": st.Attempts}))
				if o.final && st.Action.Widening() && !o.unmanaged && !connector.Permanent(o.err) {
					// It gave up, but its last call (a timeout, a lost
					// answer) may have landed: assume it did.
					landed = append(landed, st.Step)
				}
				if o.unmanaged {
					rec, err := e.accountFinding(ctx, tx, id, st.System, identity.FindingAccountExistsUnmanaged, now,
						fmt.Sprintf("account %q exists in %s and jml did not create it; jml left it as it is", id.ExternalID, st.System))
					if err != nil {
						return err
					}
					recs = append(recs, rec...)
				}
			default:
				result, err := e.record(ctx, tx, cur, st, o.secret, now, false)
				if err != nil {
					return err
				}
				if o.note != "" {
					result += " " + o.note
				}
				if !o.retireAt.IsZero() {
					if err := tx.Enqueue(ctx, RetireCredentialsArgs{IdentityID: cur.IdentityID, System: st.System, Rule: st.Rule}, o.retireAt); err != nil {
						return err
					}
					result += "; the previous secret works until " + o.retireAt.UTC().Format(time.RFC3339)
				}
				if o.adopted {
					result = "adopted: an account of the name existed, reset and taken over; " + result
					rec, err := e.accountFinding(ctx, tx, id, st.System, identity.FindingAccountAdopted, now,
						fmt.Sprintf("account %q existed in %s, not created by jml; adopt: true reset it (password, sessions, privileges) and jml took it over", id.ExternalID, st.System))
					if err != nil {
						return err
					}
					recs = append(recs, rec...)
				}
				if st.Action == plan.EnsureAccount {
					rec, err := e.resolveAccountFinding(ctx, tx, id.ID, st.System, now)
					if err != nil {
						return err
					}
					recs = append(recs, rec...)
				}
				st.Status, st.Result, st.Attempts, st.LastError, st.UpdatedAt = store.StepDone, result, st.Attempts+1, "", now
				e.metrics.stepsDone.WithLabelValues(st.System, string(st.Action)).Inc()
				recs = append(recs, audit.New(now, System.ID, "step.done", cur.IdentityID, cur.ID, map[string]any{"seq": st.Seq, "step": st.Step.String(), "result": result}))
			}
			if err := tx.UpdateStep(ctx, st); err != nil {
				return err
			}
		}
		if len(landed) > 0 {
			var rec audit.Record
			if undo, rec, err = e.openUndo(ctx, tx, id, cur.ID, landed, now); err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		if err := tx.AppendAudit(ctx, recs...); err != nil {
			return err
		}
		// cur holds every step as now written: settle from it.
		moved, err = e.settleCase(ctx, tx, cur, e.now().UTC())
		return err
	})
	if err != nil {
		return "", err
	}
	e.metrics.countSettled(moved)
	if undo != nil {
		e.startCases([]loaded{*undo})
	}
	return moved, nil
}

// accountFinding records a finding about the identity's account in a
// system, with its audit record (none if one is open already).
func (e *Engine) accountFinding(ctx context.Context, tx store.Tx, id *identity.Identity, system, kind string, now time.Time, msg string) ([]audit.Record, error) {
	f := &identity.Finding{ID: e.newID("fnd_"), Kind: kind, IdentityID: id.ID, System: system, CreatedAt: now, Message: msg}
	ok, err := tx.InsertFinding(ctx, f)
	if err != nil || !ok {
		return nil, err
	}
	e.metrics.findings.Inc()
	return []audit.Record{audit.New(now, System.ID, "finding.created", id.ID, "", map[string]any{"finding": f.ID, "kind": kind, "system": system})}, nil
}

// CaseUndo is the type of cases the engine opens to take back a widening
// effect that landed after a later event planned without it.
const CaseUndo identity.EventType = "undo"

// openUndo stores, in tx, a case that undoes the landed widening steps of
// case from (plan.Undo), with its job, and returns it for the fast path
// with the audit record that explains it. It returns a nil case when the
// identity is still due everything that landed.
func (e *Engine) openUndo(ctx context.Context, tx store.Tx, id *identity.Identity, from string, landed []plan.Step, now time.Time) (*loaded, audit.Record, error) {
	pol := e.Policy()
	grants, err := tx.ListGrants(ctx, id.ID)
	if err != nil {
		return nil, audit.Record{}, err
	}
	creds, err := tx.ListCredentials(ctx, id.ID, true)
	if err != nil {
		return nil, audit.Record{}, err
	}
	accounts, err := tx.ListAccounts(ctx, id.ID)
	if err != nil {
		return nil, audit.Record{}, err
	}
	steps := plan.Undo(plan.Input{After: id, Policy: pol, Desired: pol.Desired(id), Grants: grants, Credentials: creds, Accounts: accounts, Possible: landed, Now: now})
	summary := make([]string, len(landed))
	for i, s := range landed {
		summary[i] = s.String()
	}
	data := map[string]any{"case": from, "landed": summary, "state": string(id.State)}
	if len(steps) == 0 {
		return nil, audit.New(now, System.ID, "steps.landed_late", id.ID, from, data), nil
	}
	c := &store.Case{ID: e.newID("case_"), IdentityID: id.ID, Type: CaseUndo, Status: store.CaseRunning, SubmittedBy: System.ID, CreatedAt: now, UpdatedAt: now}
	for i, s := range steps {
		c.Steps = append(c.Steps, store.Step{Seq: i + 1, Step: s, Status: store.StepPending, UpdatedAt: now})
	}
	if err := tx.InsertCase(ctx, c); err != nil {
		return nil, audit.Record{}, err
	}
	runAt := time.Time{}
	if e.fastPathGrace > 0 {
		runAt = now.Add(e.fastPathGrace)
	}
	if err := tx.Enqueue(ctx, ApplyCaseArgs{CaseID: c.ID}, runAt); err != nil {
		return nil, audit.Record{}, err
	}
	data["undo"], data["steps"] = c.ID, planSummary(c.Steps)
	var l *loaded
	if e.fastPathGrace > 0 {
		l = &loaded{c: c, id: id}
	}
	return l, audit.New(now, System.ID, "steps.landed_late", id.ID, from, data), nil
}

func credentialID(caseID string, seq int) string {
	h := sha256.Sum256([]byte(caseID + "/" + strconv.Itoa(seq)))
	return "cred_" + hex.EncodeToString(h[:13])
}

func (e *Engine) newSecret(s *store.Step) (string, error) {
	rule := e.Policy().CredentialRule(s.Rule)
	if rule == nil {
		return "", identity.Errorf(identity.Conflict, "credential rule %q is no longer in the policy", s.Rule)
	}
	if rule.Type == policy.Password {
		return vault.NewPassword(e.rand)
	}
	return vault.NewSecret(e.rand, vault.APIKeyPrefix)
}

// record writes a step's effect to jml's own tables and returns the result
// text for the case. For the built-in vault this is the effect itself. A
// fresh identity (created in this transaction) holds no grant yet, so its
// grants are inserted where others are upserted (a retried step may find
// its grant already there).
func (e *Engine) record(ctx context.Context, tx store.Tx, c *store.Case, s *store.Step, secret string, now time.Time, fresh bool) (string, error) {
	switch s.Action {
	case plan.Grant:
		if s.Reapply {
			return "re-applied; the recorded grant is unchanged", nil
		}
		g := &identity.Grant{IdentityID: c.IdentityID, Entitlement: s.Entitlement, System: s.System, Reason: s.Reason, CaseID: c.ID, GrantedAt: now, ApprovedBy: s.DecidedBy}
		if s.Duration > 0 {
			g.ExpiresAt = now.Add(s.Duration)
			if err := tx.Enqueue(ctx, ExpireGrantArgs{IdentityID: c.IdentityID, Entitlement: s.Entitlement, ExpiresAt: g.ExpiresAt}, g.ExpiresAt); err != nil {
				return "", err
			}
		}
		put := tx.PutGrant
		if fresh {
			put = tx.InsertGrant
		}
		if err := put(ctx, g); err != nil {
			return "", err
		}
		if !g.ExpiresAt.IsZero() {
			return "granted until " + g.ExpiresAt.Format(time.RFC3339), nil
		}
		return "granted", nil
	case plan.RevokeGrant:
		ok, err := tx.DeleteGrant(ctx, c.IdentityID, s.Entitlement)
		if err != nil {
			return "", err
		}
		if !ok {
			return "was not held", nil
		}
		return "revoked", nil
	case plan.EnsureAccount, plan.EnableAccount:
		return "account active", tx.PutAccount(ctx, &identity.Account{IdentityID: c.IdentityID, System: s.System, Status: identity.AccountActive, UpdatedAt: now})
	case plan.DisableAccount:
		return "account disabled", tx.PutAccount(ctx, &identity.Account{IdentityID: c.IdentityID, System: s.System, Status: identity.AccountDisabled, UpdatedAt: now})
	case plan.DeleteAccount:
		return "account deleted", tx.PutAccount(ctx, &identity.Account{IdentityID: c.IdentityID, System: s.System, Status: identity.AccountDeleted, UpdatedAt: now})
	case plan.RevokeCredential:
		ok, err := tx.RevokeCredential(ctx, s.CredentialID, now)
		if err != nil {
			return "", err
		}
		if ok {
			e.metrics.credentialsRevoked.Inc()
		}
		if !ok {
			return "was not active", nil
		}
		return "revoked", nil
	case plan.IssueCredential, plan.RotateCredential:
		rule := e.Policy().CredentialRule(s.Rule)
		if rule == nil {
			return "", identity.Errorf(identity.Conflict, "credential rule %q is no longer in the policy", s.Rule)
		}
		old := s.CredentialID
		id := credentialID(c.ID, s.Seq)
		sealed, err := e.sealer.Seal(e.rand, []byte(secret), []byte(id))
		if err != nil {
			return "", err
		}
		cred := &store.StoredCredential{Credential: identity.Credential{ID: id, IdentityID: c.IdentityID, Rule: rule.Name, System: s.System, Type: string(rule.Type),
			Status: identity.CredentialActive, Marker: secretMarker(rule.Type), Fingerprint: vault.Fingerprint(secret), IssuedAt: now, CaseID: c.ID}, Sealed: sealed}
		if rule.Type == policy.APIKey {
			cred.Hash = vault.Hash(secret)
		}
		if rule.TTL > 0 {
			cred.ExpiresAt = now.Add(rule.TTL)
		}
		if err := tx.InsertCredential(ctx, cred); err != nil {
			return "", err
		}
		s.CredentialID = id
		e.metrics.credentialsIssued.Inc()
		if s.Action == plan.RotateCredential && old != "" {
			if _, err := tx.RevokeCredential(ctx, old, now); err != nil {
				return "", err
			}
			return fmt.Sprintf("issued %s (fingerprint %s), revoked %s", id, cred.Fingerprint, old), nil
		}
		return fmt.Sprintf("issued %s (fingerprint %s)", id, cred.Fingerprint), nil
	}
	return "", fmt.Errorf("unknown action %q", s.Action)
}

// secretMarker is the public marker secrets of type t start with.
func secretMarker(t policy.CredentialType) string {
	if t == policy.APIKey {
		return vault.APIKeyPrefix
	}
	return ""
}

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
		p := Principal{ID: rec.Principal}
		c, id, err := e.apply(ctx, tx, p, rec, cur, &counters)
		if err != nil {
			var ie *identity.Error
			if !errors.As(err, &ie) {
				return err
			}
			rejected = err
			return nil
		}
		rec.Status, rec.CaseID, rec.IdentityID = store.EventApplied, c.ID, id.ID
		return tx.UpdateEvent(ctx, rec)
	})
	if err != nil {
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
		return tx.AppendAudit(ctx, audit.New(e.now(), System.ID, "event.rejected", rec.IdentityID, "", map[string]any{"event": rec.ID, "error": rec.Error}))
	})
}

// expireGrant opens a case that revokes a time-bound grant whose time is
// up, unless it was revoked or renewed since.
func (e *Engine) expireGrant(ctx context.Context, a ExpireGrantArgs) error {
	return e.store.Update(ctx, func(tx store.Tx) error {
		grants, err := tx.ListGrants(ctx, a.IdentityID)
		if err != nil {
			return err
		}
		var g *identity.Grant
		for i := range grants {
			if grants[i].Entitlement == a.Entitlement {
				g = &grants[i]
			}
		}
		if g == nil || g.ExpiresAt.IsZero() || !g.ExpiresAt.Equal(a.ExpiresAt.UTC()) {
			return nil
		}
		now := e.now().UTC()
		c := &store.Case{ID: e.newID("case_"), IdentityID: a.IdentityID, Type: CaseExpiry, Status: store.CaseRunning, SubmittedBy: System.ID, CreatedAt: now, UpdatedAt: now,
			Steps: []store.Step{{Seq: 1, Step: plan.Step{Action: plan.RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: "expired at " + g.ExpiresAt.Format(time.RFC3339)}, Status: store.StepPending, UpdatedAt: now}}}
		if err := tx.InsertCase(ctx, c); err != nil {
			return err
		}
		if err := tx.Enqueue(ctx, ApplyCaseArgs{CaseID: c.ID}, time.Time{}); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, audit.New(now, System.ID, "grant.expired", a.IdentityID, c.ID, map[string]any{"entitlement": g.Entitlement, "expiresAt": g.ExpiresAt}))
	})
}
