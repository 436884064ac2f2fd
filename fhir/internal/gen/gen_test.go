package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestGeneratedUpToDate regenerates the tables from the copied inputs into
// a temporary directory and compares them with the files in package fhir,
// so a change to the generator or the inputs without go generate fails.
func TestGeneratedUpToDate(t *testing.T) {
	out := t.TempDir()
	if err := run("r4", out, ""); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, name := range []string{"resourcetypes_gen.go", "searchparams_gen.go", "compartments_gen.go"} {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join("..", "..", name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("fhir/%s is out of date; run go generate ./fhir/...", name)
			}
		})
	}
}

// TestGenerateDeterministic checks that two runs give the same bytes
// (map iteration order must not leak into the output).
func TestGenerateDeterministic(t *testing.T) {
	a, err := generate("r4")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b, err := generate("r4")
		if err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if a[i].name != b[i].name || !bytes.Equal(a[i].src, b[i].src) {
				t.Fatalf("generate: %s differs between runs", a[i].name)
			}
		}
	}
}

func TestSplitUnion(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{"Flag.subject", []string{"Flag.subject"}},
		{"A.x | B.y", []string{"A.x", "B.y"}},
		{"(A.value as Quantity) | (A.value as SampledData)", []string{"(A.value as Quantity)", "(A.value as SampledData)"}},
		{"A.x.where(a | b) | B.y", []string{"A.x.where(a | b)", "B.y"}},
		{"A.x.where(s = 'a|b') | B.y", []string{"A.x.where(s = 'a|b')", "B.y"}},
		{`A.x.where(s = 'it\'s|') | B.y`, []string{`A.x.where(s = 'it\'s|')`, "B.y"}},
		{"A.x[0 | 1] | B.y", []string{"A.x[0 | 1]", "B.y"}},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			if got := splitUnion(tc.expr); !slices.Equal(got, tc.want) {
				t.Errorf("splitUnion(%q) = %q, want %q", tc.expr, got, tc.want)
			}
		})
	}
}

func TestNarrow(t *testing.T) {
	const clinicalCode = "AllergyIntolerance.code | AllergyIntolerance.reaction.substance | Condition.code | (DeviceRequest.code as CodeableConcept) | Medication.code | MedicationRequest.medication"
	for _, tc := range []struct {
		name, expr, resourceType string
		want                     string
		wantErr                  bool
	}{
		{"one member", "Flag.subject.where(resolve() is Patient) | Goal.subject", "Flag", "Flag.subject.where(resolve() is Patient)", false},
		{"two members", clinicalCode, "AllergyIntolerance", "AllergyIntolerance.code | AllergyIntolerance.reaction.substance", false},
		{"parenthesised", clinicalCode, "DeviceRequest", "(DeviceRequest.code as CodeableConcept)", false},
		{"prefix of another type", clinicalCode, "Medication", "Medication.code", false},
		{"longer type", clinicalCode, "MedicationRequest", "MedicationRequest.medication", false},
		{"bare type", "Observation | Goal.x", "Observation", "Observation", false},
		{"cast without dot", "Observation as Quantity | Goal.x", "Observation", "Observation as Quantity", false},
		{"absent", clinicalCode, "Flag", "", true},
		{"prefix only", clinicalCode, "Allergy", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := narrow(tc.expr, tc.resourceType)
			if (err != nil) != tc.wantErr {
				t.Fatalf("narrow(%q, %q): error %v, want error %v", tc.expr, tc.resourceType, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("narrow(%q, %q) = %q, want %q", tc.expr, tc.resourceType, got, tc.want)
			}
		})
	}
}

// TestLoad checks the model against counts taken from the source package
// by other means (see fhir/searchparam_test.go).
func TestLoad(t *testing.T) {
	m, err := load("r4")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what      string
		got, want int
	}{
		{"resource types", len(m.resourceTypes), 146},
		{"common parameters", len(m.common), 13},
		{"compartments", len(m.compartments), 5},
		{"Patient compartment resource types", len(m.compartments["Patient"]), 66},
	} {
		if tc.got != tc.want {
			t.Errorf("load(r4): %d %s, want %d", tc.got, tc.what, tc.want)
		}
	}
}
