package profiles_test

import (
	"os"
	"testing"
)

// FuzzValidate feeds arbitrary bytes to Validate under every profile and
// to ValidateBase: they must never panic. Seeds are the fixtures in
// testdata and a few odd shapes.
func FuzzValidate(f *testing.F) {
	for _, name := range []string{"flag", "patient", "organization", "careplan", "careteam", "encounter", "communication", "auditevent", "practitionerrole"} {
		b, err := os.ReadFile("testdata/" + name + ".json")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"resourceType":"Flag","category":[null,{"coding":"x"}],"subject":{"reference":"/"},"period":[]}`))
	f.Add([]byte(`{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":9990000018,"extension":{}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Questionnaire","item":[{"item":[{"item":{}}]}],"contained":[{"resourceType":"Bundle","entry":[null,{"resource":7}]}]}}]}`))
	f.Add([]byte(`{"resourceType":"Observation","valueQuantity":{"comparator":[1]},"component":[{"valuePeriod":{"start":{}}}],"extension":[{"valueString":"","extension":"x"}]}`))
	v := newValidator(f)
	urls := v.Profiles()
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, u := range urls {
			v.Validate(body, u)
		}
		v.ValidateBase(body)
	})
}
