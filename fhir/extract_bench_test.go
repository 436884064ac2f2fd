package fhir_test

import (
	"os"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// benchFlag is a CP-IS Flag as a local authority writes it (DOMAIN.md).
const benchFlag = `{"resourceType":"Flag",
	"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/flag-detail","valueReference":{"reference":"CarePlan/cp-9990000018"}}],
	"status":"active",
	"category":[{"coding":[{"system":"http://snomed.info/sct","code":"342191000000101","display":"Subject to child protection plan"}]}],
	"code":{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient","code":"child-protection-information-system-flag"}]},
	"subject":{"reference":"Patient/p-9990000018","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}},
	"period":{"start":"2024-04-01"},
	"author":{"reference":"Organization/la-leeds","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A12345"}}}`

// canonical returns body as Service stores it: parsed, stamped with an id
// and meta, and marshalled by the codec.
func canonical(tb testing.TB, body []byte) []byte {
	tb.Helper()
	codec, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	p, err := codec.Parse(body)
	if err != nil {
		tb.Fatal(err)
	}
	p.Stamp("bench-1", 1, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	b, err := codec.Marshal(p)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func benchmarkIndexer(b *testing.B, typ string, body []byte) {
	ix := fhir.NewIndexer(fhir.NewSearchRegistry())
	if _, err := ix.Index(typ, body); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ix.Index(typ, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIndexer_Flag indexes a canonical CP-IS Flag (about 800 bytes).
func BenchmarkIndexer_Flag(b *testing.B) {
	benchmarkIndexer(b, "Flag", canonical(b, []byte(benchFlag)))
}

// BenchmarkIndexer_Patient indexes the canonical 1.7 KB UK Core Patient of
// testdata/cpis/patient.json.
func BenchmarkIndexer_Patient(b *testing.B) {
	body, err := os.ReadFile("../testdata/cpis/patient.json")
	if err != nil {
		b.Fatal(err)
	}
	benchmarkIndexer(b, "Patient", canonical(b, body))
}

// BenchmarkIndexer_Parallel indexes the Patient from every core at once.
func BenchmarkIndexer_Parallel(b *testing.B) {
	body, err := os.ReadFile("../testdata/cpis/patient.json")
	if err != nil {
		b.Fatal(err)
	}
	body = canonical(b, body)
	ix := fhir.NewIndexer(fhir.NewSearchRegistry())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ix.Index("Patient", body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
