package fhirpath_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir/fhirpath"
)

func mustDecode(tb testing.TB, file string) fhirpath.Node {
	tb.Helper()
	b, err := os.ReadFile("testdata/examples/" + file)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := fhirpath.Decode(b)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// render shows a collection as "type value; type value" for comparisons.
func render(c fhirpath.Collection) string {
	parts := make([]string, len(c))
	for i, n := range c {
		v, ok := n.String()
		if !ok {
			b, _ := json.Marshal(n.Value)
			v = string(b)
		}
		parts[i] = n.Type + " " + v
	}
	return strings.Join(parts, "; ")
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name, file, expr, want string
	}{
		{"type prefix", "Patient-example.json", "Patient.birthDate", "date 1974-12-25"},
		{"no type prefix", "Patient-example.json", "birthDate", "date 1974-12-25"},
		{"other type prefix", "Patient-example.json", "Observation.status", ""},
		{"repeating primitive", "Patient-example.json", "Patient.name[0].given", "string Peter; string James"},
		{"indexer", "Patient-example.json", "Patient.name.given[1]", "string James"},
		{"first", "Patient-example.json", "Patient.name.first().family", "string Chalmers"},
		{"where string", "Patient-example.json", "Patient.telecom.where(system='phone' and use='mobile').value", "string (03) 3410 5613"},
		{"code type", "Patient-example.json", "Patient.gender", "code male"},
		{"code is string", "Patient-example.json", "Patient.gender is string", "System.Boolean true"},
		{"choice boolean", "Patient-example.json", "Patient.deceased", "boolean false"},
		{"choice search param", "Patient-example.json", "Patient.deceased.exists() and Patient.deceased != false", "System.Boolean false"},
		{"resolve is", "Patient-example.json", "Patient.managingOrganization.where(resolve() is Organization).reference", "string Organization/1"},
		{"resolve is not", "Patient-example.json", "Patient.managingOrganization.where(resolve() is Patient)", ""},
		{"union dedup", "Patient-example.json", "Patient.name.use | Patient.name.use", "code official; code usual; code maiden"},
		{"count", "Patient-example.json", "Patient.name.given.count()", "System.Integer 5"},
		{"distinct", "Patient-example.json", "Patient.name.given.distinct().count()", "System.Integer 3"},
		{"select", "Patient-example.json", "Patient.name.select(given.first())", "string Peter; string Jim; string Peter"},
		{"all", "Patient-example.json", "Patient.name.all(given.exists())", "System.Boolean true"},
		{"exists cond", "Patient-example.json", "Patient.name.exists(use = 'maiden')", "System.Boolean true"},
		{"empty", "Patient-example.json", "Patient.photo.empty()", "System.Boolean true"},
		{"startsWith", "Patient-example.json", "Patient.name.family.where(startsWith('Wind'))", "string Windsor"},
		{"matches", "Patient-example.json", "Patient.birthDate.toString().matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}$')", "System.Boolean true"},
		{"length", "Patient-example.json", "Patient.name.family.first().length()", "System.Integer 8"},
		{"date compare", "Patient-example.json", "Patient.birthDate < @1975-01-01", "System.Boolean true"},
		{"date precision", "Patient-example.json", "Patient.birthDate = @1974", ""},
		{"date arithmetic", "Patient-example.json", "Patient.birthDate + 1 year", "System.Date 1975-12-25"},
		{"iif", "Patient-example.json", "iif(Patient.active, 'yes', 'no')", "System.String yes"},
		{"implies", "Patient-example.json", "Patient.active implies Patient.name.exists()", "System.Boolean true"},
		{"xor", "Patient-example.json", "true xor false", "System.Boolean true"},
		{"not", "Patient-example.json", "Patient.active.not()", "System.Boolean false"},
		{"resource var", "Patient-example.json", "%resource.id", "string example"},
		{"context var", "Patient-example.json", "%context.gender", "code male"},
		{"ucum", "Patient-example.json", "%ucum", "System.String http://unitsofmeasure.org"},
		{"this", "Patient-example.json", "Patient.name.given.where($this = 'Jim')", "string Jim"},
		{"arithmetic", "Patient-example.json", "1 + 2 * 3 - 10 div 3", "System.Integer 4"},
		{"decimal", "Patient-example.json", "7 / 2", "System.Decimal 3.5"},
		{"string concat", "Patient-example.json", "'a' & {} & 'b'", "System.String ab"},
		{"quantity literal", "Patient-example.json", "4 'mg' < 5 'mg'", "System.Boolean true"},
		{"time literal", "Patient-example.json", "@T10:00 < @T11:00", "System.Boolean true"},
		{"equivalence", "Patient-example.json", "'Hello  World' ~ 'hello world'", "System.Boolean true"},
		{"in", "Patient-example.json", "'Jim' in Patient.name.given", "System.Boolean true"},
		{"contains op", "Patient-example.json", "Patient.name.given contains 'Jim'", "System.Boolean true"},
		{"hasValue", "Patient-example.json", "Patient.birthDate.hasValue()", "System.Boolean true"},
		{"primitive extension", "Patient-example.json", "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value", "dateTime 1974-12-25T14:35:45-05:00"},
		{"children", "Patient-example.json", "Patient.name[1].children()", "string Jim; code usual"},
		{"descendants", "Patient-example.json", "Patient.contact.descendants().where($this is HumanName).family", "string du Marché"},
		{"substring", "Patient-example.json", "'abcdef'.substring(1, 3)", "System.String bcd"},
		{"backbone type", "Patient-example.json", "Patient.contact.first() is BackboneElement", "System.Boolean true"},
		{"choice quantity", "Observation-blood-pressure.json", "Observation.component.value.ofType(Quantity).value", "decimal 107; decimal 60"},
		{"choice as", "Observation-blood-pressure.json", "(Observation.component.value as Quantity).code", "code mm[Hg]; code mm[Hg]"},
		{"choice as function", "Observation-blood-pressure.json", "Observation.component.value.as(Quantity).unit", "string mmHg; string mmHg"},
		{"choice is", "Observation-blood-pressure.json", "Observation.effective is dateTime", "System.Boolean true"},
		{"choice wrong type", "Observation-blood-pressure.json", "Observation.component.value.ofType(string)", ""},
		{"quantity compare", "Observation-blood-pressure.json", "Observation.component.value.where($this > 100 'mm[Hg]').value", "decimal 107"},
		{"decimal precision", "Observation-decimal.json", "Observation.component[3].value.value", "decimal 1E-22"},
		{"content reference", "Questionnaire-3141.json", "Questionnaire.item.item.linkId.first()", "string 1.1"},
		{"bundle resource type", "Bundle-bundle-example.json", "Bundle.entry[0].resource is MedicationRequest", "System.Boolean true"},
		{"bundle entry search param", "Bundle-bundle-example.json", "Bundle.entry[0].resource.id", "string 3123"},
		{"extension function", "Patient-example.json", "Patient.extension('http://example.org/none').exists()", "System.Boolean false"},
		{"trace", "Patient-example.json", "Patient.id.trace('id')", "string example"},
		{"toInteger", "Patient-example.json", "'42'.toInteger() + 1", "System.Integer 43"},
		{"comments", "Patient-example.json", "Patient.id // the id\n /* block */", "string example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := fhirpath.Parse(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := x.Evaluate(mustDecode(t, tt.file))
			if err != nil {
				t.Fatalf("%s on %s: %v", tt.expr, tt.file, err)
			}
			if r := render(got); r != tt.want {
				t.Errorf("%s on %s: got %q, want %q", tt.expr, tt.file, r, tt.want)
			}
		})
	}
}

