package engine

import (
	"context"
	"slices"
	"strings"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// This file holds the read models: what the API and the CLI show of
// identities, cases, findings and the audit trail. Each method applies the
// principal's reach, so a caller limited to its own data gets exactly what it
// may see, and what it may not answers as a missing ID does.

// IdentityView is an identity with its access and history. Timeline is
// audit data: it is filled only for the roles that read the audit trail,
// and is absent for the others.
type IdentityView struct {
	identity.Identity
	Grants      []identity.Grant      `json:"grants"`
	Credentials []identity.Credential `json:"credentials"`
	Accounts    []identity.Account    `json:"accounts"`
	Findings    []identity.Finding    `json:"findings"`
	Cases       []cases.Case          `json:"cases"`
	// Scheduled is what will happen to the identity at a known time
	// (its scheduled events, its grants' expiries), soonest first.
	Scheduled []Due          `json:"scheduled"`
	Timeline  []audit.Record `json:"timeline,omitzero"`
}

// loadIdentityView reads everything about one identity in one transaction,
// its audit timeline only when withTimeline. It applies no authorisation:
// the API and the CLI go through Engine.IdentityView.
func loadIdentityView(ctx context.Context, s store.Store, id string, withTimeline bool) (*IdentityView, error) {
	var v IdentityView
	if withTimeline {
		if err := s.SealAudit(ctx); err != nil {
			return nil, err
		}
	}
	err := s.View(ctx, func(tx store.Tx) error {
		idn, err := tx.GetIdentity(ctx, id)
		if err != nil {
			return err
		}
		v.Identity = *idn
		if v.Grants, err = tx.ListGrants(ctx, id); err != nil {
			return err
		}
		if v.Credentials, err = tx.ListCredentials(ctx, id, false); err != nil {
			return err
		}
		if v.Accounts, err = tx.ListAccounts(ctx, id); err != nil {
			return err
		}
		if v.Findings, err = tx.ListFindings(ctx, store.FindingFilter{IdentityID: id}); err != nil {
			return err
		}
		if v.Cases, err = tx.ListCases(ctx, id, 100); err != nil {
			return err
		}
		evs, err := tx.ListScheduled(ctx, id, maxScheduledPerIdentity)
		if err != nil {
			return err
		}
		v.Scheduled = dueOf(evs, v.Grants)
		if !withTimeline {
			return nil
		}
		v.Timeline = []audit.Record{}
		return audit.Scan(ctx, tx, id, func(r *audit.Record) error { v.Timeline = append(v.Timeline, *r); return nil })
	})
	if err != nil {
		return nil, err
	}
	// Empty lists are [] in JSON, never null.
	v.Grants, v.Credentials, v.Accounts = nonNil(v.Grants), nonNil(v.Credentials), nonNil(v.Accounts)
	v.Findings, v.Cases = nonNil(v.Findings), nonNil(v.Cases)
	return &v, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// notYours is what a principal limited to its own gets for what is not:
// the same answer as for what does not exist, so that IDs cannot be probed.
func notYours(what, id string) error {
	return identity.Errorf(identity.NotFound, "%s %q not found", what, id)
}

// mayUse refuses a principal whose role lacks permission act anywhere.
func mayUse(p Principal, act Permission) error {
	if !Allowed(p.Role, act) {
		return identity.Errorf(identity.Forbidden, "role %s may not %s", p.Role, act)
	}
	return nil
}

// IdentityView is one identity as p may see it: the timeline only for the
// roles that read the audit trail, and for an identity p may not read, the
// answer a missing ID gets.
func (e *Engine) IdentityView(ctx context.Context, p Principal, id string) (*IdentityView, error) {
	if err := mayUse(p, PermRead); err != nil {
		return nil, err
	}
	v, err := loadIdentityView(ctx, e.store, id, Allowed(p.Role, PermAudit))
	if err == nil && !p.MaySee(PermRead, &v.Identity) {
		err = notYours("identity", id)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Identities lists identities matching f; for a principal limited to its
// own, only those it may see (f.VisibleTo is set from p, whatever f says).
// An entitlement or system the policy does not name is refused, naming it.
func (e *Engine) Identities(ctx context.Context, p Principal, f store.IdentityFilter) ([]identity.Identity, error) {
	if err := mayUse(p, PermRead); err != nil {
		return nil, err
	}
	if err := e.checkAccessFilter(f); err != nil {
		return nil, err
	}
	f.VisibleTo = ""
	if ReachOf(p.Role, PermRead) == Own {
		f.VisibleTo = p.IdentityID
	}
	var out []identity.Identity
	err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListIdentities(ctx, f)
		return err
	})
	return nonNil(out), err
}

// Case is one case, if p may read its identity.
func (e *Engine) Case(ctx context.Context, p Principal, id string) (*cases.Case, error) {
	if err := mayUse(p, PermRead); err != nil {
		return nil, err
	}
	var c *cases.Case
	err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		if c, err = tx.GetCase(ctx, id); err != nil {
			return err
		}
		if ReachOf(p.Role, PermRead) == Anywhere {
			return nil
		}
		idn, err := tx.GetIdentity(ctx, c.IdentityID)
		if err != nil {
			return err
		}
		if !p.MaySee(PermRead, idn) {
			return notYours("case", c.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CaseTypes are the types a case has: its event's, or the type of a case
// the engine opens itself.
var CaseTypes = append(append([]identity.EventType{}, identity.EventTypes...), CaseExpiry, CaseRetention, CaseUndo)

// CaseStatuses are the statuses a stored case has.
var CaseStatuses = []cases.Status{cases.Running, cases.AwaitingApproval, cases.Completed, cases.Failed}

// Cases lists the cases f selects, newest first, without their steps. A
// value outside CaseStatuses or CaseTypes, or a cursor that is not a case
// ID, is refused naming the parameter. f.IdentityID may name the identity
// as SOURCE/EXTERNAL_ID; one that does not exist, or that p may not read,
// is refused alike. For a principal limited to its own, only the cases of
// identities it may see (f.VisibleTo is set from p, whatever f says).
func (e *Engine) Cases(ctx context.Context, p Principal, f store.CaseFilter) ([]cases.Case, error) {
	if err := mayUse(p, PermRead); err != nil {
		return nil, err
	}
	if f.Status != "" && !slices.Contains(CaseStatuses, f.Status) {
		return nil, identity.FieldError("status", "unknown case status %q (want one of %v)", f.Status, CaseStatuses)
	}
	if f.Type != "" && !slices.Contains(CaseTypes, f.Type) {
		return nil, identity.FieldError("type", "unknown case type %q (want one of %v)", f.Type, CaseTypes)
	}
	if f.After != "" && !strings.HasPrefix(f.After, "case_") {
		return nil, identity.FieldError("after", "must be a case ID (case_…): the next of the previous page")
	}
	f.VisibleTo = ""
	if ReachOf(p.Role, PermRead) == Own {
		f.VisibleTo = p.IdentityID
	}
	var out []cases.Case
	err := e.store.View(ctx, func(tx store.Tx) error {
		if f.IdentityID != "" {
			id, err := readableIdentity(ctx, tx, p, f.IdentityID)
			if identity.ErrorCode(err) == identity.NotFound {
				return identity.FieldError("identity", "%s", identity.ErrorMessage(err))
			}
			if err != nil {
				return err
			}
			f.IdentityID = id.ID
		}
		var err error
		out, err = tx.FindCases(ctx, f)
		return err
	})
	return nonNil(out), err
}

// Findings lists findings matching f. Findings are an operator's view of
// every identity, so a principal limited to its own may not list them.
func (e *Engine) Findings(ctx context.Context, p Principal, f store.FindingFilter) ([]identity.Finding, error) {
	if ReachOf(p.Role, PermRead) != Anywhere {
		return nil, identity.Errorf(identity.Forbidden, "role %s may not list findings", p.Role)
	}
	var out []identity.Finding
	err := e.store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListFindings(ctx, f)
		return err
	})
	return nonNil(out), err
}

// ScanAudit seals what is pending of the audit trail and calls fn for each
// record, oldest first, of one identity or (identityID empty) of all.
func (e *Engine) ScanAudit(ctx context.Context, p Principal, identityID string, fn func(*audit.Record) error) error {
	if err := mayUse(p, PermAudit); err != nil {
		return err
	}
	if err := e.store.SealAudit(ctx); err != nil {
		return err
	}
	return e.store.View(ctx, func(tx store.Tx) error {
		// An identity named that does not exist is an error, not an
		// empty trail; it may be named as SOURCE/EXTERNAL_ID.
		if identityID != "" {
			id, err := readableIdentity(ctx, tx, p, identityID)
			if identity.ErrorCode(err) == identity.NotFound {
				return identity.FieldError("identity", "%s", identity.ErrorMessage(err))
			}
			if err != nil {
				return err
			}
			identityID = id.ID
		}
		return audit.Scan(ctx, tx, identityID, fn)
	})
}

// Ready reports whether the store answers, and which backend it is.
func (e *Engine) Ready(ctx context.Context) (backend string, err error) {
	if err := e.store.Ping(ctx); err != nil {
		return "", err
	}
	return e.store.Backend(), nil
}
