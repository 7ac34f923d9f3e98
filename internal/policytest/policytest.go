// Package policytest runs the test cases kept in git next to a policy: an
// identity (and, for a mover, the identity before) and an event, and the
// grants, credentials and approval gates the policy should give it. It is
// what `jml policy test` runs in CI, like unit tests for access.
//
// A test file:
//
//	policy: policy.yaml            # relative to this file
//	cases:
//	  - name: an engineer gets git
//	    identity: {kind: human, attributes: {department: Engineering}}
//	    expect: {grants: [git-read, git-write], credentials: [personal-token]}
//	  - name: an agent gaining a production tool waits for approval
//	    event: mover
//	    before: {kind: ai_agent, attributes: {tools: [search-docs]}}
//	    identity: {kind: ai_agent, attributes: {tools: [search-docs, prod-db-write]}}
//	    expect: {approvals: [tool:prod-db-write]}
//	  - name: the production tool lasts 30 days, then is gone until the next event
//	    identity: {kind: ai_agent, attributes: {tools: [prod-db-write]}}
//	    after: 31d
//	    expect: {expires: {tool:prod-db-write: 720h}, held: []}
//
// An expectation left out is not checked; an empty list expects none.
package policytest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/yamlin"
)

// File is a test file.
type File struct {
	Policy string `yaml:"policy"`
	Cases  []Case `yaml:"cases"`
}

// Case is one test case.
type Case struct {
	Name string `yaml:"name"`
	// Event is joiner (the default), mover, suspend, resume or leaver.
	Event    identity.EventType `yaml:"event"`
	Before   *Subject           `yaml:"before"`
	Identity Subject            `yaml:"identity"`
	// After is how long after the event expect.held looks (a duration
	// such as 721h or 31d), with every approval given at once and no
	// other event since.
	After  string `yaml:"after"`
	Expect Expect `yaml:"expect"`
}

// Subject is an identity as a case gives it.
type Subject struct {
	Kind       identity.Kind  `yaml:"kind"`
	Attributes map[string]any `yaml:"attributes"`
}

// Expect is what the policy should give; a nil list is not checked.
type Expect struct {
	// Grants are the entitlements the identity is due after the event.
	Grants *[]string `yaml:"grants"`
	// Credentials are the credential rules that apply to it.
	Credentials *[]string `yaml:"credentials"`
	// Approvals are the entitlements the event's plan holds for approval.
	Approvals *[]string `yaml:"approvals"`
	// Expires maps each time-bound entitlement the identity is due to how
	// long its grant lasts (the entitlement's maxDuration); every due
	// entitlement not named must not expire.
	Expires map[string]string `yaml:"expires"`
	// Held are the grants the identity still holds Case.After after the
	// event: those with a maxDuration no longer than that have expired,
	// and stay expired until a later event grants them again.
	Held *[]string `yaml:"held"`
}

// Result is one case's outcome: Diffs is empty when it passed.
type Result struct {
	Case  string
	Diffs []string
}

// Run loads the test file at path and the policy it names, and runs every
// case. An error is a file that cannot be run (unreadable, malformed, a
// policy that does not load); failed cases are in the results.
func Run(path string) (*policy.Policy, []Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var f File
	if err := yamlin.Decode(data, &f); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	if f.Policy == "" {
		return nil, nil, fmt.Errorf("%s: policy: name the policy file the cases test", path)
	}
	if len(f.Cases) == 0 {
		return nil, nil, fmt.Errorf("%s: cases: there are none", path)
	}
	pol, err := policy.LoadFile(filepath.Join(filepath.Dir(path), f.Policy))
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	var out []Result
	for i, c := range f.Cases {
		if c.Name == "" {
			return nil, nil, fmt.Errorf("%s: cases[%d]: name is required", path, i)
		}
		if seen[c.Name] {
			return nil, nil, fmt.Errorf("%s: case %q is defined twice", path, c.Name)
		}
		seen[c.Name] = true
		diffs, err := runCase(pol, c)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: case %q: %v", path, c.Name, err)
		}
		out = append(out, Result{Case: c.Name, Diffs: diffs})
	}
	return pol, out, nil
}

