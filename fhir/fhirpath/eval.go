package fhirpath

import (
	"errors"
	"fmt"
)

// ErrUnsupported is returned (wrapped) by functions the evaluator knows but
// cannot compute, such as memberOf(), which needs a terminology service.
var ErrUnsupported = errors.New("fhirpath: unsupported")

// Evaluate evaluates the expression with resource as %resource, %context
// and the initial focus, and returns the resulting collection. It fails on
// a type error at run time (for example a collection of two items used as a
// boolean) and on unsupported functions (ErrUnsupported).
func (x *Expression) Evaluate(resource Node) (Collection, error) {
	e := &env{root: resource, context: Collection{resource}}
	out, err := x.root.eval(e, e.context)
	if err != nil {
		return nil, fmt.Errorf("fhirpath: evaluate %q: %w", x.src, err)
	}
	return out, nil
}

// EvaluateJSON decodes a FHIR JSON resource and evaluates the expression on
// it. To evaluate several expressions on one resource, call Decode once and
// then Evaluate.
func (x *Expression) EvaluateJSON(body []byte) (Collection, error) {
	n, err := Decode(body)
	if err != nil {
		return nil, err
	}
	return x.Evaluate(n)
}

// env holds the state of one evaluation.
type env struct {
	root    Node
	context Collection
	// index and total are $index and $total inside an iterating function.
	index int
	total Collection
}

// expr is a node of the syntax tree. eval evaluates it with this as the
// focus ($this, the input of a leading name or function call).
type expr interface {
	eval(e *env, this Collection) (Collection, error)
}

type literalExpr struct{ value Node }

func (l literalExpr) eval(*env, Collection) (Collection, error) {
	if l.value.Value == nil {
		return nil, nil
	}
	return Collection{l.value}, nil
}

type thisExpr struct{}

func (thisExpr) eval(_ *env, this Collection) (Collection, error) { return this, nil }

type indexVarExpr struct{}

func (indexVarExpr) eval(e *env, _ Collection) (Collection, error) {
	return Collection{integer(int64(e.index))}, nil
}

type totalExpr struct{}

func (totalExpr) eval(e *env, _ Collection) (Collection, error) { return e.total, nil }

// typeNameExpr is the type argument of is(), as() and ofType().
type typeNameExpr struct{ name string }

func (t *typeNameExpr) eval(*env, Collection) (Collection, error) {
	return nil, fmt.Errorf("type name %s used as a value", t.name)
}

type externalExpr struct{ name string }

// Well-known external constants.
// See https://hl7.org/fhir/R4/fhirpath.html#vars.
var externalConstants = map[string]string{
	"ucum":  "http://unitsofmeasure.org",
	"sct":   "http://snomed.info/sct",
	"loinc": "http://loinc.org",
}

func (x *externalExpr) eval(e *env, _ Collection) (Collection, error) {
	switch x.name {
	case "resource", "rootResource":
		return Collection{e.root}, nil
	case "context":
		return e.context, nil
	}
	if v, ok := externalConstants[x.name]; ok {
		return Collection{{Type: TypeString, Value: v}}, nil
	}
	if len(x.name) > 3 && (x.name[:3] == "vs-" || x.name[:4] == "ext-") {
		base := "http://hl7.org/fhir/ValueSet/"
		name := x.name[3:]
		if x.name[:4] == "ext-" {
			base, name = "http://hl7.org/fhir/StructureDefinition/", x.name[4:]
		}
		return Collection{{Type: TypeString, Value: base + name}}, nil
	}
	return nil, fmt.Errorf("undefined variable %%%s", x.name)
}

// memberExpr selects the child elements called name of every item of its
// operand. A leading name that is a type name (Patient.name) instead
// filters the focus by type.
type memberExpr struct {
	operand expr
	name    string
}

func (m *memberExpr) eval(e *env, this Collection) (Collection, error) {
	input := this
	if m.operand != nil {
		var err error
		if input, err = m.operand.eval(e, this); err != nil {
			return nil, err
		}
	} else if isUpper(m.name[0]) {
		if _, known := typeKinds[m.name]; known {
			var out Collection
			for _, n := range input {
				if isType(n.Type, m.name) {
					out = append(out, n)
				}
			}
			return out, nil
		}
	}
	var out Collection
	for _, n := range input {
		out = children(n, m.name, out)
	}
	return out, nil
}

type indexExpr struct {
	operand, index expr
}

func (x *indexExpr) eval(e *env, this Collection) (Collection, error) {
	input, err := x.operand.eval(e, this)
	if err != nil {
		return nil, err
	}
	idx, err := x.index.eval(e, this)
	if err != nil {
		return nil, err
	}
	i, ok, err := integerArg(idx)
	if err != nil || !ok {
		return nil, err
	}
	if i < 0 || i >= int64(len(input)) {
		return nil, nil
	}
	return input[i : i+1], nil
}

type callExpr struct {
	operand expr
	name    string
	fn      *function
	args    []expr
}

func (c *callExpr) eval(e *env, this Collection) (Collection, error) {
	input := this
	if c.operand != nil {
		var err error
		if input, err = c.operand.eval(e, this); err != nil {
			return nil, err
		}
	}
	out, err := c.fn.impl(e, this, input, c.args)
	if err != nil {
		return nil, fmt.Errorf("%s(): %w", c.name, err)
	}
	return out, nil
}

// typeExpr is the is and as operators.
type typeExpr struct {
	op      string
	operand expr
	typ     string
}

func (t *typeExpr) eval(e *env, this Collection) (Collection, error) {
	input, err := t.operand.eval(e, this)
	if err != nil {
		return nil, err
	}
	if t.op == "is" {
		if len(input) == 0 {
			return nil, nil
		}
		if len(input) > 1 {
			return nil, fmt.Errorf("is %s: input has %d items", t.typ, len(input))
		}
		return boolean(isType(input[0].Type, t.typ)), nil
	}
	return ofType(input, t.typ), nil
}

// ofType returns the items of input whose type is typ or derives from it.
// R4 search parameters apply "as" to collections (Observation.component.value
// as Quantity), so as filters like ofType rather than failing.
func ofType(input Collection, typ string) Collection {
	var out Collection
	for _, n := range input {
		if isType(n.Type, typ) {
			out = append(out, n)
		}
	}
	return out
}

// isType reports whether a value of type t is of type want: the same type or
// a specialization of it. want may be qualified (FHIR.Patient, System.String).
// An unqualified System type name (String, Integer...) matches computed
// values of that type.
func isType(t, want string) bool {
	if t == "" {
		return false
	}
	if len(want) > 7 && want[:7] == "System." {
		return t == want
	}
	if len(want) > 5 && want[:5] == "FHIR." {
		want = want[5:]
	} else if len(t) > 7 && t[:7] == "System." {
		return t[7:] == want
	}
	for ; t != ""; t = baseTypes[t] {
		if t == want {
			return true
		}
	}
	return false
}

type negateExpr struct{ operand expr }

func (n *negateExpr) eval(e *env, this Collection) (Collection, error) {
	c, err := n.operand.eval(e, this)
	if err != nil || len(c) == 0 {
		return nil, err
	}
	return arithmetic("*", c, Collection{integer(-1)})
}
