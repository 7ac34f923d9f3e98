package engine

// Grant expiry: a time-bound grant (an entitlement's maxDuration) is
// revoked at its expiry by an expiry case of one revoke_grant step, opened
// by the grant's timer (a River job due at the expiry) or, if that timer
// was lost or late, by the periodic sweep. Either opens the case in a
// transaction that locks the identity and first looks for an open step
// that already revokes the grant, so a grant expires once however many
// timers, sweeps and replicas reach it. The expired grant is not granted
// again by itself: the next event about the identity plans it afresh,
// with its approval (docs/policy.md, maxDuration).

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jobs"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/store"
)

// ExpireGrantArgs is the timer of a time-bound grant, due at ExpiresAt.
type ExpireGrantArgs struct {
	IdentityID  string    `json:"identityId"`
	Entitlement string    `json:"entitlement"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

func (ExpireGrantArgs) Kind() string { return "jml.expire_grant" }

// ExpirySweepArgs is the periodic job that revokes every grant past its
// expiry, whatever became of its timer.
type ExpirySweepArgs struct{}

func (ExpirySweepArgs) Kind() string { return "jml.expiry_sweep" }

// DefaultExpirySweep is how often jml serve sweeps for grants past their
// expiry unless its config says otherwise.
const DefaultExpirySweep = time.Minute

// expirySlack is how early a timer may fire and still expire its grant:
// River's clock and the engine's may differ by a little, and a timer that
// fired a moment early must not reschedule itself to the same instant.
const expirySlack = time.Second

// sweepBatch bounds the grants one sweep reads; a sweep that finds that
// many runs again at once.
const sweepBatch = 500

// expireGrant is the jml.expire_grant job: it expires the grant if its
// time is up, reschedules the timer if the grant's expiry moved later, and
// otherwise says at debug level why there was nothing to do.
func (e *Engine) expireGrant(ctx context.Context, a ExpireGrantArgs) error {
	out, err := e.expire(ctx, a.IdentityID, a.Entitlement, true)
	if err != nil {
		return err
	}
	if out.caseID == "" {
		e.log.Debug("grant expiry timer: nothing to do", "identity", a.IdentityID, "entitlement", a.Entitlement, "due", a.ExpiresAt, "why", out.why)
		return nil
	}
	e.runExpiry(ctx, out.caseID)
	return nil
}

// expiryOutcome is what one look at a grant did: the expiry case it
// opened, or why it opened none.
type expiryOutcome struct {
	caseID string
	why    string
}

// expire opens the expiry case of the identity's grant of entitlement if
// its time is up. When it is not (the grant was renewed, or the timer fired
// early) and reschedule is set, a timer is set at the grant's expiry.
func (e *Engine) expire(ctx context.Context, identityID, entitlement string, reschedule bool) (expiryOutcome, error) {
	var out expiryOutcome
	err := e.store.Update(ctx, func(tx store.Tx) error {
		out = expiryOutcome{}
		now := e.Now().UTC()
		// Locks the identity: a concurrent timer, sweep or event about it
		// (on another replica too) waits for this transaction, then sees
		// its case.
		id, err := tx.GetIdentity(ctx, identityID)
		if store.IsNotFound(err) {
			out.why = "the identity no longer exists"
			return nil
		}
		if err != nil {
			return err
		}
		grants, err := tx.ListGrants(ctx, id.ID)
		if err != nil {
			return err
		}
		var g *identity.Grant
		for i := range grants {
			if grants[i].Entitlement == entitlement {
				g = &grants[i]
			}
		}
		switch {
		case g == nil:
			out.why = "the grant is no longer held"
			return nil
		case g.ExpiresAt.IsZero():
			out.why = "the grant no longer expires"
			return nil
		case g.ExpiresAt.After(now.Add(expirySlack)):
			out.why = "the grant now expires at " + g.ExpiresAt.Format(time.RFC3339Nano)
			if reschedule {
				out.why += "; its timer is set for then"
				return tx.Enqueue(ctx, ExpireGrantArgs{IdentityID: id.ID, Entitlement: g.Entitlement, ExpiresAt: g.ExpiresAt}, g.ExpiresAt)
			}
			return nil
		}
		open, err := tx.ListOpenSteps(ctx, id.ID)
		if err != nil {
			return err
		}
		for _, s := range open {
			if s.Action == plan.RevokeGrant && s.Entitlement == g.Entitlement && s.Status == cases.StepPending {
				out.why = "case " + s.CaseID + " already revokes it"
				return nil
			}
		}
		c := &cases.Case{ID: e.newID("case_"), IdentityID: id.ID, Type: CaseExpiry, Status: cases.Running, SubmittedBy: System.ID, CreatedAt: now, UpdatedAt: now,
			Steps: []cases.Step{{Seq: 1, Step: plan.Step{Action: plan.RevokeGrant, System: g.System, Entitlement: g.Entitlement,
				Reason: "expired at " + g.ExpiresAt.Format(time.RFC3339)}, Status: cases.StepPending, UpdatedAt: now}}}
		if err := tx.InsertCase(ctx, c); err != nil {
			return err
		}
		// The case runs as soon as this commits (runExpiry); its job is
		// the fallback if this process dies first or that run fails, due
		// when an accepted event's would be.
		runAt := time.Time{}
		if e.fastPathGrace > 0 {
			runAt = now.Add(e.fastPathGrace)
		}
		if err := tx.Enqueue(ctx, ApplyCaseArgs{CaseID: c.ID}, runAt); err != nil {
			return err
		}
		out.caseID = c.ID
		return tx.AppendAudit(ctx, audit.New(now, System.ID, "grant.expired", id.ID, c.ID, map[string]any{
			"entitlement": g.Entitlement, "system": g.System, "expiresAt": g.ExpiresAt, "grantedAt": g.GrantedAt, "reason": g.Reason}))
	})
	return out, err
}

// runExpiry runs an expiry case at once; a failure is left to the case's
// own job, already scheduled.
func (e *Engine) runExpiry(ctx context.Context, caseID string) {
	unlock := e.caseLocks.hold(caseID)
	defer unlock()
	if err := e.RunCase(ctx, caseID, false); err != nil {
		e.log.Warn("expiry case left to its job", "case", caseID, "error", err)
	}
}

// SweepExpired opens an expiry case for every grant past its expiry that
// no open step revokes yet, runs them, and returns how many it opened. It
// is the jml.expiry_sweep job, which jml serve runs periodically on one
// replica at a time (River's leader); a timer that fired in time leaves
// it nothing to do, and it says so.
func (e *Engine) SweepExpired(ctx context.Context) (int, error) {
	opened, pending := 0, 0
	for {
		var due []identity.Grant
		if err := e.store.View(ctx, func(tx store.Tx) error {
			var err error
			due, err = tx.ListExpiringGrants(ctx, e.Now().UTC(), sweepBatch)
			return err
		}); err != nil {
			return opened, fmt.Errorf("expiry sweep: %w", err)
		}
		before := opened
		for _, g := range due {
			out, err := e.expire(ctx, g.IdentityID, g.Entitlement, false)
			if err != nil {
				return opened, fmt.Errorf("expiry sweep: %s of %s: %w", g.Entitlement, g.IdentityID, err)
			}
			if out.caseID == "" {
				pending++
				e.log.Debug("expiry sweep: grant past its expiry left alone", "identity", g.IdentityID, "entitlement", g.Entitlement, "expiresAt", g.ExpiresAt, "why", out.why)
				continue
			}
			opened++
			e.log.Info("expiry sweep revoked a grant past its expiry", "identity", g.IdentityID, "entitlement", g.Entitlement, "expiresAt", g.ExpiresAt, "case", out.caseID)
			e.runExpiry(ctx, out.caseID)
		}
		// A full batch whose every grant got a case may hide more behind
		// it; a batch with grants left alone (their case is running) would
		// read the same rows again.
		if len(due) < sweepBatch || opened-before < len(due) {
			break
		}
	}
	if opened == 0 && pending == 0 {
		e.log.Debug("expiry sweep: no grant is past its expiry")
	} else if opened == 0 {
		e.log.Debug("expiry sweep: every grant past its expiry already has a case revoking it", "grants", pending)
	}
	return opened, nil
}

// registerExpiry declares the timer of a time-bound grant and the periodic
// sweep behind it, every sweepEvery (DefaultExpirySweep when zero).
func (e *Engine) registerExpiry(r *jobs.Registry, sweepEvery time.Duration) {
	if sweepEvery <= 0 {
		sweepEvery = DefaultExpirySweep
	}
	jobs.AddFunc(r, "engine/expiry.go", "revokes a time-bound grant at its expiry, or sets itself again if it moved", func(ctx context.Context, job *river.Job[ExpireGrantArgs]) error {
		return e.expireGrant(ctx, job.Args)
	})
	jobs.AddFunc(r, "engine/expiry.go", "revokes every grant past its expiry whatever became of its timer", func(ctx context.Context, job *river.Job[ExpirySweepArgs]) error {
		_, err := e.SweepExpired(ctx)
		return err
	})
	r.Every(ExpirySweepArgs{}, sweepEvery)
}
