// Package plan turns desired access and held access into the ordered steps
// that move one to the other. It is pure and deterministic: the same input
// gives the same plan, and it does no I/O and reads no clock.
//
// It may import identity and policy only.
package plan

import (
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
)

// Action is what one step does.
type Action string

// Actions, listed in the order a plan runs them: every narrowing before any
// widening, and credentials revoked before anything else.
const (
	RevokeCredential Action = "revoke_credential"
	RevokeGrant      Action = "revoke_grant"
	DisableAccount   Action = "disable_account"
	EnableAccount    Action = "enable_account"
	EnsureAccount    Action = "ensure_account"
	Grant            Action = "grant"
	IssueCredential  Action = "issue_credential"
	RotateCredential Action = "rotate_credential"
	// DeleteAccount removes a departed identity's account once its
	// system's retention has passed. Plans never contain it: the engine
	// opens a retention case for it.
	DeleteAccount Action = "delete_account"
)

var order = map[Action]int{
	RevokeCredential: 0, RevokeGrant: 1, DisableAccount: 2, DeleteAccount: 2, EnableAccount: 3,
	EnsureAccount: 4, Grant: 5, IssueCredential: 6, RotateCredential: 7,
}

// Narrowing reports whether a removes access (such steps never wait).
func (a Action) Narrowing() bool {
	switch a {
	case RevokeCredential, RevokeGrant, DisableAccount, DeleteAccount:
		return true
	}
	return false
}

// Revokes reports whether a takes access away and counts toward a source's
// mass-change bound: revoking a grant or a credential, disabling an
// account. (Deleting an account after its retention is narrowing too, but
// no source's event plans it.)
func (a Action) Revokes() bool {
	switch a {
	case RevokeCredential, RevokeGrant, DisableAccount:
		return true
	}
	return false
}

// Widening reports whether a gives access: such a step must not apply to
// an identity that is not active, nor outlive a newer plan, and once its
// call may have started its effect must be assumed.
func (a Action) Widening() bool {
	switch a {
	case Grant, IssueCredential, RotateCredential, EnsureAccount, EnableAccount:
		return true
	}
	return false
}

// Step is one idempotent change in one system.
type Step struct {
	Action Action `json:"action"`
	System string `json:"system"`
	// Entitlement is set for Grant and RevokeGrant.
	Entitlement string `json:"entitlement,omitempty"`
	// Rule is the credential rule for IssueCredential and RotateCredential.
	Rule string `json:"rule,omitempty"`
	// CredentialID is set for RevokeCredential and RotateCredential.
	CredentialID string `json:"credentialId,omitempty"`
	// Duration bounds a Grant: it expires this long after it is applied.
	Duration time.Duration `json:"duration,omitempty"`
	// NeedsApproval marks a widening step that waits for an approval.
	NeedsApproval bool `json:"needsApproval,omitempty"`
	// Reapply marks a Grant of access jml records already, asserted again
	// in the system because its state there is not known: the record,
	// with its expiry and approvals, stays as it is.
	Reapply bool   `json:"reapply,omitempty"`
	Reason  string `json:"reason"`
}

func (s Step) String() string {
	target := s.Entitlement
	if target == "" {
		target = s.Rule
	}
	if s.CredentialID != "" {
		target += "#" + s.CredentialID
	}
	gate := ""
	if s.NeedsApproval {
		gate = " [approval]"
	}
	return fmt.Sprintf("%s %s %s%s (%s)", s.Action, s.System, target, gate, s.Reason)
}

// Input is everything a plan depends on.
type Input struct {
	Event identity.EventType
	// Before is the identity as it was (nil for a new one); After as the
	// event leaves it.
	Before *identity.Identity
	After  *identity.Identity
	Policy *policy.Policy
	// Desired is Policy.Desired(After).
	Desired     *policy.Desired
	Grants      []identity.Grant
	Credentials []identity.Credential // active ones
	Accounts    []identity.Account
	// Now is when the plan is made: a recorded grant whose expiry has
	// passed is no longer held (its expiry case may have been superseded).
	Now time.Time
	// Possible are the steps of earlier cases that were due to run when
	// this event replaced them: their calls may have started, or landed
	// before a crash, and they are not recorded. A widening one may have
	// given access, which a narrowing plan revokes like held access
	// (revoking is idempotent; under-revoking is never safe). A narrowing
	// one may have taken away access jml still records, which a plan that
	// keeps it re-applies.
	Possible []Step
	// Resets are the systems whose disable takes the account's
	// entitlements and secrets away (connector.DisableResetter): enabling
	// an account there grants and issues again what jml records.
	Resets map[string]bool
}

