package profiles

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/terminology"
)

func testBase(t *testing.T) base {
	t.Helper()
	b, err := files.ReadFile("base/r4.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	bs, _, err := loadBase(b)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func diff(t *testing.T, elements ...string) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	for _, e := range elements {
		out = append(out, json.RawMessage(e))
	}
	return out
}

func child(e *element, name string) *element {
	for _, c := range e.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

func TestSnapshot(t *testing.T) {
	bs := testBase(t)
	root, err := bs.snapshot("Patient", diff(t,
		`{"id": "Patient.identifier", "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "closed"}}`,
		`{"id": "Patient.identifier:nhsNumber", "min": 1, "max": "1"}`,
		`{"id": "Patient.identifier:nhsNumber.system", "min": 1, "fixedUri": "https://fhir.nhs.uk/Id/nhs-number"}`,
		`{"id": "Patient.birthDate", "min": 1}`,
	), func(u string) string { return u[strings.LastIndexByte(u, '/')+1:] })
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	id := child(root, "identifier")
	if id == nil || id.slicing == nil || !id.slicing.closed || len(id.slices) != 1 {
		t.Fatalf("Patient.identifier: %+v, want closed slicing with one slice", id)
	}
	s := id.slices[0]
	if s.id != "Patient.identifier:nhsNumber" || s.min != 1 || s.max != 1 {
		t.Errorf("slice: id %s min %d max %d, want Patient.identifier:nhsNumber 1..1", s.id, s.min, s.max)
	}
	sys := child(s, "system")
	if sys == nil || sys.id != "Patient.identifier:nhsNumber.system" || sys.path != "Patient.identifier.system" || sys.min != 1 || sys.fixed != "https://fhir.nhs.uk/Id/nhs-number" {
		t.Errorf("slice system: %+v, want Identifier.system unfolded with min 1 and the fixed URI", sys)
	}
	if id.unfolded || len(id.children) != 0 {
		t.Errorf("Patient.identifier itself was unfolded; only the slice should be")
	}
	if bd := child(root, "birthDate"); bd.min != 1 || bd.max != 1 {
		t.Errorf("Patient.birthDate: %d..%d, want 1..1", bd.min, bd.max)
	}
	// The base tree is not changed by a snapshot.
	if bd := child(bs["Patient"], "birthDate"); bd.min != 0 {
		t.Errorf("base Patient.birthDate min = %d after a snapshot, want 0", bd.min)
	}
	if g := child(bs["Patient"], "identifier"); g.slicing != nil || len(g.slices) != 0 {
		t.Errorf("base Patient.identifier was sliced by a snapshot")
	}
}

func TestSnapshot_Errors(t *testing.T) {
	bs := testBase(t)
	same := func(u string) string { return u }
	tests := []struct {
		name, typ, element, want string
	}{
		{"unknown element", "Flag", `{"id": "Flag.colour", "min": 1}`, "no colour under Flag"},
		{"another type", "Flag", `{"id": "Patient.gender", "min": 1}`, "not under Flag"},
		{"inside a choice of many types", "Patient", `{"id": "Patient.deceased[x].value", "min": 1}`, "it has 2 types"},
		{"bad invariant", "Flag", `{"id": "Flag", "constraint": [{"key": "x-1", "severity": "error", "human": "x", "expression": "period.("}]}`, "invariant x-1"},
		{"unsupported discriminator", "Flag", `{"id": "Flag.identifier", "slicing": {"discriminator": [{"type": "profile", "path": "$this"}]}}`, "discriminator type profile"},
		{"unknown type", "Colour", `{"id": "Colour.code", "min": 1}`, "type Colour is not in base"},
	}
	for _, tt := range tests {
		_, err := bs.snapshot(tt.typ, diff(t, tt.element), same)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("snapshot(%s): err %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestRequiredBindingsHeld checks that the terminology service holds the
// value set of every required binding of the CP-IS resource types and of
// the data types their elements use (not counting Extension.value[x],
// which may be of any type), so that the validator checks them all. The
// one exception is mimetypes (Attachment.contentType): BCP 13, a grammar
// rather than a list of codes.
func TestRequiredBindingsHeld(t *testing.T) {
	bs := testBase(t)
	term := terminology.New()
	seen := map[string]bool{}
	var visit func(e *element)
	visit = func(e *element) {
		if e.path == "Extension.value[x]" {
			return
		}
		if b := e.binding; b != nil && b.strength == "required" && !term.HasValueSet(b.valueSet) && !strings.HasPrefix(b.valueSet, "http://hl7.org/fhir/ValueSet/mimetypes") {
			t.Errorf("%s: required binding to %s, which terminology/data does not hold", e.path, b.valueSet)
		}
		for _, ty := range e.types {
			if dt := bs[ty.code]; dt != nil && !seen[ty.code] && !fhir.IsResourceType(ty.code) {
				seen[ty.code] = true
				visit(dt)
			}
		}
		for _, c := range e.children {
			visit(c)
		}
	}
	for _, typ := range []string{"Patient", "Flag", "CarePlan", "CareTeam", "Organization", "Encounter", "Communication", "AuditEvent", "PractitionerRole"} {
		visit(bs[typ])
	}
	if !seen["Timing"] || !seen["Narrative"] {
		t.Errorf("data types visited %v, want Timing and Narrative among them", seen)
	}
}
