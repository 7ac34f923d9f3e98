package policy

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/yamlin"
)

// Risk is an entitlement's risk level. The zero value is Low.
type Risk int

const (
	Low Risk = iota
	Medium
	High
	Critical
)

var riskNames = []string{"low", "medium", "high", "critical"}

func (r Risk) String() string { return riskNames[r] }

func parseRisk(s string) (Risk, error) {
	if s == "" {
		return Low, nil
	}
	for i, n := range riskNames {
		if s == n {
			return Risk(i), nil
		}
	}
	return 0, fmt.Errorf("unknown risk %q (want one of %s)", s, strings.Join(riskNames, ", "))
}

// System is a target where accounts live, driven by a connector of Type.
type System struct {
	Name   string
	Type   string
	Config map[string]any
	// DeleteAfter, when non-zero, is how long a departed identity's
	// account in this system is kept (disabled) before it is deleted.
	DeleteAfter time.Duration
	// Adopt lets a joiner take over an account of its name that exists in
	// the system but that jml did not create: the account is reset first
	// (its password and every privilege it holds; connector.Adopter), and
	// a finding records the adoption. Without it such a joiner's step
	// fails and an account_exists_unmanaged finding is raised, the
	// account untouched.
	Adopt bool
}

// BuiltinType is the type of jml's built-in vault: API keys and passwords
// jml issues itself, and scopes that introspection reports.
const BuiltinType = "builtin"

// Builtin reports whether the system is jml's built-in vault.
func (s *System) Builtin() bool { return s.Type == BuiltinType }

// Entitlement is one grantable thing in a system.
type Entitlement struct {
	Name        string
	System      string
	Description string
	Risk        Risk
	// MaxDuration, when non-zero, bounds every grant: it expires that long
	// after it is applied.
	MaxDuration time.Duration
	// RequiresApproval gates every new grant of it behind an approval.
	RequiresApproval bool
	// Target says what the entitlement is in its system (a database role, a
	// directory group, a Redis rule set), in the shape the system's
	// connector type defines; the connector validates it when it opens.
	Target map[string]any
}

// Role is a named bundle of entitlements.
type Role struct {
	Name         string
	Entitlements []string
}

// CredentialType is the kind of secret a credential rule issues.
type CredentialType string

const (
	APIKey   CredentialType = "api_key"
	Password CredentialType = "password"
)

// CredentialRule says which identities get which credential.
type CredentialRule struct {
	Name   string
	System string
	Type   CredentialType
	TTL    time.Duration
	// RotateOnMove rotates the credential on every mover when RotateOn is
	// empty, or on movers that change one of the RotateOn attributes.
	RotateOnMove bool
	RotateOn     []string
	when         *rule
}

// BirthrightRule grants roles and entitlements to identities matching When.
type BirthrightRule struct {
	Name         string
	Roles        []string
	Entitlements []string
	// expandedIdx indexes Policy.entNames: Entitlements plus every
	// entitlement of Roles, deduplicated, computed at load.
	expandedIdx []int
	reason      string // "birthright:NAME"
	when        *rule
}

// Policy is a loaded, validated and compiled policy file. It is immutable
// and safe for concurrent use.
type Policy struct {
	File string
	// Attributes are the identity attributes the policy declares (nil
	// when it has no attributes: section); rules are checked against them.
	Attributes []Attribute
	// Warnings are what the check could not verify (attributes read but
	// not declared); the policy loads all the same.
	Warnings     []string
	Systems      map[string]*System
	Entitlements map[string]*Entitlement
	Roles        map[string]*Role
	Birthrights  []*BirthrightRule
	Credentials  []*CredentialRule
	eval         *evaluator
	credByName   map[string]*CredentialRule
	entNames     []string              // every entitlement name, sorted
	entIndex     map[string]int        // name -> index in entNames
	declared     map[string]*Attribute // Attributes by name (CheckAttributes)
}

// Entitlement returns the named entitlement or nil.
func (p *Policy) Entitlement(name string) *Entitlement { return p.Entitlements[name] }

// CredentialRule returns the named credential rule or nil.
func (p *Policy) CredentialRule(name string) *CredentialRule { return p.credByName[name] }