// Make returns the ordered steps for in.
func Make(in Input) []Step {
	var steps []Step
	add := func(s Step) { steps = append(steps, s) }
	id := in.After
	builtin := func(system string) bool { return isBuiltin(in.Policy, system) }

	switch id.State {
	case identity.Departed:
		for _, c := range in.Credentials {
			add(Step{Action: RevokeCredential, System: c.System, Rule: c.Rule, CredentialID: c.ID, Reason: "leaver"})
		}
		for _, c := range possibleCredentials(in, nil) {
			add(Step{Action: RevokeCredential, System: c.System, Rule: c.Rule, Reason: "leaver: may have been issued"})
		}
		for _, g := range in.Grants {
			add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: "leaver"})
		}
		for _, g := range possibleGrants(in) {
			add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: "leaver: may have been granted"})
		}
		for _, sys := range reachedSystems(in) {
			add(Step{Action: DisableAccount, System: sys, Reason: "leaver"})
		}
		return sorted(steps)
	case identity.Suspended:
		// A suspend, or another event (a mover) while suspended: nothing
		// widens. Recorded grants stay (a resume restores them behind the
		// disabled account), unless policy no longer gives them; access
		// that may have landed unrecorded goes, and so does recorded
		// access whose state in its system is not known: once revoked its
		// record goes too, and a resume grants or issues it afresh, so
		// that what jml records stays true. Every account is disabled by
		// name again (a superseded disable may not have run).
		why := string(in.Event)
		want := map[string]bool{}
		for _, g := range in.Desired.Grants {
			want[g.Entitlement] = true
		}
		wantCred := map[string]bool{}
		for _, c := range in.Desired.Credentials {
			wantCred[c.Name] = true
		}
		for _, g := range possibleGrants(in) {
			add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: why + ": may have been granted"})
		}
		for _, c := range possibleCredentials(in, nil) {
			add(Step{Action: RevokeCredential, System: c.System, Rule: c.Rule, Reason: why + ": may have been issued"})
		}
		u := unsettledBy(in)
		for _, g := range in.Grants {
			switch {
			case !want[g.Entitlement]:
				add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: why + ": no longer granted by policy"})
			case u.grants[g.Entitlement] && !isBuiltin(in.Policy, g.System):
				add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: why + ": its state in the system is not known"})
			}
		}
		for _, c := range in.Credentials {
			switch {
			case !wantCred[c.Rule]:
				add(Step{Action: RevokeCredential, System: c.System, Rule: c.Rule, CredentialID: c.ID, Reason: why + ": no longer issued by policy"})
			case u.credentials[c.ID] && !isBuiltin(in.Policy, c.System):
				add(Step{Action: RevokeCredential, System: c.System, Rule: c.Rule, CredentialID: c.ID, Reason: why + ": its state in the system is not known"})
			}
		}
		for _, sys := range reachedSystems(in) {
			add(Step{Action: DisableAccount, System: sys, Reason: why})
		}
		return sorted(steps)
	case identity.Pending:
		// No access before the start date.
		return nil
	}

	reason := string(in.Event)
	want := map[string]policy.DesiredGrant{}
	for _, g := range in.Desired.Grants {
		want[g.Entitlement] = g
	}
	held := map[string]identity.Grant{}
	for _, g := range in.Grants {
		held[g.Entitlement] = g
	}
	needSystem := map[string]bool{}

	// Narrow first: what is held, or may be, but is no longer justified,
	// and what has expired (granting it again is a new grant, with its
	// approval).
	for _, g := range in.Grants {
		if !g.ExpiresAt.IsZero() && !in.Now.IsZero() && !in.Now.Before(g.ExpiresAt) {
			add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: reason + ": expired at " + g.ExpiresAt.UTC().Format(time.RFC3339)})
			delete(held, g.Entitlement)
			continue
		}
		if _, ok := want[g.Entitlement]; !ok {
			add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: reason + ": no longer granted by policy"})
		}
	}
	for _, g := range possibleGrants(in) {
		if _, ok := want[g.Entitlement]; !ok {
			add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: reason + ": may have been granted, not granted by policy"})
		}
	}
	wantCred := map[string]*policy.CredentialRule{}
	for _, c := range in.Desired.Credentials {
		wantCred[c.Name] = c
		needSystem[c.System] = true
	}
	heldCred := map[string]identity.Credential{}
	for _, c := range in.Credentials {
		if _, ok := wantCred[c.Rule]; !ok {
			add(Step{Action: RevokeCredential, System: c.System, Rule: c.Rule, CredentialID: c.ID, Reason: reason + ": no longer issued by policy"})
			continue
		}
		heldCred[c.Rule] = c
	}

	// What superseded steps touched is in an unknown state in its system,
	// though jml records it: re-applied where it is still due. So is what
	// a disabled account in a resetting system lost with its disable.
	undone := unsettledBy(in)
	for _, a := range in.Accounts {
		if a.Status != identity.AccountDisabled || !in.Resets[a.System] {
			continue
		}
		for _, g := range in.Grants {
			if g.System == a.System {
				undone.grants[g.Entitlement] = true
			}
		}
		for _, c := range in.Credentials {
			if c.System == a.System {
				undone.credentials[c.ID] = true
			}
		}
	}

	// Then widen.
	for _, g := range in.Desired.Grants {
		e := in.Policy.Entitlement(g.Entitlement)
		needSystem[e.System] = true
		if _, ok := held[g.Entitlement]; ok {
			if undone.grants[g.Entitlement] {
				add(Step{Action: Grant, System: e.System, Entitlement: e.Name, Reapply: true, Reason: reason + ": re-applied, its state in the system is not known"})
			}
			continue
		}
		add(Step{Action: Grant, System: e.System, Entitlement: e.Name, Duration: e.MaxDuration,
			NeedsApproval: e.RequiresApproval, Reason: joinReasons(g.Reasons)})
	}
	accounts := map[string]identity.Account{}
	for _, a := range in.Accounts {
		accounts[a.System] = a
	}
	for sys := range needSystem {
		if builtin(sys) {
			continue
		}
		a, ok := accounts[sys]
		switch {
		case !ok, a.Status == identity.AccountDeleted, a.Status == identity.AccountCreating:
			add(Step{Action: EnsureAccount, System: sys, Reason: reason})
		case a.Status == identity.AccountDisabled:
			add(Step{Action: EnableAccount, System: sys, Reason: reason})
		case undone.accounts[sys]:
			add(Step{Action: EnableAccount, System: sys, Reason: reason + ": re-applied, its state in the system is not known"})
		}
	}
	disabled := map[string]bool{}
	for _, a := range in.Accounts {
		if !needSystem[a.System] && (a.Status == identity.AccountActive || a.Status == identity.AccountCreating) && !builtin(a.System) {
			add(Step{Action: DisableAccount, System: a.System, Reason: reason + ": no access left in this system"})
			disabled[a.System] = true
		}
	}
	for _, s := range in.Possible {
		if !needSystem[s.System] && !disabled[s.System] && !builtin(s.System) && hasAccount(in, s.System) {
			add(Step{Action: DisableAccount, System: s.System, Reason: reason + ": may have an account, no access in this system"})
			disabled[s.System] = true
		}
	}
	for _, c := range possibleCredentials(in, wantCred) {
		add(Step{Action: RevokeCredential, System: c.System, Rule: c.Rule, Reason: reason + ": may have been issued, not issued by policy"})
	}
	for _, c := range in.Desired.Credentials {
		held, ok := heldCred[c.Name]
		if !ok {
			add(Step{Action: IssueCredential, System: c.System, Rule: c.Name, Reason: reason + ": credential rule " + c.Name})
			continue
		}
		why := rotateReason(in, c)
		if why == "" && undone.credentials[held.ID] {
			why = reason + ": re-issued, its state in the system is not known"
		}
		if why != "" {
			add(Step{Action: RotateCredential, System: c.System, Rule: c.Name, CredentialID: held.ID, Reason: why})
		}
	}
	return sorted(steps)
}

