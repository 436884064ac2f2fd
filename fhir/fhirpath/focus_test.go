package fhirpath_test

import (
	"testing"

	"github.com/cpis-fhir/cpis/fhir/fhirpath"
)

func TestEvaluateOn(t *testing.T) {
	root := mustDecode(t, "Observation-blood-pressure.json")
	components, err := fhirpath.MustParse("Observation.component").Evaluate(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(components) != 2 {
		t.Fatalf("Observation.component: %d items, want 2", len(components))
	}
	contained := mustDecode(t, "Patient-example.json")
	tests := []struct {
		name string
		root fhirpath.Node
		item int
		expr string
		want string
	}{
		// The backbone element keeps its definition, so value finds
		// valueQuantity and code is typed.
		{"value as Quantity", root, 1, "value.as(Quantity).value", "decimal 60"},
		{"code of the focus only", root, 0, "code.coding.code", "code 8480-6; code 271649006; code bp-s"},
		{"context is the focus", root, 1, "%context.code.coding.code", "code 8462-4"},
		{"resource is the root", root, 1, "%resource.status", "code final"},
		{"leading type name filters the focus", root, 0, "Observation", ""},
		{"root of another resource", contained, 0, "%resource.gender", "code male"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fhirpath.MustParse(tt.expr).EvaluateOn(tt.root, components[tt.item])
			if err != nil {
				t.Fatalf("%s on component[%d]: %v", tt.expr, tt.item, err)
			}
			if r := render(got); r != tt.want {
				t.Errorf("%s on component[%d] = %q, want %q", tt.expr, tt.item, r, tt.want)
			}
		})
	}

	// Evaluate(r) is EvaluateOn(r, r).
	x := fhirpath.MustParse("Observation.component.code.coding.code")
	a, _ := x.Evaluate(root)
	b, _ := x.EvaluateOn(root, root)
	if render(a) != render(b) {
		t.Errorf("EvaluateOn(root, root) = %q, want Evaluate(root) = %q", render(b), render(a))
	}
}

// TestElement checks nodes made by Element: a backbone element named by its
// model path types its children (value finds valueQuantity), a data type
// by its name.
func TestElement(t *testing.T) {
	root := mustDecode(t, "Observation-blood-pressure.json")
	comp := root.Object()["component"].([]any)[1]
	n := fhirpath.Element("Observation.component", "Observation.component[1]", comp)
	got, err := fhirpath.MustParse("value.as(Quantity).value").EvaluateOn(root, n)
	if err != nil || render(got) != "decimal 60" {
		t.Errorf("value.as(Quantity).value on Element(Observation.component) = %q, %v; want decimal 60", render(got), err)
	}
	period := map[string]any{"start": "2026-02-01", "end": "2026-01-01"}
	got, err = fhirpath.MustParse("start.hasValue().not() or end.hasValue().not() or (start <= end)").EvaluateOn(root, fhirpath.Element("Period", "Observation.effectivePeriod", period))
	if err != nil || render(got) != "System.Boolean false" {
		t.Errorf("per-1 on Element(Period) = %q, %v; want false", render(got), err)
	}
}
