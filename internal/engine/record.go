package engine

// Recording what a run did: each step's outcome under the identity's
// lock, what it changes in the records, and the undo case for widening
// that landed after a later plan went without it.

import (
	"context"
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/findings"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/vault"
)

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
func (e *Engine) recordOutcomes(ctx context.Context, c *cases.Case, outcomes []outcome) (cases.Status, error) {
	var moved cases.Status
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
		now := e.Now().UTC()
		var recs []audit.Record
		var landed []plan.Step // widening effects that must not stand
		for _, o := range outcomes {
			st := &cur.Steps[o.seq-1]
			applied := o.err == nil && o.superseded == "" && st.Action.Widening()
			if st.Status != cases.StepPending {
				// Another run recorded it first (done), or a later event
				// superseded it while its call was in flight.
				if applied && st.Status == cases.StepSuperseded {
					landed = append(landed, st.Step)
				}
				continue
			}
			switch {
			case applied && id.State != identity.Active:
				st.Status, st.Result, st.UpdatedAt = cases.StepSuperseded, "applied after the identity became "+string(id.State)+"; undone", now
				landed = append(landed, st.Step)
			case o.superseded != "":
				st.Status, st.Result, st.UpdatedAt = cases.StepSuperseded, o.superseded, now
			case o.err != nil:
				msg := o.err.Error()
				st.Attempts++
				st.LastError, st.UpdatedAt = msg, now
				action := "step.retrying"
				if o.final {
					st.Status, action = cases.StepFailed, "step.failed"
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
					rec, err := findings.ResolveAccount(ctx, tx, id.ID, st.System, now)
					if err != nil {
						return err
					}
					recs = append(recs, rec...)
				}
				st.Status, st.Result, st.Attempts, st.LastError, st.UpdatedAt = cases.StepDone, result, st.Attempts+1, "", now
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
		moved, err = e.settleCase(ctx, tx, cur, e.Now().UTC())
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
// system (package findings), and counts it.
func (e *Engine) accountFinding(ctx context.Context, tx store.Tx, id *identity.Identity, system, kind string, now time.Time, msg string) ([]audit.Record, error) {
	recs, err := findings.OpenAccount(ctx, tx, e.newID, id.ID, system, kind, msg, now)
	if len(recs) > 0 {
		e.metrics.findings.Inc()
	}
	return recs, err
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
	c := &cases.Case{ID: e.newID("case_"), IdentityID: id.ID, Type: CaseUndo, Status: cases.Running, SubmittedBy: System.ID, CreatedAt: now, UpdatedAt: now}
	for i, s := range steps {
		c.Steps = append(c.Steps, cases.Step{Seq: i + 1, Step: s, Status: cases.StepPending, UpdatedAt: now})
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
	data["undo"], data["steps"] = c.ID, cases.Summary(c.Steps)
	var l *loaded
	if e.fastPathGrace > 0 {
		l = &loaded{c: c, id: id}
	}
	return l, audit.New(now, System.ID, "steps.landed_late", id.ID, from, data), nil
}

// record writes a step's effect to jml's own tables and returns the result
// text for the case. For the built-in vault this is the effect itself. A
// fresh identity (created in this transaction) holds no grant yet, so its
// grants are inserted where others are upserted (a retried step may find
// its grant already there).
func (e *Engine) record(ctx context.Context, tx store.Tx, c *cases.Case, s *cases.Step, secret string, now time.Time, fresh bool) (string, error) {
	switch s.Action {
	case plan.Grant:
		if s.Reapply {
			return "re-applied; the recorded grant is unchanged", nil
		}
		g := &identity.Grant{IdentityID: c.IdentityID, Entitlement: s.Entitlement, System: s.System, Reason: s.Reason, CaseID: c.ID, GrantedAt: now, ApprovedBy: s.DecidedBy}
		if s.Duration > 0 {
			// Stored times are microseconds: the timer carries the
			// expiry as the store keeps it.
			g.ExpiresAt = now.Add(s.Duration).Truncate(time.Microsecond)
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