func TestEvaluate_Paths(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{"Patient.name.given", []string{"Patient.name[0].given[0]", "Patient.name[0].given[1]", "Patient.name[1].given[0]", "Patient.name[2].given[0]", "Patient.name[2].given[1]"}},
		{"Patient.deceased", []string{"Patient.deceasedBoolean"}},
		{"Patient.managingOrganization", []string{"Patient.managingOrganization"}},
	}
	root := mustDecode(t, "Patient-example.json")
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := fhirpath.MustParse(tt.expr).Evaluate(root)
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, n := range got {
				paths = append(paths, n.Path)
			}
			if strings.Join(paths, " ") != strings.Join(tt.want, " ") {
				t.Errorf("%s: paths %q, want %q", tt.expr, paths, tt.want)
			}
		})
	}
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{"unknown function", "Patient.name.frobnicate()", "unknown function frobnicate()"},
		{"arity", "Patient.name.where()", "where() takes 1 arguments, got 0"},
		{"unbalanced", "(Patient.name", `expected ")"`},
		{"trailing", "Patient.name )", `unexpected ")"`},
		{"unterminated string", "Patient.name.where(use = 'x)", "unterminated string"},
		{"bad date", "@2020-13", ""},
		{"empty", "", "unexpected end of expression"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fhirpath.Parse(tt.expr)
			if err == nil {
				t.Fatalf("Parse(%q): no error, want %q", tt.expr, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q): error %q, want it to contain %q", tt.expr, err, tt.want)
			}
		})
	}
}

func TestEvaluate_Errors(t *testing.T) {
	root := mustDecode(t, "Patient-example.json")
	tests := []struct {
		name, expr string
		is         error
	}{
		{"memberOf", "Patient.gender.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')", fhirpath.ErrUnsupported},
		{"boolean of many", "Patient.name.given and true", nil},
		{"undefined variable", "%nope", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fhirpath.MustParse(tt.expr).Evaluate(root)
			if err == nil {
				t.Fatalf("%s: no error", tt.expr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("%s: error %v, want %v", tt.expr, err, tt.is)
			}
		})
	}
}

func TestDecode_Errors(t *testing.T) {
	for _, body := range []string{`{}`, `[]`, `{"resourceType": 1}`, `{`} {
		if _, err := fhirpath.Decode([]byte(body)); err == nil {
			t.Errorf("Decode(%s): no error", body)
		}
	}
}

func BenchmarkEvaluate_PatientIdentifier(b *testing.B) {
	x := fhirpath.MustParse("Patient.identifier")
	root := mustDecode(b, "Patient-example.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.Evaluate(root); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvaluateJSON_PatientIdentifier(b *testing.B) {
	x := fhirpath.MustParse("Patient.identifier")
	body, err := os.ReadFile("testdata/examples/Patient-example.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.EvaluateJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEvaluate_Concurrent evaluates one compiled expression from several
// goroutines (run with -race).
func TestEvaluate_Concurrent(t *testing.T) {
	x := fhirpath.MustParse("Patient.name.where(given.exists()).select(given.first() & ' ' & family)")
	root := mustDecode(t, "Patient-example.json")
	for i := range 8 {
		t.Run(strings.Repeat("g", i+1), func(t *testing.T) {
			t.Parallel()
			for range 100 {
				got, err := x.Evaluate(root)
				if err != nil || len(got) != 3 {
					t.Fatalf("%s: %d items, error %v; want 3 items", x, len(got), err)
				}
			}
		})
	}
}