// file is the YAML shape; it is decoded strictly (unknown fields are errors).
type file struct {
	Attributes []struct {
		Name   string   `yaml:"name"`
		Type   string   `yaml:"type"`
		Values []string `yaml:"values"`
	} `yaml:"attributes"`
	Systems []struct {
		Name        string         `yaml:"name"`
		Type        string         `yaml:"type"`
		Config      map[string]any `yaml:"config"`
		DeleteAfter string         `yaml:"deleteAfter"`
		Adopt       bool           `yaml:"adopt"`
	} `yaml:"systems"`
	Entitlements []struct {
		Name             string         `yaml:"name"`
		System           string         `yaml:"system"`
		Description      string         `yaml:"description"`
		Risk             string         `yaml:"risk"`
		MaxDuration      string         `yaml:"maxDuration"`
		RequiresApproval *bool          `yaml:"requiresApproval"`
		Target           map[string]any `yaml:"target"`
	} `yaml:"entitlements"`
	Roles []struct {
		Name         string   `yaml:"name"`
		Entitlements []string `yaml:"entitlements"`
	} `yaml:"roles"`
	Birthright []struct {
		Name         string   `yaml:"name"`
		When         string   `yaml:"when"`
		Roles        []string `yaml:"roles"`
		Entitlements []string `yaml:"entitlements"`
	} `yaml:"birthright"`
	Credentials []struct {
		Name         string   `yaml:"name"`
		When         string   `yaml:"when"`
		System       string   `yaml:"system"`
		Type         string   `yaml:"type"`
		TTL          string   `yaml:"ttl"`
		RotateOnMove bool     `yaml:"rotateOnMove"`
		RotateOn     []string `yaml:"rotateOn"`
	} `yaml:"credentials"`
}