// unsettled is what in.Possible's steps touched: grants (by entitlement),
// accounts (by system), credentials (by ID, or every one of a system and
// rule). Such a step may have run, may still be about to land (runs of one
// system for one identity never overlap, so not after this plan's own
// calls there) or may never run: the object's state in its system is not
// known, whatever jml records. A plan that keeps it asserts it again.
type unsettled struct {
	grants, accounts, credentials map[string]bool
}

func unsettledBy(in Input) unsettled {
	u := unsettled{grants: map[string]bool{}, accounts: map[string]bool{}, credentials: map[string]bool{}}
	for _, s := range in.Possible {
		switch s.Action {
		case Grant, RevokeGrant:
			u.grants[s.Entitlement] = true
		case EnsureAccount, EnableAccount:
			u.accounts[s.System] = true
		case DisableAccount:
			// A disable may have gone with RevokeAll, which takes the
			// account's entitlements and secrets too.
			u.accounts[s.System] = true
			for _, c := range in.Credentials {
				if c.System == s.System {
					u.credentials[c.ID] = true
				}
			}
			for _, g := range in.Grants {
				if g.System == s.System {
					u.grants[g.Entitlement] = true
				}
			}
		case RevokeCredential, IssueCredential, RotateCredential:
			for _, c := range in.Credentials {
				switch {
				case s.Action == RevokeCredential && s.CredentialID == "":
					u.credentials[c.ID] = u.credentials[c.ID] || c.System == s.System // the system's secret
				case s.Action == RevokeCredential:
					u.credentials[c.ID] = u.credentials[c.ID] || c.ID == s.CredentialID
				default: // an issue replaces the rule's secret in the system
					u.credentials[c.ID] = u.credentials[c.ID] || (c.System == s.System && c.Rule == s.Rule)
				}
			}
		}
	}
	return u
}

