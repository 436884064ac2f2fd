package fhirpath

import "fmt"

// EvaluateOn evaluates the expression with focus as %context and the
// initial focus, and root as %resource (the resource focus was selected
// from, which resolve() searches for contained resources). It serves
// expressions written relative to an item of another expression's result,
// such as the components of a composite search parameter ("code" and
// "value.as(Quantity)" on each Observation.component). Evaluate(r) is
// EvaluateOn(r, r). Errors are those of Evaluate.
// See https://hl7.org/fhir/R4/searchparameter-definitions.html#SearchParameter.component.expression.
func (x *Expression) EvaluateOn(root, focus Node) (Collection, error) {
	e := &env{root: root, context: Collection{focus}}
	out, err := x.root.eval(e, e.context)
	if err != nil {
		return nil, fmt.Errorf("fhirpath: evaluate %q: %w", x.src, err)
	}
	return out, nil
}