// at is the fixed moment cases are planned at.
var at = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func runCase(pol *policy.Policy, c Case) ([]string, error) {
	// An expectation naming nothing the policy has is a typo in the test.
	for what, names := range map[string]*[]string{"grants": c.Expect.Grants, "approvals": c.Expect.Approvals, "held": c.Expect.Held} {
		if names != nil {
			for _, n := range *names {
				if pol.Entitlement(n) == nil {
					return nil, fmt.Errorf("expect.%s: the policy has no entitlement %q", what, n)
				}
			}
		}
	}
	if c.Expect.Credentials != nil {
		for _, n := range *c.Expect.Credentials {
			if pol.CredentialRule(n) == nil {
				return nil, fmt.Errorf("expect.credentials: the policy has no credential rule %q", n)
			}
		}
	}
	for name := range c.Expect.Expires {
		if pol.Entitlement(name) == nil {
			return nil, fmt.Errorf("expect.expires: the policy has no entitlement %q", name)
		}
	}
	after, err := policy.ParseDuration(c.After)
	if err != nil {
		return nil, fmt.Errorf("after: %v", err)
	}
	if c.Expect.Held != nil && c.After == "" {
		return nil, fmt.Errorf("expect.held: give after, how long after the event to look")
	}
	if c.Event == "" {
		c.Event = identity.Joiner
	}
	var state identity.State
	switch c.Event {
	case identity.Joiner, identity.Mover, identity.Resume:
		state = identity.Active
	case identity.Suspend:
		state = identity.Suspended
	case identity.Leaver:
		state = identity.Departed
	default:
		return nil, fmt.Errorf("event: %q is not joiner, mover, suspend, resume or leaver", c.Event)
	}
	if c.Event != identity.Joiner && c.Before == nil {
		return nil, fmt.Errorf("before: a %s needs the identity as it was", c.Event)
	}
	subj, err := subject(c.Identity, state)
	if err != nil {
		return nil, fmt.Errorf("identity: %v", err)
	}
	in := plan.Input{Event: c.Event, After: subj, Policy: pol, Desired: pol.Desired(subj), Now: at}
	if c.Before != nil {
		prior := identity.Active
		if c.Event == identity.Resume {
			prior = identity.Suspended
		}
		if in.Before, err = subject(*c.Before, prior); err != nil {
			return nil, fmt.Errorf("before: %v", err)
		}
		// What the identity held: what the policy gave it before.
		for _, g := range pol.Desired(in.Before).Grants {
			e := pol.Entitlement(g.Entitlement)
			in.Grants = append(in.Grants, identity.Grant{IdentityID: subj.ID, Entitlement: g.Entitlement, System: e.System, GrantedAt: at.Add(-time.Hour)})
		}
	}
	var grants, creds, approvals, held []string
	expires := map[string]time.Duration{}
	if state == identity.Active {
		for _, g := range in.Desired.Grants {
			grants = append(grants, g.Entitlement)
			max := pol.Entitlement(g.Entitlement).MaxDuration
			if max > 0 {
				expires[g.Entitlement] = max
			}
			if max == 0 || max > after {
				held = append(held, g.Entitlement)
			}
		}
		for _, r := range in.Desired.Credentials {
			creds = append(creds, r.Name)
		}
	}
	for _, s := range plan.Make(in) {
		if s.NeedsApproval {
			approvals = append(approvals, s.Entitlement)
		}
	}
	var diffs []string
	for _, x := range []struct {
		what string
		want *[]string
		got  []string
	}{{"grants", c.Expect.Grants, grants}, {"credentials", c.Expect.Credentials, creds}, {"approvals", c.Expect.Approvals, approvals},
		{"held after " + c.After, c.Expect.Held, held}} {
		if x.want != nil {
			if d := diff(x.what, *x.want, x.got); d != "" {
				diffs = append(diffs, d)
			}
		}
	}
	if c.Expect.Expires != nil {
		for name, want := range c.Expect.Expires {
			d, err := policy.ParseDuration(want)
			if err != nil {
				return nil, fmt.Errorf("expect.expires: %s: %v", name, err)
			}
			switch got, ok := expires[name]; {
			case !ok:
				diffs = append(diffs, fmt.Sprintf("expires: %s: want a grant lasting %s, got none that expires", name, d))
			case got != d:
				diffs = append(diffs, fmt.Sprintf("expires: %s: want %s, got %s", name, d, got))
			}
		}
		for _, name := range slices.Sorted(maps.Keys(expires)) {
			if _, ok := c.Expect.Expires[name]; !ok {
				diffs = append(diffs, fmt.Sprintf("expires: %s expires after %s, not expected", name, expires[name]))
			}
		}
	}
	for _, e := range in.Desired.Errors {
		diffs = append(diffs, fmt.Sprintf("rule %s failed for this identity: %s", e.Rule, e.Message))
	}
	return diffs, nil
}

func subject(s Subject, state identity.State) (*identity.Identity, error) {
	if s.Kind == "" {
		return nil, fmt.Errorf("kind is required")
	}
	if !s.Kind.Valid() {
		return nil, fmt.Errorf("unknown kind %q (want one of %v)", s.Kind, identity.Kinds)
	}
	id := &identity.Identity{ID: "idn_policytest", Source: "test", ExternalID: "subject", Kind: s.Kind, State: state,
		Attributes: map[string]any{}, CreatedAt: at, UpdatedAt: at}
	if s.Kind.NonHuman() {
		id.OwnerID = "idn_owner"
	}
	for k, v := range s.Attributes {
		id.Attributes[k] = v
	}
	return id, nil
}

// diff says how got differs from want, as sets: "" when they match.
func diff(what string, want, got []string) string {
	want, got = slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(got))
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: want [%s], got [%s]", what, strings.Join(want, " "), strings.Join(got, " "))
	for _, m := range missing {
		fmt.Fprintf(&b, "\n    - %s (expected, not given)", m)
	}
	for _, e := range extra {
		fmt.Fprintf(&b, "\n    + %s (given, not expected)", e)
	}
	return b.String()
}
