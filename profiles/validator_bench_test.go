package profiles_test

import (
	"os"
	"testing"
)

// BenchmarkValidate_Flag validates the CP-IS Flag fixture (about 900 bytes)
// against its profile: decode, snapshot walk, bindings, references,
// invariants and the NHS number check.
func BenchmarkValidate_Flag(b *testing.B) {
	v := newValidator(b)
	body, err := os.ReadFile("testdata/flag.json")
	if err != nil {
		b.Fatal(err)
	}
	if is := v.Validate(body, base+"CPIS-Flag"); len(is) != 0 {
		b.Fatalf("Validate(flag.json): %v, want no issues", is)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		v.Validate(body, base+"CPIS-Flag")
	}
}

// BenchmarkValidate_Patient validates the CP-IS Patient fixture.
func BenchmarkValidate_Patient(b *testing.B) {
	v := newValidator(b)
	body, err := os.ReadFile("testdata/patient.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		v.Validate(body, base+"CPIS-Patient")
	}
}

// BenchmarkValidate_FlagParallel validates the Flag fixture from all cores.
func BenchmarkValidate_FlagParallel(b *testing.B) {
	v := newValidator(b)
	body, err := os.ReadFile("testdata/flag.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			v.Validate(body, base+"CPIS-Flag")
		}
	})
}

// BenchmarkNew builds a validator: the CP-IS snapshots on the R4 base
// definitions, which are loaded once per process.
func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		newValidator(b)
	}
}

// BenchmarkValidateBase_Flag validates the CP-IS Flag fixture against the
// R4 Flag definition (data types, invariants), as $validate does.
func BenchmarkValidateBase_Flag(b *testing.B) {
	v := newValidator(b)
	body, err := os.ReadFile("testdata/flag.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		v.ValidateBase(body)
	}
}

// BenchmarkValidateBase_Patient validates the official R4 example Patient
// (3.7 KB) against the R4 Patient definition.
func BenchmarkValidateBase_Patient(b *testing.B) {
	v := newValidator(b)
	body, err := os.ReadFile("../testdata/r4-examples/Patient-example.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		v.ValidateBase(body)
	}
}
