package engine

// Durable jobs: their arguments, the River workers that run them, and
// what the timers among them do (effective events, grant expiry, the end
// of a rotation overlap).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/retention"
	"github.com/jml-dev/jml/internal/store"
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

// RetireCredentialsArgs ends a rotation overlap: every secret of the
// identity's account in System but its current credential of Rule is
// removed.
type RetireCredentialsArgs struct {
	IdentityID string `json:"identityId"`
	System     string `json:"system"`
	Rule       string `json:"rule"`
}

func (RetireCredentialsArgs) Kind() string { return "jml.retire_credentials" }

// DeleteAccountArgs is the timer of a departed identity's account, set by
// the retention participant.
type DeleteAccountArgs = retention.DeleteAccountArgs

// Workers returns the River workers of the engine's jobs.
func (e *Engine) Workers() *river.Workers {
	w := river.NewWorkers()
	river.AddWorker(w, &applyCaseWorker{e: e})
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, job *river.Job[EffectiveEventArgs]) error {
		return e.runEffective(ctx, job.Args.EventID)
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, job *river.Job[ExpireGrantArgs]) error {
		return e.expireGrant(ctx, job.Args)
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, job *river.Job[ExpirySweepArgs]) error {
		_, err := e.SweepExpired(ctx)
		return err
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, job *river.Job[RetireCredentialsArgs]) error {
		return e.RetireCredentials(ctx, job.Args)
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, job *river.Job[DeleteAccountArgs]) error {
		return e.runRetention(ctx, job.Args)
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, job *river.Job[ReopenFindingArgs]) error {
		return e.reopenFinding(ctx, job.Args)
	}))
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
		return tx.AppendAudit(ctx, audit.New(e.Now().UTC(), System.ID, "credentials.retired", id.ID, "", map[string]any{"system": a.System, "rule": a.Rule, "kept": keep}))
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
		c, id, err := e.apply(ctx, tx, p, rec, cur, &counters, func(c *store.Case) error { return tx.InsertCase(ctx, c) })
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