// LoadFile reads and compiles the policy at path.
func LoadFile(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, identity.Errorf(identity.Invalid, "read policy: %v", err)
	}
	return Parse(path, data)
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._:/-]{0,127}$`)

// Parse compiles a policy from data; name is used in error messages. Every
// error names the file, the item and the problem, and is of code Invalid.
func Parse(name string, data []byte) (*Policy, error) {
	var f file
	if err := yamlin.Decode(data, &f); err != nil {
		return nil, identity.Errorf(identity.Invalid, "%s: %v", name, err)
	}
	errf := func(format string, args ...any) error {
		return identity.Errorf(identity.Invalid, "%s: %s", name, fmt.Sprintf(format, args...))
	}
	p := &Policy{
		File:         name,
		Systems:      map[string]*System{},
		Entitlements: map[string]*Entitlement{},
		Roles:        map[string]*Role{},
	}
	for i, s := range f.Systems {
		if !namePattern.MatchString(s.Name) {
			return nil, errf("systems[%d]: name %q must match %s", i, s.Name, namePattern)
		}
		if p.Systems[s.Name] != nil {
			return nil, errf("system %q is defined twice", s.Name)
		}
		if s.Type == "" {
			return nil, errf("system %q: type is required", s.Name)
		}
		deleteAfter, err := ParseDuration(s.DeleteAfter)
		if err != nil {
			return nil, errf("system %q: deleteAfter: %v", s.Name, err)
		}
		if deleteAfter > 0 && s.Type == BuiltinType {
			return nil, errf("system %q: deleteAfter: the built-in vault holds no accounts to delete", s.Name)
		}
		p.Systems[s.Name] = &System{Name: s.Name, Type: s.Type, Config: s.Config, DeleteAfter: deleteAfter, Adopt: s.Adopt}
	}
	for i, e := range f.Entitlements {
		if !namePattern.MatchString(e.Name) {
			return nil, errf("entitlements[%d]: name %q must match %s", i, e.Name, namePattern)
		}
		if p.Entitlements[e.Name] != nil {
			return nil, errf("entitlement %q is defined twice", e.Name)
		}
		if p.Systems[e.System] == nil {
			return nil, errf("entitlement %q: unknown system %q", e.Name, e.System)
		}
		risk, err := parseRisk(e.Risk)
		if err != nil {
			return nil, errf("entitlement %q: %v", e.Name, err)
		}
		maxDur, err := ParseDuration(e.MaxDuration)
		if err != nil {
			return nil, errf("entitlement %q: maxDuration: %v", e.Name, err)
		}
		if e.MaxDuration != "" && maxDur == 0 {
			return nil, errf("entitlement %q: maxDuration: %q would end every grant as it is made; leave maxDuration out for grants that do not expire", e.Name, e.MaxDuration)
		}
		// High and critical entitlements need approval unless the file says
		// otherwise: widening into risky access is never silent by default.
		approval := risk >= High
		if e.RequiresApproval != nil {
			approval = *e.RequiresApproval
		}
		p.Entitlements[e.Name] = &Entitlement{Name: e.Name, System: e.System, Description: e.Description, Risk: risk, MaxDuration: maxDur, RequiresApproval: approval, Target: e.Target}
	}
	for i, r := range f.Roles {
		if !namePattern.MatchString(r.Name) {
			return nil, errf("roles[%d]: name %q must match %s", i, r.Name, namePattern)
		}
		if p.Roles[r.Name] != nil {
			return nil, errf("role %q is defined twice", r.Name)
		}
		for _, e := range r.Entitlements {
			if p.Entitlements[e] == nil {
				return nil, errf("role %q: unknown entitlement %q", r.Name, e)
			}
		}
		p.Roles[r.Name] = &Role{Name: r.Name, Entitlements: r.Entitlements}
	}
	p.entNames = slices.Sorted(maps.Keys(p.Entitlements))
	p.entIndex = make(map[string]int, len(p.entNames))
	for i, n := range p.entNames {
		p.entIndex[n] = i
	}
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	if f.Attributes != nil {
		p.Attributes = []Attribute{}
		for _, a := range f.Attributes {
			p.Attributes = append(p.Attributes, Attribute{Name: a.Name, Type: a.Type, Values: a.Values})
		}
	}
	chk, err := newChecker(p.Attributes)
	if err != nil {
		return nil, errf("%v", err)
	}
	p.declared = declaredByName(p.Attributes)
	// compileRule checks a rule against the declared identity, then
	// compiles it for evaluation.
	compileRule := func(what, src string) (*rule, error) {
		if strings.TrimSpace(src) != "" {
			if err := chk.check(what, src); err != nil {
				return nil, err
			}
		}
		return compile(env, src)
	}
	seen := map[string]bool{}
	for i, b := range f.Birthright {
		if !namePattern.MatchString(b.Name) {
			return nil, errf("birthright[%d]: name %q must match %s", i, b.Name, namePattern)
		}
		if seen[b.Name] {
			return nil, errf("birthright rule %q is defined twice", b.Name)
		}
		seen[b.Name] = true
		r, err := compileRule(fmt.Sprintf("birthright rule %q", b.Name), b.When)
		if err != nil {
			return nil, errf("birthright rule %q: when: %v", b.Name, err)
		}
		set := map[string]bool{}
		for _, e := range b.Entitlements {
			if p.Entitlements[e] == nil {
				return nil, errf("birthright rule %q: unknown entitlement %q", b.Name, e)
			}
			set[e] = true
		}
		for _, rn := range b.Roles {
			role := p.Roles[rn]
			if role == nil {
				return nil, errf("birthright rule %q: unknown role %q", b.Name, rn)
			}
			for _, e := range role.Entitlements {
				set[e] = true
			}
		}
		if len(set) == 0 {
			return nil, errf("birthright rule %q grants nothing: give it roles or entitlements", b.Name)
		}
		idx := make([]int, 0, len(set))
		for _, e := range slices.Sorted(maps.Keys(set)) {
			idx = append(idx, p.entIndex[e])
		}
		p.Birthrights = append(p.Birthrights, &BirthrightRule{Name: b.Name, Roles: b.Roles, Entitlements: b.Entitlements, expandedIdx: idx, reason: "birthright:" + b.Name, when: r})
	}
	p.credByName = map[string]*CredentialRule{}
	for i, c := range f.Credentials {
		if !namePattern.MatchString(c.Name) {
			return nil, errf("credentials[%d]: name %q must match %s", i, c.Name, namePattern)
		}
		if p.credByName[c.Name] != nil {
			return nil, errf("credential rule %q is defined twice", c.Name)
		}
		if p.Systems[c.System] == nil {
			return nil, errf("credential rule %q: unknown system %q", c.Name, c.System)
		}
		typ := CredentialType(c.Type)
		if typ != APIKey && typ != Password {
			return nil, errf("credential rule %q: unknown type %q (want api_key or password)", c.Name, c.Type)
		}
		ttl, err := ParseDuration(c.TTL)
		if err != nil {
			return nil, errf("credential rule %q: ttl: %v", c.Name, err)
		}
		r, err := compileRule(fmt.Sprintf("credential rule %q", c.Name), c.When)
		if err != nil {
			return nil, errf("credential rule %q: when: %v", c.Name, err)
		}
		cr := &CredentialRule{Name: c.Name, System: c.System, Type: typ, TTL: ttl, RotateOnMove: c.RotateOnMove, RotateOn: c.RotateOn, when: r}
		p.Credentials = append(p.Credentials, cr)
		p.credByName[c.Name] = cr
	}
	for _, w := range chk.warnings {
		p.Warnings = append(p.Warnings, name+": "+w)
	}
	p.eval = newEvaluator(p)
	return p, nil
}

// ParseDuration accepts Go durations ("90m", "720h") and whole days ("30d").
// The empty string is zero.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	var err error
	if strings.HasSuffix(s, "d") {
		var n int
		n, err = strconv.Atoi(strings.TrimSuffix(s, "d"))
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use 720h or 30d)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return d, nil
}

// newEnv declares the CEL environment rules are checked against: one
// variable, identity, a map with kind, state, source, externalId,
// displayName, owner, manager and attributes.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(cel.Variable("identity", cel.MapType(cel.StringType, cel.DynType)))
}