// possibleGrants returns the grants in.Possible touched (a grant that may
// have landed, or a revoke that may not have run, of something an earlier
// plan thought there) that are not recorded, one per entitlement, in
// systems where jml records an account: each may be in place.
func possibleGrants(in Input) []Step {
	held := map[string]bool{}
	for _, g := range in.Grants {
		held[g.Entitlement] = true
	}
	var out []Step
	for _, s := range in.Possible {
		if (s.Action == Grant || s.Action == RevokeGrant) && !held[s.Entitlement] && hasAccount(in, s.System) {
			held[s.Entitlement] = true
			out = append(out, s)
		}
	}
	return out
}

// possibleCredentials returns the credentials in.Possible may have
// installed outside the built-in vault, one per (system, rule), except
// rules in keep (still issued: the plan re-issues them) and rules with a
// recorded credential in that system (its revoke step covers the account's
// secret). The built-in vault's are jml's own rows, never unrecorded.
func possibleCredentials(in Input, keep map[string]*policy.CredentialRule) []Step {
	seen := map[string]bool{}
	for _, c := range in.Credentials {
		seen[c.System+"\x00"+c.Rule] = true
	}
	var out []Step
	for _, s := range in.Possible {
		k := s.System + "\x00" + s.Rule
		if (s.Action != IssueCredential && s.Action != RotateCredential && s.Action != RevokeCredential) || s.Rule == "" || seen[k] || keep[s.Rule] != nil || isBuiltin(in.Policy, s.System) || !hasAccount(in, s.System) {
			continue
		}
		seen[k] = true
		out = append(out, s)
	}
	return out
}

