package profiles_test

import (
	"fmt"

	"github.com/cpis-fhir/cpis/profiles"
	"github.com/cpis-fhir/cpis/terminology"
)

func ExampleValidator_Validate() {
	v, err := profiles.New(terminology.New())
	if err != nil {
		panic(err)
	}
	flag := []byte(`{
	  "resourceType": "Flag",
	  "status": "active",
	  "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "818901000000100"}]}],
	  "code": {"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient",
	                       "code": "child-protection-information-system-flag"}]},
	  "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000017"}},
	  "author": {"reference": "Practitioner/sw-1"},
	  "period": {"start": "2026-01-15"}
	}`)
	for _, is := range v.Validate(flag, "https://fhir.cpis-fhir.org/StructureDefinition/CPIS-Flag") {
		fmt.Println(is.Severity, is.Code, is.Expression, is.Diagnostics)
	}
	// Output:
	// error structure [Flag.author] Flag.author must reference Organization, not Practitioner
	// error invariant [Flag] cpis-flag-1: An unborn child protection plan must have an end date
	// error value [Flag.subject.identifier.value] the NHS number fails the Modulus 11 check digit
}
