package policy

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"

	"github.com/jml-dev/jml/internal/identity"
)

// rule is one compiled CEL condition with what it reads of the identity.
type rule struct {
	src  string
	prog cel.Program
	// kind, when set, is a kind the identity must have for the rule to
	// match at all (the rule is a conjunction with identity.kind == kind),
	// so the evaluator can skip it for other kinds without running CEL.
	kind identity.Kind
	refs refs
}

// refs is what a rule reads of the identity: top-level fields and
// attribute names, or all attributes when it uses the map as a whole.
type refs struct {
	fields   map[string]bool
	attrs    map[string]bool
	allAttrs bool
}

func (r *refs) merge(o refs) {
	for f := range o.fields {
		r.fields[f] = true
	}
	for a := range o.attrs {
		r.attrs[a] = true
	}
	r.allAttrs = r.allAttrs || o.allAttrs
}

// compile checks src against env and requires a boolean result.
func compile(env *cel.Env, src string) (*rule, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errorString("is required (a CEL expression over identity, e.g. identity.kind == \"human\")")
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, errorString(strings.ReplaceAll(iss.Err().Error(), "\n", " "))
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, errorString("must be a boolean expression, it is of type " + ast.OutputType().String())
	}
	prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	r := &rule{src: src, prog: prog, refs: refs{fields: map[string]bool{}, attrs: map[string]bool{}}}
	root := ast.NativeRep().Expr()
	r.kind = requiredKind(root)
	collectRefs(root, &r.refs)
	return r, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

func isIdent(e celast.Expr, name string) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == name
}

func isSelect(e celast.Expr, operand func(celast.Expr) bool, field string) bool {
	return e.Kind() == celast.SelectKind && e.AsSelect().FieldName() == field && operand(e.AsSelect().Operand())
}

func isIdentityIdent(e celast.Expr) bool { return isIdent(e, "identity") }

func isAttributes(e celast.Expr) bool { return isSelect(e, isIdentityIdent, "attributes") }

// collectRefs records what e reads of the identity. It errs on the side of
// recording more (all attributes) whenever the shape is not a plain field or
// attribute access, which keeps memoisation sound.
func collectRefs(e celast.Expr, r *refs) {
	switch e.Kind() {
	case celast.IdentKind:
		if isIdentityIdent(e) {
			r.allAttrs = true
			for _, f := range topFields {
				r.fields[f] = true
			}
		}
	case celast.SelectKind:
		s := e.AsSelect()
		switch {
		case isAttributes(s.Operand()):
			r.attrs[s.FieldName()] = true
		case isIdentityIdent(s.Operand()):
			if s.FieldName() == "attributes" {
				r.allAttrs = true
			} else {
				r.fields[s.FieldName()] = true
			}
		default:
			collectRefs(s.Operand(), r)
		}
	case celast.CallKind:
		c := e.AsCall()
		args := c.Args()
		if c.FunctionName() == "_[_]" && len(args) == 2 && isAttributes(args[0]) && args[1].Kind() == celast.LiteralKind {
			if s, ok := args[1].AsLiteral().Value().(string); ok {
				r.attrs[s] = true
				return
			}
		}
		if c.IsMemberFunction() {
			collectRefs(c.Target(), r)
		}
		for _, a := range args {
			collectRefs(a, r)
		}
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			collectRefs(el, r)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			collectRefs(me.Key(), r)
			collectRefs(me.Value(), r)
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		for _, x := range []celast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()} {
			collectRefs(x, r)
		}
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			collectRefs(f.AsStructField().Value(), r)
		}
	}
}

// requiredKind returns K when e is identity.kind == "K" or a conjunction
// with that as one operand.
func requiredKind(e celast.Expr) identity.Kind {
	if e.Kind() != celast.CallKind {
		return ""
	}
	c := e.AsCall()
	args := c.Args()
	switch c.FunctionName() {
	case "_&&_":
		for _, a := range args {
			if k := requiredKind(a); k != "" {
				return k
			}
		}
	case "_==_":
		if len(args) == 2 {
			for i := 0; i < 2; i++ {
				if isSelect(args[i], isIdentityIdent, "kind") && args[1-i].Kind() == celast.LiteralKind {
					if s, ok := args[1-i].AsLiteral().Value().(string); ok {
						return identity.Kind(s)
					}
				}
			}
		}
	}
	return ""
}

var topFields = []string{"attributes", "displayName", "externalId", "kind", "manager", "owner", "source", "state"}

// Desired is the access policy says an identity should hold. It is shared
// between callers through the evaluator's memo: treat it as read-only.
type Desired struct {
	Grants      []DesiredGrant
	Credentials []*CredentialRule
	// Errors are rules that failed at run time (for example a missing
	// attribute); a failed rule does not match. They explain a plan.
	Errors []RuleError
}

// DesiredGrant is one entitlement with the rules that justify it.
type DesiredGrant struct {
	Entitlement string
	Reasons     []string
}

// RuleError is a rule that could not be evaluated for an identity.
type RuleError struct {
	Rule    string
	Message string
}

// Desired evaluates the policy for id. A departed identity is due nothing.
// The result is memoised on the fields and attributes the rules read, so
// identities that look the same to policy share one evaluation; it is safe
// for concurrent use and must not be modified.
func (p *Policy) Desired(id *identity.Identity) *Desired {
	if id.State == identity.Departed {
		return &Desired{}
	}
	return p.eval.desired(id)
}

// Explain is Desired without memoisation: it evaluates every rule. Tests
// and benchmarks use it as the reference the memoised path must agree with.
func (p *Policy) Explain(id *identity.Identity) *Desired {
	if id.State == identity.Departed {
		return &Desired{}
	}
	return p.eval.evaluate(id)
}