// reachedSystems returns, sorted, every system other than the built-in
// vault where the identity may have an account jml created: every account
// jml records, disabled ones too (a disable acts by name, whatever jml
// believes), and those still being created. jml records an account before
// its first create call, so a system with no record has no account of
// jml's, and an account of the name there is someone else's.
func reachedSystems(in Input) []string {
	set := map[string]bool{}
	for _, a := range in.Accounts {
		if a.Status != identity.AccountDeleted {
			set[a.System] = true
		}
	}
	out := make([]string, 0, len(set))
	for sys := range set {
		if !isBuiltin(in.Policy, sys) {
			out = append(out, sys)
		}
	}
	sort.Strings(out)
	return out
}

// hasAccount reports whether jml records an account of the identity in
// system (see reachedSystems): only there can a possibly applied step have
// landed.
func hasAccount(in Input, system string) bool {
	for _, a := range in.Accounts {
		if a.System == system && a.Status != identity.AccountDeleted {
			return true
		}
	}
	return false
}

// isBuiltin reports whether system is jml's built-in vault (or no longer in
// the policy: nothing can be called there).
func isBuiltin(p *policy.Policy, system string) bool {
	s := p.Systems[system]
	return s == nil || s.Builtin()
}

// rotateReason says why a held credential of rule c must be rotated on this
// event, or "" when it need not be.
func rotateReason(in Input, c *policy.CredentialRule) string {
	if in.Event != identity.Mover || in.Before == nil {
		return ""
	}
	if in.Before.OwnerID != in.After.OwnerID {
		// The previous owner may have seen the secret.
		return "mover: owner changed"
	}
	if !c.RotateOnMove {
		return ""
	}
	if len(c.RotateOn) == 0 {
		return "mover: credential rule rotates on every move"
	}
	for _, attr := range c.RotateOn {
		if !reflect.DeepEqual(in.Before.Attributes[attr], in.After.Attributes[attr]) {
			return "mover: attribute " + attr + " changed"
		}
	}
	return ""
}

func joinReasons(rs []string) string {
	if len(rs) == 0 {
		return "policy"
	}
	out := rs[0]
	for _, r := range rs[1:] {
		out += ", " + r
	}
	return out
}

func sorted(steps []Step) []Step {
	sort.SliceStable(steps, func(i, j int) bool {
		a, b := steps[i], steps[j]
		if order[a.Action] != order[b.Action] {
			return order[a.Action] < order[b.Action]
		}
		if a.System != b.System {
			return a.System < b.System
		}
		if a.Entitlement != b.Entitlement {
			return a.Entitlement < b.Entitlement
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.CredentialID < b.CredentialID
	})
	return steps
}

// Undo returns the steps that take back what in.Possible may have done
// that the identity must not hold: the steps of in.Possible's calls landed
// after a later event had already planned without them (a grant that
// completed while a leaver was accepted, say). For an identity that is not
// active it is the leaver's or suspend's plan in those systems (for a
// leaver, the account disabled by name); for an active one, each possible
// grant, account and credential that policy no longer justifies and jml
// does not record. Access the identity is still due is left alone: a
// pending step of the newer plan applies it.
func Undo(in Input) []Step {
	switch in.After.State {
	case identity.Departed:
		in.Event = identity.Leaver
	case identity.Suspended:
		in.Event = identity.Suspend
	case identity.Active:
		in.Event = identity.Mover
	default: // pending: its plan is empty, everything possible goes
		in.After = &identity.Identity{State: identity.Departed}
		in.Event = identity.Leaver
	}
	systems := map[string]bool{}
	grants := map[string]bool{}
	rules := map[string]bool{}
	for _, s := range in.Possible {
		systems[s.System] = true
		switch s.Action {
		case Grant:
			grants[s.Entitlement] = true
		case IssueCredential, RotateCredential:
			rules[s.System+"\x00"+s.Rule] = true
		}
	}
	active := in.After.State == identity.Active
	var out []Step
	for _, s := range Make(in) {
		if !s.Action.Narrowing() || !systems[s.System] {
			continue
		}
		switch {
		case s.Action == RevokeGrant && active && !grants[s.Entitlement]:
			continue // held but unjustified: the next event's to narrow
		case s.Action == RevokeCredential && active && (s.CredentialID != "" || !rules[s.System+"\x00"+s.Rule]):
			continue
		}
		s.Reason = "undo, applied after a later plan: " + s.Reason
		out = append(out, s)
	}
	return out
}
