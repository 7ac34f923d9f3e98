package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"

	"github.com/jml-dev/jml/internal/identity"
)

// Attribute declares an identity attribute a policy's rules may read: its
// name, its CEL type, and, where the set is finite, the values it may
// take (for a list, the values of its elements).
type Attribute struct {
	Name   string
	Type   string
	Values []string
}

var attrNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// attributeTypes are the types an attribute may declare.
var attributeTypes = map[string]*types.Type{
	"string":       types.StringType,
	"int":          types.IntType,
	"double":       types.DoubleType,
	"bool":         types.BoolType,
	"list(string)": types.NewListType(types.StringType),
	"list(int)":    types.NewListType(types.IntType),
	"map":          types.NewMapType(types.StringType, types.DynType),
	"any":          types.DynType,
}

func attributeTypeNames() string {
	names := make([]string, 0, len(attributeTypes))
	for n := range attributeTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// identityFields are the fields of identity a rule may read, besides
// attributes; each is a string.
var identityFields = []string{"displayName", "externalId", "kind", "manager", "owner", "source", "state"}

var identityStates = []string{string(identity.Pending), string(identity.Active), string(identity.Suspended), string(identity.Departed)}

const (
	identityType   = "jml.Identity"
	attributesType = "jml.Attributes"
)

// identityProvider gives the CEL checker the identity's shape: identity is
// an object with string fields and attributes, itself an object of the
// declared attributes (or, with none declared, a map it cannot verify).
type identityProvider struct {
	*types.Registry
	attrs map[string]*Attribute // nil: no attributes section
}

func (p *identityProvider) FindStructType(name string) (*types.Type, bool) {
	if name == identityType || (name == attributesType && p.attrs != nil) {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Registry.FindStructType(name)
}

func (p *identityProvider) FindStructFieldNames(name string) ([]string, bool) {
	switch {
	case name == identityType:
		return append(slices.Clone(identityFields), "attributes"), true
	case name == attributesType && p.attrs != nil:
		names := make([]string, 0, len(p.attrs))
		for n := range p.attrs {
			names = append(names, n)
		}
		sort.Strings(names)
		return names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p *identityProvider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	switch {
	case name == identityType && field == "attributes":
		if p.attrs == nil {
			return &types.FieldType{Type: types.NewMapType(types.StringType, types.DynType)}, true
		}
		return &types.FieldType{Type: types.NewObjectType(attributesType)}, true
	case name == identityType:
		if slices.Contains(identityFields, field) {
			return &types.FieldType{Type: types.StringType}, true
		}
		return nil, false
	case name == attributesType && p.attrs != nil:
		if a := p.attrs[field]; a != nil {
			return &types.FieldType{Type: attributeTypes[a.Type]}, true
		}
		return nil, false
	}
	return p.Registry.FindStructFieldType(name, field)
}

// checker type-checks rules against the identity's declared shape and
// checks the literals they compare kinds, states and finite attributes
// with. Rules run in the untyped environment (newEnv) all the same: the
// checker only finds mistakes.
type checker struct {
	env      *cel.Env
	attrs    map[string]*Attribute
	warnings []string
	warned   map[string]bool
}

func newChecker(decls []Attribute) (*checker, error) {
	var attrs map[string]*Attribute
	if decls != nil {
		attrs = map[string]*Attribute{}
		for i := range decls {
			a := &decls[i]
			if !attrNamePattern.MatchString(a.Name) {
				return nil, fmt.Errorf("attributes[%d]: name %q must be a CEL identifier", i, a.Name)
			}
			if attrs[a.Name] != nil {
				return nil, fmt.Errorf("attribute %q is declared twice", a.Name)
			}
			if a.Type == "" {
				a.Type = "string"
			}
			if attributeTypes[a.Type] == nil {
				return nil, fmt.Errorf("attribute %q: unknown type %q (want one of %s)", a.Name, a.Type, attributeTypeNames())
			}
			if len(a.Values) > 0 && a.Type != "string" && a.Type != "list(string)" {
				return nil, fmt.Errorf("attribute %q: values are for string and list(string) attributes", a.Name)
			}
			attrs[a.Name] = a
		}
	}
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	env, err := cel.NewEnv(cel.CustomTypeProvider(&identityProvider{Registry: reg, attrs: attrs}),
		cel.Variable("identity", types.NewObjectType(identityType)))
	if err != nil {
		return nil, err
	}
	return &checker{env: env, attrs: attrs, warned: map[string]bool{}}, nil
}

// check type-checks src, a rule's condition: it must compile against the
// declared shape, be boolean, and compare kinds, states and attributes
// with finite values only with values that exist. what names the rule in
// warnings.
func (c *checker) check(what, src string) error {
	ast, iss := c.env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return errorString(strings.ReplaceAll(iss.Err().Error(), "\n", " "))
	}
	if t := ast.OutputType(); t != cel.BoolType && (c.attrs != nil || t != cel.DynType) {
		return errorString("must be a boolean expression, it is of type " + t.String())
	}
	root := ast.NativeRep().Expr()
	if err := c.literals(root); err != nil {
		return err
	}
	if c.attrs == nil {
		var r refs
		r.fields, r.attrs = map[string]bool{}, map[string]bool{}
		collectRefs(root, &r)
		for _, a := range slices.Sorted(maps.Keys(r.attrs)) {
			if !c.warned[a] {
				c.warned[a] = true
				c.warnings = append(c.warnings, fmt.Sprintf("%s reads identity.attributes.%s, which the policy does not declare: add an attributes: section to check its name, type and values", what, a))
			}
		}
	}
	return nil
}

// allowed returns the values the field or attribute e reads may take, nil
// when they are not finite or e is no such read.
func (c *checker) allowed(e celast.Expr) (string, []string) {
	if e.Kind() != celast.SelectKind {
		return "", nil
	}
	s := e.AsSelect()
	if isIdentityIdent(s.Operand()) {
		switch s.FieldName() {
		case "kind":
			kinds := make([]string, len(identity.Kinds))
			for i, k := range identity.Kinds {
				kinds[i] = string(k)
			}
			return "identity.kind", kinds
		case "state":
			return "identity.state", identityStates
		}
		return "", nil
	}
	if isAttributes(s.Operand()) && c.attrs != nil {
		if a := c.attrs[s.FieldName()]; a != nil && len(a.Values) > 0 {
			return "identity.attributes." + a.Name, a.Values
		}
	}
	return "", nil
}

// literals finds comparisons of a finite field with a string that is not
// one of its values: identity.kind == "humna", "x" in identity.attributes.tools.
func (c *checker) literals(e celast.Expr) error {
	var err error
	visit(e, func(e celast.Expr) {
		if err != nil || e.Kind() != celast.CallKind {
			return
		}
		call := e.AsCall()
		args := call.Args()
		if len(args) != 2 {
			return
		}
		checkLit := func(name string, values []string, lit celast.Expr) {
			if err != nil || lit.Kind() != celast.LiteralKind {
				return
			}
			s, ok := lit.AsLiteral().Value().(string)
			if ok && !slices.Contains(values, s) {
				err = errorString(fmt.Sprintf("%s is never %q (it is one of %s)", name, s, strings.Join(values, ", ")))
			}
		}
		switch call.FunctionName() {
		case "_==_", "_!=_":
			for i := range 2 {
				if name, values := c.allowed(args[i]); values != nil {
					checkLit(name, values, args[1-i])
				}
			}
		case "@in":
			// field in ["a", "b"]: each element; "a" in attributes.list.
			if name, values := c.allowed(args[0]); values != nil && args[1].Kind() == celast.ListKind {
				for _, el := range args[1].AsList().Elements() {
					checkLit(name, values, el)
				}
			}
			if name, values := c.allowed(args[1]); values != nil {
				checkLit(name, values, args[0])
			}
		}
	})
	return err
}

// visit calls fn on e and every expression under it.
func visit(e celast.Expr, fn func(celast.Expr)) {
	fn(e)
	switch e.Kind() {
	case celast.SelectKind:
		visit(e.AsSelect().Operand(), fn)
	case celast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			visit(c.Target(), fn)
		}
		for _, a := range c.Args() {
			visit(a, fn)
		}
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			visit(el, fn)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			visit(me.Key(), fn)
			visit(me.Value(), fn)
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		for _, x := range []celast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()} {
			visit(x, fn)
		}
	}
}
