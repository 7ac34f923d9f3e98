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
func (a Action) Narrowing() bool { return order[a] <= order[DisableAccount] }

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
	NeedsApproval bool   `json:"needsApproval,omitempty"`
	Reason        string `json:"reason"`
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
}

// Make returns the ordered steps for in.
func Make(in Input) []Step {
	var steps []Step
	add := func(s Step) { steps = append(steps, s) }
	id := in.After
	builtin := func(system string) bool {
		s := in.Policy.Systems[system]
		return s == nil || s.Type == "builtin"
	}

	switch id.State {
	case identity.Departed:
		for _, c := range in.Credentials {
			add(Step{Action: RevokeCredential, System: c.System, Rule: c.Rule, CredentialID: c.ID, Reason: "leaver"})
		}
		for _, g := range in.Grants {
			add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: "leaver"})
		}
		for _, a := range in.Accounts {
			if a.Status == identity.AccountActive {
				add(Step{Action: DisableAccount, System: a.System, Reason: "leaver"})
			}
		}
		return sorted(steps)
	case identity.Suspended:
		if in.Event == identity.Suspend {
			for _, a := range in.Accounts {
				if a.Status == identity.AccountActive {
					add(Step{Action: DisableAccount, System: a.System, Reason: "suspend"})
				}
			}
			return sorted(steps)
		}
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

	// Narrow first: what is held but no longer justified.
	for _, g := range in.Grants {
		if _, ok := want[g.Entitlement]; !ok {
			add(Step{Action: RevokeGrant, System: g.System, Entitlement: g.Entitlement, Reason: reason + ": no longer granted by policy"})
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

	// Then widen.
	for _, g := range in.Desired.Grants {
		e := in.Policy.Entitlement(g.Entitlement)
		needSystem[e.System] = true
		if _, ok := held[g.Entitlement]; ok {
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
		case !ok, a.Status == identity.AccountDeleted:
			add(Step{Action: EnsureAccount, System: sys, Reason: reason})
		case a.Status == identity.AccountDisabled:
			add(Step{Action: EnableAccount, System: sys, Reason: reason})
		}
	}
	for _, a := range in.Accounts {
		if !needSystem[a.System] && a.Status == identity.AccountActive && !builtin(a.System) {
			add(Step{Action: DisableAccount, System: a.System, Reason: reason + ": no access left in this system"})
		}
	}
	for _, c := range in.Desired.Credentials {
		held, ok := heldCred[c.Name]
		if !ok {
			add(Step{Action: IssueCredential, System: c.System, Rule: c.Name, Reason: reason + ": credential rule " + c.Name})
			continue
		}
		if why := rotateReason(in, c); why != "" {
			add(Step{Action: RotateCredential, System: c.System, Rule: c.Name, CredentialID: held.ID, Reason: why})
		}
	}
	return sorted(steps)
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