// evaluator runs a policy's rules and memoises results.
type evaluator struct {
	p     *Policy
	refs  refs
	mu    sync.RWMutex
	memo  map[string]*Desired
	limit int
}

func newEvaluator(p *Policy) *evaluator {
	ev := &evaluator{p: p, refs: refs{fields: map[string]bool{}, attrs: map[string]bool{}}, memo: map[string]*Desired{}, limit: 8192}
	for _, b := range p.Birthrights {
		ev.refs.merge(b.when.refs)
		if b.when.kind != "" {
			ev.refs.fields["kind"] = true
		}
	}
	for _, c := range p.Credentials {
		ev.refs.merge(c.when.refs)
		if c.when.kind != "" {
			ev.refs.fields["kind"] = true
		}
	}
	return ev
}

func (ev *evaluator) desired(id *identity.Identity) *Desired {
	key := ev.key(id)
	ev.mu.RLock()
	d, ok := ev.memo[key]
	ev.mu.RUnlock()
	if ok {
		return d
	}
	d = ev.evaluate(id)
	ev.mu.Lock()
	if len(ev.memo) >= ev.limit {
		// A simple bound: identities that look alike to policy are few in
		// practice; when they are not, start over rather than grow.
		ev.memo = make(map[string]*Desired, ev.limit)
	}
	ev.memo[key] = d
	ev.mu.Unlock()
	return d
}

// key encodes, in a fixed order, every value the rules read.
func (ev *evaluator) key(id *identity.Identity) string {
	var b []byte
	for _, f := range topFields {
		if f == "attributes" || !ev.refs.fields[f] {
			continue
		}
		b = appendValue(append(b, f...), topValue(id, f))
	}
	if ev.refs.allAttrs {
		for _, k := range id.AttributeKeys() {
			b = appendValue(append(append(b, '.'), k...), id.Attributes[k])
		}
	} else if len(ev.refs.attrs) > 0 {
		names := make([]string, 0, len(ev.refs.attrs))
		for a := range ev.refs.attrs {
			names = append(names, a)
		}
		sort.Strings(names)
		for _, a := range names {
			v, ok := id.Attributes[a]
			if !ok {
				b = append(b, '.', '!')
				continue
			}
			b = appendValue(append(append(b, '.'), a...), v)
		}
	}
	return string(b)
}

func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		b = append(b, 's')
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		return append(b, v...)
	case bool:
		return strconv.AppendBool(append(b, 'b'), v)
	case float64:
		return strconv.AppendFloat(append(b, 'f'), v, 'g', -1, 64)
	case int:
		return strconv.AppendInt(append(b, 'i'), int64(v), 10)
	case int64:
		return strconv.AppendInt(append(b, 'i'), v, 10)
	case []any:
		b = append(b, '[')
		for _, x := range v {
			b = appendValue(b, x)
		}
		return append(b, ']')
	case []string:
		b = append(b, '[')
		for _, x := range v {
			b = appendValue(b, x)
		}
		return append(b, ']')
	case nil:
		return append(b, 'n')
	default:
		// Unknown shapes never share a memo entry.
		return append(b, '?')
	}
}

func topValue(id *identity.Identity, f string) any {
	switch f {
	case "displayName":
		return id.DisplayName
	case "externalId":
		return id.ExternalID
	case "kind":
		return string(id.Kind)
	case "manager":
		return id.ManagerID
	case "owner":
		return id.OwnerID
	case "source":
		return id.Source
	case "state":
		return string(id.State)
	}
	return nil
}

// Activation returns the CEL input for id.
func Activation(id *identity.Identity) map[string]any {
	attrs := id.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	return map[string]any{"identity": map[string]any{
		"kind": string(id.Kind), "state": string(id.State), "source": id.Source,
		"externalId": id.ExternalID, "displayName": id.DisplayName,
		"owner": id.OwnerID, "manager": id.ManagerID, "attributes": attrs,
	}}
}

func (ev *evaluator) evaluate(id *identity.Identity) *Desired {
	act := Activation(id)
	d := &Desired{}
	match := func(name string, r *rule) bool {
		if r.kind != "" && r.kind != id.Kind {
			return false
		}
		out, _, err := r.prog.Eval(act)
		if err != nil {
			d.Errors = append(d.Errors, RuleError{Rule: name, Message: err.Error()})
			return false
		}
		return out == types.True
	}
	// reasons is indexed like ev.p.entNames (sorted), so grants come out
	// sorted without a map or a sort.
	var reasons [][]string
	for _, b := range ev.p.Birthrights {
		if !match(b.Name, b.when) {
			continue
		}
		if reasons == nil {
			reasons = make([][]string, len(ev.p.entNames))
		}
		for _, i := range b.expandedIdx {
			reasons[i] = append(reasons[i], b.reason)
		}
	}
	for i, rs := range reasons {
		if rs != nil {
			d.Grants = append(d.Grants, DesiredGrant{Entitlement: ev.p.entNames[i], Reasons: rs})
		}
	}
	for _, c := range ev.p.Credentials {
		if match(c.Name, c.when) {
			d.Credentials = append(d.Credentials, c)
		}
	}
	return d
}

// Expiry returns when a grant of e applied at t ends, or the zero time when
// it does not end.
func (e *Entitlement) Expiry(t time.Time) time.Time {
	if e.MaxDuration == 0 {
		return time.Time{}
	}
	return t.Add(e.MaxDuration)
}

// Matches evaluates the rule's condition on an activation from Activation,
// without memoisation or kind indexing; a run-time error does not match.
// Benchmarks use it as the plain-CEL baseline.
func (b *BirthrightRule) Matches(act map[string]any) bool {
	out, _, err := b.when.prog.Eval(act)
	return err == nil && out == types.True
}
