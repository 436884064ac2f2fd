package profiles

// Validation against the R4 base definitions (ValidateBase): the checks
// that descend into data types and nested resources, and the R4
// invariants. See https://hl7.org/fhir/R4/validation.html and
// https://hl7.org/fhir/R4/conformance-rules.html#constraints.

import (
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirpath"
)

// baseType checks obj, a value of el whose children el does not define,
// against the definition el reuses (contentReference) or the definition of
// its type (typ for a choice, else el's one type): a data type, or the
// resource's own type for a contained resource or one inside a Bundle or
// Parameters. A nested resource other than a contained one is the
// %resource of its own invariants; a contained one gets no dom-6 warning
// (contained resources carry no narrative of their own).
func (w *walk) baseType(obj map[string]any, el *element, path, typ string) {
	if el.contentRef != nil {
		w.object(obj, el.contentRef, path)
		w.baseInvariants(el.contentRef, fhirpath.Element(el.contentRef.path, path, obj), path)
		return
	}
	if typ == "" && len(el.types) == 1 {
		typ = el.types[0].code
	}
	if typ == "Resource" || fhir.IsResourceType(typ) {
		rt, _ := obj["resourceType"].(string)
		def := w.v.base[rt]
		if def == nil || !fhir.IsResourceType(rt) {
			w.add(fhir.SeverityError, fhir.IssueStructure, path, "%s must hold a resource of an R4 resource type", el.id)
			return
		}
		node := fhirpath.Element(rt, path, obj)
		saved := w.root
		if el.name != "contained" {
			w.root = node
		}
		w.object(obj, def, path)
		for _, inv := range def.baseInvariants {
			if el.name != "contained" || inv.key != "dom-6" {
				w.evaluate(inv, node, path)
			}
		}
		w.root = saved
		return
	}
	dt := w.v.base[typ]
	if dt == nil {
		return
	}
	if typ == "Extension" {
		if _, ok := obj["extension"]; ok {
			for k := range obj {
				if strings.HasPrefix(k, "value") {
					w.add(fhir.SeverityError, fhir.IssueInvariant, path, "ext-1: Must have either extensions or value[x], not both")
					break
				}
			}
		}
	}
	w.object(obj, dt, path)
	w.baseInvariants(dt, fhirpath.Element(typ, path, obj), path)
}

// baseChecks checks ele-1 on a value of el and evaluates el's own R4
// invariants on it (those of its type are baseType's).
func (w *walk) baseChecks(x any, el *element, path, typ string) {
	switch x := x.(type) {
	case map[string]any:
		if len(x) == 0 {
			w.add(fhir.SeverityError, fhir.IssueInvariant, path, "ele-1: All FHIR elements must have a @value or children")
		}
	case string:
		if x == "" {
			w.add(fhir.SeverityError, fhir.IssueInvariant, path, "ele-1: All FHIR elements must have a @value or children")
		}
	}
	if len(el.baseInvariants) == 0 {
		return
	}
	var focus fhirpath.Node
	switch {
	case !strings.Contains(el.path, "."):
		focus = fhirpath.Element(el.path, path, x) // the resource itself
		if path == w.root.Path {
			focus = w.root
		}
	case typ != "":
		focus = fhirpath.Element(typ, path, x)
	case len(el.types) == 1 && el.types[0].code != "BackboneElement" && el.types[0].code != "Element":
		focus = fhirpath.Element(el.types[0].code, path, x)
	default:
		focus = fhirpath.Element(el.path, path, x)
	}
	w.baseInvariants(el, focus, path)
}

// baseInvariants evaluates the R4 invariants of el on focus.
func (w *walk) baseInvariants(el *element, focus fhirpath.Node, path string) {
	for _, inv := range el.baseInvariants {
		w.evaluate(inv, focus, path)
	}
}

// evaluate evaluates one R4 invariant on focus (at path), with w.root as
// %resource: false is an issue of the invariant's severity; an expression
// the evaluator fails on is a warning that it could not be evaluated.
func (w *walk) evaluate(inv *invariant, focus fhirpath.Node, path string) {
	out, err := inv.expr.EvaluateOn(w.root, focus)
	if err != nil {
		w.add(fhir.SeverityWarning, fhir.IssueProcessing, path, "invariant %s could not be evaluated", inv.key)
		return
	}
	if len(out) == 1 {
		if b, ok := out[0].Value.(bool); ok && !b {
			sev := fhir.SeverityError
			if inv.severity == "warning" {
				sev = fhir.SeverityWarning
			}
			w.add(sev, fhir.IssueInvariant, path, "%s: %s", inv.key, inv.human)
		}
	}
}
