package fhir_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// The NHS numbers below are from the 999 range with their Modulus 11 check
// digit worked by hand: 999000001 weighs 9·10+9·9+9·8+1·2 = 245, 245 mod
// 11 = 3, 11-3 = 8, so 9990000018; 999000002 weighs 247, mod 11 = 5, so
// 9990000026.

// render shows each row of idx as a line "param: kind value" so that the
// expected rows can be written by hand. Dates are UTC instants with
// milliseconds ("min" and "max" for open ends), numbers have 10
// significant digits ("-max" and "max" for open ends of a Range).
func render(idx *fhir.Index) map[string][]string {
	out := map[string][]string{}
	add := func(param, line string) { out[param] = append(out[param], line) }
	for _, r := range idx.Strings {
		add(r.Param, fmt.Sprintf("string %q %q", r.Norm, r.Exact))
	}
	for _, r := range idx.Tokens {
		add(r.Param, "token "+r.System+"|"+r.Code)
	}
	for _, r := range idx.References {
		add(r.Param, renderRef(r.Type, r.ID, r.URL, r.Version))
	}
	for _, r := range idx.Dates {
		add(r.Param, "date "+renderDate(r.Low)+" "+renderDate(r.High))
	}
	for _, r := range idx.Numbers {
		add(r.Param, "number "+renderNumbers(r.Value, r.Low, r.High))
	}
	for _, r := range idx.Quantities {
		add(r.Param, "quantity "+renderNumbers(r.Value, r.Low, r.High)+" "+r.System+"|"+r.Code+" "+r.Unit)
	}
	for _, r := range idx.URIs {
		add(r.Param, "uri "+r.URI)
	}
	for _, r := range idx.Composites {
		parts := make([]string, len(r.Parts))
		for i, p := range r.Parts {
			switch p.Type {
			case fhir.SearchParamToken:
				parts[i] = "token " + p.System + "|" + p.Code
			case fhir.SearchParamQuantity:
				parts[i] = "quantity " + renderNumbers(p.Value, p.Low, p.High) + " " + p.System + "|" + p.Code
			case fhir.SearchParamDate:
				parts[i] = "date " + renderDate(p.DateLow) + " " + renderDate(p.DateHigh)
			case fhir.SearchParamString:
				parts[i] = fmt.Sprintf("string %q %q", p.Norm, p.Exact)
			case fhir.SearchParamReference:
				parts[i] = renderRef(p.RefType, p.RefID, p.URL, "")
			default:
				parts[i] = fmt.Sprintf("%s %+v", p.Type, p)
			}
		}
		add(r.Param, "composite "+strings.Join(parts, "; "))
	}
	return out
}

func renderRef(typ, id, url, version string) string {
	s := "ref"
	if typ != "" || id != "" {
		s += " " + typ + "/" + id
	}
	if url != "" {
		s += " url=" + url
	}
	if version != "" {
		s += " version=" + version
	}
	return s
}

func renderDate(ms int64) string {
	switch ms {
	case fhir.MinDate:
		return "min"
	case fhir.MaxDate:
		return "max"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

func renderNumbers(v, low, high float64) string {
	f := func(x float64) string {
		switch x {
		case math.MaxFloat64:
			return "max"
		case -math.MaxFloat64:
			return "-max"
		}
		return fmt.Sprintf("%.10g", x)
	}
	return f(v) + " [" + f(low) + "," + f(high) + "]"
}

// extractCase is a hand-written resource and, for some of its type's
// parameters (and derived "<code>:modifier" rows), every row expected; an
// empty list says the parameter has no rows.
type extractCase struct {
	name string
	typ  string
	body string
	want map[string][]string
}

var extractCases = []extractCase{
	{
		name: "Patient",
		typ:  "Patient",
		body: `{"resourceType":"Patient","id":"p1",
			"meta":{"versionId":"1","lastUpdated":"2024-05-01T10:00:00.000Z",
				"profile":["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"],
				"tag":[{"system":"https://fhir.cpis-fhir.org/tag","code":"test","display":"Test data"}]},
			"identifier":[
				{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"},
				{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}],"text":"Medical record number"},
				 "system":"https://trust.example/mrn","value":"MRN-42"}],
			"active":true,
			"name":[
				{"use":"official","family":"Zoë-Smith","given":["Alex","Jordan"],"prefix":["Miss"],"text":"Miss Alex  Zoë-Smith"},
				{"use":"usual","given":["Alex"]}],
			"telecom":[{"system":"phone","value":"01632 960001","use":"home"},{"system":"email","value":"alex@example.org"},{"use":"work"}],
			"gender":"female",
			"birthDate":"2015-04-01",
			"address":[{"line":["1 Example Street"],"city":"Leeds","district":"West Yorkshire","postalCode":"LS1 4AP","country":"GB"}],
			"generalPractitioner":[{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"Y12345"},"display":"Example Surgery"}],
			"managingOrganization":{"reference":"Organization/ods-RR8"},
			"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"en-GB","display":"English (United Kingdom)"}]}}]}`,
		want: map[string][]string{
			"_id":          {"token |p1"},
			"_lastUpdated": {"date 2024-05-01T10:00:00.000Z 2024-05-01T10:00:00.000Z"},
			"_profile":     {"uri https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"},
			"_tag":         {"token https://fhir.cpis-fhir.org/tag|test"},
			"_tag:text":    {`string "test data" "Test data"`},
			"identifier": {
				"token https://fhir.nhs.uk/Id/nhs-number|9990000018",
				"token https://trust.example/mrn|MRN-42",
			},
			"identifier:text":    {`string "medical record number" "Medical record number"`},
			"identifier:of-type": {"token http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-42"},
			"active":             {"token |true"},
			// Patient.deceased.exists() and Patient.deceased != false: false
			// and {} is false.
			"deceased": {"token |false"},
			// "Alex" of the second name is the same row as the first's.
			"name": {
				`string "zoe-smith" "Zoë-Smith"`,
				`string "alex" "Alex"`,
				`string "jordan" "Jordan"`,
				`string "miss" "Miss"`,
				`string "miss alex zoe-smith" "Miss Alex  Zoë-Smith"`,
			},
			"family":    {`string "zoe-smith" "Zoë-Smith"`},
			"given":     {`string "alex" "Alex"`, `string "jordan" "Jordan"`},
			"birthdate": {"date 2015-04-01T00:00:00.000Z 2015-04-01T23:59:59.999Z"},
			"gender":    {"token |female"},
			"address": {
				`string "1 example street" "1 Example Street"`,
				`string "leeds" "Leeds"`,
				`string "west yorkshire" "West Yorkshire"`,
				`string "ls1 4ap" "LS1 4AP"`,
				`string "gb" "GB"`,
			},
			"address-city":       {`string "leeds" "Leeds"`},
			"address-postalcode": {`string "ls1 4ap" "LS1 4AP"`},
			"address-state":      {},
			// The ContactPoint without a value has no row.
			"telecom": {"token phone|01632 960001", "token email|alex@example.org"},
			"phone":   {"token phone|01632 960001"},
			"email":   {"token email|alex@example.org"},
			// A Reference with only an identifier has no reference row.
			"general-practitioner":            {},
			"general-practitioner:identifier": {"token https://fhir.nhs.uk/Id/ods-organization-code|Y12345"},
			"organization":                    {"ref Organization/ods-RR8"},
			"language":                        {"token urn:ietf:bcp:47|en-GB"},
			"language:text":                   {`string "english (united kingdom)" "English (United Kingdom)"`},
			"link":                            {},
		},
	},
	{
		name: "Flag (CP-IS)",
		typ:  "Flag",
		body: `{"resourceType":"Flag","id":"f1","meta":{"versionId":"2","lastUpdated":"2024-05-01T10:00:00.000Z"},
			"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/flag-detail","valueReference":{"reference":"CarePlan/cp1"}}],
			"identifier":[{"system":"https://fhir.cpis-fhir.org/Id/flag","value":"F-0001"}],
			"status":"active",
			"category":[{"coding":[{"system":"http://snomed.info/sct","code":"342191000000101","display":"Subject to child protection plan"}]}],
			"code":{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient","code":"child-protection-information-system-flag"}],"text":"CP-IS flag"},
			"subject":{"reference":"Patient/p1","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}},
			"period":{"start":"2024-04-01"},
			"encounter":{"reference":"Encounter/e1/_history/2"},
			"author":{"reference":"https://directory.example.nhs.uk/fhir/Organization/la-leeds"}}`,
		want: map[string][]string{
			"identifier":         {"token https://fhir.cpis-fhir.org/Id/flag|F-0001"},
			"status":             {"token |active"},
			"category":           {"token http://snomed.info/sct|342191000000101"},
			"category:text":      {`string "subject to child protection plan" "Subject to child protection plan"`},
			"subject":            {"ref Patient/p1"},
			"subject:identifier": {"token https://fhir.nhs.uk/Id/nhs-number|9990000018"},
			"patient":            {"ref Patient/p1"},
			"patient:identifier": {"token https://fhir.nhs.uk/Id/nhs-number|9990000018"},
			// A period without an end is open to MaxDate.
			"date":      {"date 2024-04-01T00:00:00.000Z max"},
			"encounter": {"ref Encounter/e1"},
			// An absolute URL keeps the URL and has Type and ID from its
			// last two segments.
			"author": {"ref Organization/la-leeds url=https://directory.example.nhs.uk/fhir/Organization/la-leeds"},
			"detail": {"ref CarePlan/cp1"},
		},
	},
	{
		name: "Flag with subject by identifier only",
		typ:  "Flag",
		body: `{"resourceType":"Flag","id":"f2","status":"inactive",
			"category":[{"text":"Looked after child"}],
			"code":{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient","code":"child-protection-information-system-flag"}]},
			"subject":{"type":"Patient","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000026"}},
			"period":{"start":"2024-04-01T09:00:00+01:00","end":"2025-03-31"}}`,
		want: map[string][]string{
			"status":             {"token |inactive"},
			"category":           {},
			"category:text":      {`string "looked after child" "Looked after child"`},
			"subject":            {},
			"subject:identifier": {"token https://fhir.nhs.uk/Id/nhs-number|9990000026"},
			// resolve() is Patient holds by Reference.type.
			"patient":            {},
			"patient:identifier": {"token https://fhir.nhs.uk/Id/nhs-number|9990000026"},
			// 09:00 at +01:00 is 08:00 UTC; the end date runs to its last
			// millisecond.
			"date":   {"date 2024-04-01T08:00:00.000Z 2025-03-31T23:59:59.999Z"},
			"detail": {},
		},
	},
	{
		name: "CareTeam with subject by identifier only (national CP-IS API)",
		typ:  "CareTeam",
		body: `{"resourceType":"CareTeam","id":"ct2","status":"active",
			"subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}}}`,
		want: map[string][]string{
			"subject":            {},
			"subject:identifier": {"token https://fhir.nhs.uk/Id/nhs-number|9990000018"},
			// resolve() cannot tell the type, so the identifier is kept
			// for patient:identifier.
			"patient":            {},
			"patient:identifier": {"token https://fhir.nhs.uk/Id/nhs-number|9990000018"},
		},
	},
	{
		name: "Flag with a Group subject",
		typ:  "Flag",
		body: `{"resourceType":"Flag","id":"f3","status":"active","code":{"text":"Household"},
			"subject":{"reference":"Group/g1","identifier":{"system":"https://fhir.example.org/Id/household","value":"H-1"}}}`,
		want: map[string][]string{
			"subject":            {"ref Group/g1"},
			"subject:identifier": {"token https://fhir.example.org/Id/household|H-1"},
			// The reference names a Group, so it is no patient.
			"patient":            {},
			"patient:identifier": {},
		},
	},
	{
		name: "AuditEvent patient over a union",
		typ:  "AuditEvent",
		body: `{"resourceType":"AuditEvent","id":"ae1",
			"type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110110"},
			"recorded":"2024-05-01T10:15:00Z",
			"agent":[{"who":{"identifier":{"system":"https://fhir.nhs.uk/Id/sds-user-id","value":"555555555555"}},"requestor":true},
				{"who":{"reference":"Organization/la-leeds"},"requestor":false}],
			"source":{"observer":{"reference":"Device/cpis"}},
			"entity":[{"what":{"reference":"Patient/p1","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}}},
				{"what":{"type":"Patient","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000026"}}}]}`,
		want: map[string][]string{
			"patient": {"ref Patient/p1"},
			// The agent's identifier-only reference is of unknown type too.
			"patient:identifier": {
				"token https://fhir.nhs.uk/Id/sds-user-id|555555555555",
				"token https://fhir.nhs.uk/Id/nhs-number|9990000018",
				"token https://fhir.nhs.uk/Id/nhs-number|9990000026",
			},
			"agent":            {"ref Organization/la-leeds"},
			"agent:identifier": {"token https://fhir.nhs.uk/Id/sds-user-id|555555555555"},
			"date":             {"date 2024-05-01T10:15:00.000Z 2024-05-01T10:15:00.999Z"},
		},
	},
	{
		name: "Observation body weight",
		typ:  "Observation",
		body: `{"resourceType":"Observation","id":"o1","status":"final",
			"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}]},
			"subject":{"reference":"Patient/p1"},
			"effectiveDateTime":"2024-05-01T09:30:00+01:00",
			"valueQuantity":{"value":21.50,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`,
		want: map[string][]string{
			"code":      {"token http://loinc.org|29463-7"},
			"code:text": {`string "body weight" "Body weight"`},
			"date":      {"date 2024-05-01T08:30:00.000Z 2024-05-01T08:30:00.999Z"},
			// 21.50 has two decimals: ±0.005.
			"value-quantity":       {"quantity 21.5 [21.495,21.505] http://unitsofmeasure.org|kg kg"},
			"combo-value-quantity": {"quantity 21.5 [21.495,21.505] http://unitsofmeasure.org|kg kg"},
			"code-value-quantity": {
				"composite token http://loinc.org|29463-7; quantity 21.5 [21.495,21.505] http://unitsofmeasure.org|kg",
			},
			"combo-code-value-quantity": {
				"composite token http://loinc.org|29463-7; quantity 21.5 [21.495,21.505] http://unitsofmeasure.org|kg",
			},
			"code-value-concept":            {},
			"component-code-value-quantity": {},
			"patient":                       {"ref Patient/p1"},
		},
	},
	{
		name: "Observation blood pressure components",
		typ:  "Observation",
		body: `{"resourceType":"Observation","id":"o2","status":"final",
			"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
			"subject":{"reference":"Patient/p1"},
			"effectivePeriod":{"start":"2024-05-01T09:30:00+01:00","end":"2024-05-01T09:45:00+01:00"},
			"component":[
				{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"},{"system":"http://snomed.info/sct","code":"271649006"}]},
				 "valueQuantity":{"value":107,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
				{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},
				 "valueQuantity":{"value":60,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`,
		want: map[string][]string{
			"date": {"date 2024-05-01T08:30:00.000Z 2024-05-01T08:45:00.999Z"},
			"component-code": {
				"token http://loinc.org|8480-6",
				"token http://snomed.info/sct|271649006",
				"token http://loinc.org|8462-4",
			},
			"component-value-quantity": {
				"quantity 107 [106.5,107.5] http://unitsofmeasure.org|mm[Hg] mmHg",
				"quantity 60 [59.5,60.5] http://unitsofmeasure.org|mm[Hg] mmHg",
			},
			// Each component's codes with its own value only: 2×1 + 1×1.
			"component-code-value-quantity": {
				"composite token http://loinc.org|8480-6; quantity 107 [106.5,107.5] http://unitsofmeasure.org|mm[Hg]",
				"composite token http://snomed.info/sct|271649006; quantity 107 [106.5,107.5] http://unitsofmeasure.org|mm[Hg]",
				"composite token http://loinc.org|8462-4; quantity 60 [59.5,60.5] http://unitsofmeasure.org|mm[Hg]",
			},
			// The Observation itself has no value, so only its components.
			"combo-code-value-quantity": {
				"composite token http://loinc.org|8480-6; quantity 107 [106.5,107.5] http://unitsofmeasure.org|mm[Hg]",
				"composite token http://snomed.info/sct|271649006; quantity 107 [106.5,107.5] http://unitsofmeasure.org|mm[Hg]",
				"composite token http://loinc.org|8462-4; quantity 60 [59.5,60.5] http://unitsofmeasure.org|mm[Hg]",
			},
			"code-value-quantity": {},
			"value-quantity":      {},
		},
	},
	{
		name: "Encounter",
		typ:  "Encounter",
		body: `{"resourceType":"Encounter","id":"e1","status":"finished",
			"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER","display":"emergency"},
			"subject":{"reference":"Patient/p1"},
			"participant":[{"individual":{"reference":"Practitioner/dr1"}},{"individual":{"reference":"PractitionerRole/pr1"}}],
			"period":{"start":"2024-05-01T10:00:00Z","end":"2024-05-01T12:30:00Z"},
			"length":{"value":150,"unit":"min","system":"http://unitsofmeasure.org","code":"min"},
			"location":[{"location":{"reference":"Location/ed"},"period":{"end":"2024-05-01T11:00:00Z"}}],
			"serviceProvider":{"reference":"Organization/ods-RR8"}}`,
		want: map[string][]string{
			"status":           {"token |finished"},
			"class":            {"token http://terminology.hl7.org/CodeSystem/v3-ActCode|EMER"},
			"class:text":       {`string "emergency" "emergency"`},
			"date":             {"date 2024-05-01T10:00:00.000Z 2024-05-01T12:30:00.999Z"},
			"location-period":  {"date min 2024-05-01T11:00:00.999Z"},
			"length":           {"quantity 150 [149.5,150.5] http://unitsofmeasure.org|min min"},
			"participant":      {"ref Practitioner/dr1", "ref PractitionerRole/pr1"},
			"practitioner":     {"ref Practitioner/dr1"},
			"patient":          {"ref Patient/p1"},
			"subject":          {"ref Patient/p1"},
			"location":         {"ref Location/ed"},
			"service-provider": {"ref Organization/ods-RR8"},
		},
	},
	{
		name: "CareTeam",
		typ:  "CareTeam",
		body: `{"resourceType":"CareTeam","id":"ct1",
			"contained":[{"resourceType":"Practitioner","id":"sw2","name":[{"family":"Worker"}]}],
			"status":"active",
			"subject":{"reference":"Patient/p1","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}},
			"period":{"start":"2024-04-01"},
			"participant":[
				{"member":{"reference":"Practitioner/sw1"}},
				{"member":{"reference":"#sw2"}},
				{"member":{"reference":"Organization/la-leeds","display":"Leeds City Council"}}],
			"telecom":[{"system":"phone","value":"0113 000 0000","use":"work"}]}`,
		want: map[string][]string{
			"status": {"token |active"},
			// The local reference #sw2 is not indexed.
			"participant":        {"ref Practitioner/sw1", "ref Organization/la-leeds"},
			"patient":            {"ref Patient/p1"},
			"patient:identifier": {"token https://fhir.nhs.uk/Id/nhs-number|9990000018"},
			"date":               {"date 2024-04-01T00:00:00.000Z max"},
		},
	},
	{
		name: "Communication",
		typ:  "Communication",
		body: `{"resourceType":"Communication","id":"c1","status":"completed",
			"instantiatesCanonical":["https://fhir.cpis-fhir.org/PlanDefinition/cpis-notification|1.2"],
			"instantiatesUri":["https://fhir.cpis-fhir.org/protocol/notify"],
			"subject":{"reference":"Patient/p1"},
			"recipient":[
				{"reference":"Organization/la-leeds"},
				{"reference":"urn:uuid:0c3d6b2e-0f2a-4a8e-9d8c-8b1f6c2b9a11"},
				{"reference":"https://fhir.example.org/fhir/Organization/la-york/_history/3"}],
			"sender":{"reference":"https://cpis.example.nhs.uk/fhir/Device/cpis"},
			"sent":"2024-05-01T10:15:00Z",
			"received":"2024-05-01T10:15:02.5Z"}`,
		want: map[string][]string{
			"recipient": {
				"ref Organization/la-leeds",
				"ref url=urn:uuid:0c3d6b2e-0f2a-4a8e-9d8c-8b1f6c2b9a11",
				"ref Organization/la-york url=https://fhir.example.org/fhir/Organization/la-york/_history/3",
			},
			"sender":                 {"ref Device/cpis url=https://cpis.example.nhs.uk/fhir/Device/cpis"},
			"instantiates-canonical": {"ref PlanDefinition/cpis-notification url=https://fhir.cpis-fhir.org/PlanDefinition/cpis-notification version=1.2"},
			"instantiates-uri":       {"uri https://fhir.cpis-fhir.org/protocol/notify"},
			"sent":                   {"date 2024-05-01T10:15:00.000Z 2024-05-01T10:15:00.999Z"},
			// One decimal of a second covers 100 ms.
			"received": {"date 2024-05-01T10:15:02.500Z 2024-05-01T10:15:02.599Z"},
			"patient":  {"ref Patient/p1"},
		},
	},
	{
		name: "CarePlan Timing and Period",
		typ:  "CarePlan",
		body: `{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan",
			"instantiatesCanonical":["https://fhir.nhs.uk/England/PlanDefinition/cpp"],
			"subject":{"reference":"Patient/p1"},
			"period":{"start":"2024-04-01"},
			"activity":[
				{"detail":{"status":"scheduled","scheduledTiming":{"event":["2024-05-10","2024-05-17T14:00:00Z"],
					"repeat":{"boundsPeriod":{"start":"2024-05-01","end":"2024-06-30"}}}}},
				{"detail":{"status":"scheduled","scheduledPeriod":{"start":"2024-07-01"}}},
				{"detail":{"status":"scheduled","scheduledString":"weekly"}}]}`,
		want: map[string][]string{
			"activity-date": {
				"date 2024-05-10T00:00:00.000Z 2024-05-10T23:59:59.999Z",
				"date 2024-05-17T14:00:00.000Z 2024-05-17T14:00:00.999Z",
				"date 2024-05-01T00:00:00.000Z 2024-06-30T23:59:59.999Z",
				"date 2024-07-01T00:00:00.000Z max",
			},
			"instantiates-canonical": {"ref PlanDefinition/cpp url=https://fhir.nhs.uk/England/PlanDefinition/cpp"},
			"date":                   {"date 2024-04-01T00:00:00.000Z max"},
			"intent":                 {"token |plan"},
		},
	},
	{
		name: "ChargeItem Money, Quantity and decimal",
		typ:  "ChargeItem",
		body: `{"resourceType":"ChargeItem","id":"ci1","status":"billable","code":{"text":"Consultation"},
			"subject":{"reference":"Patient/p1"},
			"quantity":{"value":2},
			"factorOverride":0.8,
			"priceOverride":{"value":40.00,"currency":"GBP"}}`,
		want: map[string][]string{
			"quantity":        {"quantity 2 [1.5,2.5] | "},
			"factor-override": {"number 0.8 [0.75,0.85]"},
			"price-override":  {"quantity 40 [39.995,40.005] urn:iso:std:iso:4217|GBP "},
			"code":            {},
			"code:text":       {`string "consultation" "Consultation"`},
		},
	},
	{
		name: "Condition Range and Age",
		typ:  "Condition",
		body: `{"resourceType":"Condition","id":"cd1","subject":{"reference":"Patient/p1"},
			"onsetRange":{"low":{"value":5,"unit":"years","system":"http://unitsofmeasure.org","code":"a"},
				"high":{"value":10,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}},
			"abatementAge":{"value":12,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`,
		want: map[string][]string{
			// A Range covers exactly low to high.
			"onset-age":     {"quantity 5 [5,10] http://unitsofmeasure.org|a years"},
			"abatement-age": {"quantity 12 [11.5,12.5] http://unitsofmeasure.org|a years"},
			"onset-date":    {},
		},
	},
	{
		name: "RiskAssessment decimal and open Range",
		typ:  "RiskAssessment",
		body: `{"resourceType":"RiskAssessment","id":"ra1","status":"final","subject":{"reference":"Patient/p1"},
			"prediction":[{"probabilityDecimal":0.25},{"probabilityRange":{"high":{"value":0.3}}}]}`,
		want: map[string][]string{
			"probability": {"number 0.25 [0.245,0.255]", "number 0.3 [-max,0.3]"},
		},
	},
	{
		name: "MolecularSequence integer",
		typ:  "MolecularSequence",
		body: `{"resourceType":"MolecularSequence","id":"ms1","type":"dna","coordinateSystem":0,
			"variant":[{"start":100,"end":101}]}`,
		want: map[string][]string{
			"variant-start": {"number 100 [99.5,100.5]"},
			"variant-end":   {"number 101 [100.5,101.5]"},
		},
	},
	{
		name: "Library useContext Range composite",
		typ:  "Library",
		body: `{"resourceType":"Library","id":"lib1","status":"active","url":"https://fhir.cpis-fhir.org/Library/rules",
			"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/library-type","code":"logic-library"}]},
			"useContext":[{"code":{"system":"http://terminology.hl7.org/CodeSystem/usage-context-type","code":"age"},
				"valueRange":{"low":{"value":0,"unit":"a","system":"http://unitsofmeasure.org","code":"a"},
					"high":{"value":18,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}}}]}`,
		want: map[string][]string{
			"url":              {"uri https://fhir.cpis-fhir.org/Library/rules"},
			"context-type":     {"token http://terminology.hl7.org/CodeSystem/usage-context-type|age"},
			"context-quantity": {"quantity 0 [0,18] http://unitsofmeasure.org|a a"},
			"context-type-quantity": {
				"composite token http://terminology.hl7.org/CodeSystem/usage-context-type|age; quantity 0 [0,18] http://unitsofmeasure.org|a",
			},
			"context-type-value": {},
		},
	},
}

func TestIndexer(t *testing.T) {
	ix := fhir.NewIndexer(fhir.NewSearchRegistry())
	for _, tt := range extractCases {
		t.Run(tt.name, func(t *testing.T) {
			idx, err := ix.Index(tt.typ, []byte(tt.body))
			if err != nil {
				t.Fatalf("Index(%s): %v", tt.typ, err)
			}
			got := render(idx)
			for param, want := range tt.want {
				code, _, _ := strings.Cut(param, ":")
				if _, ok := fhir.LookupSearchParam(tt.typ, code); !ok {
					t.Errorf("%s has no search parameter %s", tt.typ, code)
				}
				g := slices.Clone(got[param])
				slices.Sort(g)
				w := slices.Clone(want)
				slices.Sort(w)
				if !slices.Equal(g, w) {
					t.Errorf("Index(%s) %s rows:\n got  %q\n want %q", tt.name, param, g, w)
				}
			}
			if ix.Skipped() != 0 {
				t.Errorf("Index(%s): Skipped() = %d, want 0", tt.name, ix.Skipped())
			}
		})
	}
}

// TestIndexer_NoDuplicates checks that rows are deduplicated per parameter
// while the same value under two parameters stays.
func TestIndexer_NoDuplicates(t *testing.T) {
	ix := fhir.NewIndexer(fhir.NewSearchRegistry())
	body := `{"resourceType":"Patient","id":"p1",
		"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"},{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}],
		"name":[{"family":"Smith","given":["Sam","Sam"]},{"family":"Smith"}]}`
	idx, err := ix.Index("Patient", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got := render(idx)
	for param, n := range map[string]int{"identifier": 1, "family": 1, "given": 1, "name": 2} {
		if len(got[param]) != n {
			t.Errorf("Index(Patient) %s: %d rows %q, want %d", param, len(got[param]), got[param], n)
		}
	}
}

// TestIndexer_RunTimeParams checks that parameters added to the registry
// after the first Index call are indexed, and that a parameter whose
// expression fails or does not compile is left out, and counted, without
// failing the resource.
func TestIndexer_RunTimeParams(t *testing.T) {
	reg := fhir.NewSearchRegistry()
	ix := fhir.NewIndexer(reg)
	body := []byte(`{"resourceType":"Patient","id":"p1","gender":"female",
		"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000026"}]}`)
	if _, err := ix.Index("Patient", body); err != nil {
		t.Fatal(err)
	}
	reg.Add(&fhir.SearchParam{Name: "nhs-number", Type: fhir.SearchParamToken,
		Expression: "Patient.identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value"}, "Patient")
	reg.Add(&fhir.SearchParam{Name: "in-valueset", Type: fhir.SearchParamToken,
		Expression: "Patient.gender.where(memberOf('http://hl7.org/fhir/ValueSet/administrative-gender'))"}, "Patient")
	reg.Add(&fhir.SearchParam{Name: "broken", Type: fhir.SearchParamToken, Expression: "Patient.gender.where("}, "Patient")
	idx, err := ix.Index("Patient", body)
	if err != nil {
		t.Fatal(err)
	}
	got := render(idx)
	if want := []string{"token |9990000026"}; !slices.Equal(got["nhs-number"], want) {
		t.Errorf("Index(Patient) nhs-number: %q, want %q", got["nhs-number"], want)
	}
	if want := []string{"token |female"}; !slices.Equal(got["gender"], want) {
		t.Errorf("Index(Patient) gender: %q, want %q", got["gender"], want)
	}
	for _, p := range []string{"in-valueset", "broken"} {
		if len(got[p]) != 0 {
			t.Errorf("Index(Patient) %s: %q, want no rows", p, got[p])
		}
	}
	if n := ix.Skipped(); n != 2 {
		t.Errorf("Skipped() = %d, want 2 (memberOf and the syntax error)", n)
	}

	// A run-time parameter replaces the generated one of the same name.
	reg.Add(&fhir.SearchParam{Name: "gender", Type: fhir.SearchParamString, Expression: "Patient.gender"}, "Patient")
	idx, err = ix.Index("Patient", body)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := render(idx)["gender"], []string{`string "female" "female"`}; !slices.Equal(got, want) {
		t.Errorf("Index(Patient) replaced gender: %q, want %q", got, want)
	}
}

func TestIndexer_Errors(t *testing.T) {
	ix := fhir.NewIndexer(fhir.NewSearchRegistry())
	tests := []struct {
		name, typ, body string
	}{
		{"not JSON", "Patient", `{"resourceType":"Patient",`},
		{"not an object", "Patient", `["Patient"]`},
		{"no resourceType", "Patient", `{"id":"p1"}`},
		{"other type", "Flag", `{"resourceType":"Patient","id":"p1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx, err := ix.Index(tt.typ, []byte(tt.body))
			if err == nil {
				t.Fatalf("Index(%s, %s) = %+v, want an error", tt.typ, tt.body, idx)
			}
			// An index failure is internal: it carries no issue code.
			if code := fhir.ErrorCode(err); code != fhir.IssueException {
				t.Errorf("Index(%s, %s): error code %s, want %s", tt.typ, tt.body, code, fhir.IssueException)
			}
		})
	}
}

// TestIndexer_R4Examples indexes every official example in testdata and
// checks a few facts worked out by reading the examples.
func TestIndexer_R4Examples(t *testing.T) {
	files, err := filepath.Glob("../testdata/r4-examples/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in ../testdata/r4-examples: %v", err)
	}
	ix := fhir.NewIndexer(fhir.NewSearchRegistry())
	byFile := map[string]map[string][]string{}
	var rows int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		typ, _, _ := strings.Cut(filepath.Base(f), "-")
		idx, err := ix.Index(typ, b)
		if err != nil {
			t.Errorf("Index(%s): %v", filepath.Base(f), err)
			continue
		}
		rows += len(idx.Strings) + len(idx.Tokens) + len(idx.References) + len(idx.Dates) +
			len(idx.Numbers) + len(idx.Quantities) + len(idx.URIs) + len(idx.Composites)
		byFile[filepath.Base(f)] = render(idx)
	}
	t.Logf("%d examples, %d rows", len(files), rows)
	if n := ix.Skipped(); n != 0 {
		t.Errorf("Skipped() = %d over the examples, want 0", n)
	}
	facts := []struct {
		file, param, row string
	}{
		{"Patient-example.json", "family", `string "chalmers" "Chalmers"`},
		{"Patient-example.json", "family", `string "windsor" "Windsor"`},
		{"Patient-example.json", "name", `string "chalmers" "Chalmers"`},
		{"Patient-example.json", "given", `string "jim" "Jim"`},
		{"Patient-example.json", "identifier", "token urn:oid:1.2.36.146.595.217.0.1|12345"},
		{"Patient-example.json", "identifier:of-type", "token http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345"},
		{"Patient-example.json", "birthdate", "date 1974-12-25T00:00:00.000Z 1974-12-25T23:59:59.999Z"},
		{"Patient-example.json", "gender", "token |male"},
		{"Patient-example.json", "deceased", "token |false"},
		{"Patient-example.json", "phone", "token phone|(03) 3410 5613"},
		{"Patient-example.json", "address-city", `string "pleasantville" "PleasantVille"`},
		{"Patient-example.json", "organization", "ref Organization/1"},
		{"Flag-example.json", "patient", "ref Patient/example"},
		{"Flag-example.json", "author", "ref Practitioner/example"},
		{"Flag-example.json", "date", "date 2015-01-17T00:00:00.000Z 2016-12-01T23:59:59.999Z"},
		{"Flag-example.json", "identifier", "token |12345"},
		{"Observation-example.json", "value-quantity", "quantity 185 [184.5,185.5] http://unitsofmeasure.org|[lb_av] lbs"},
		{"Observation-example.json", "code-value-quantity", "composite token http://snomed.info/sct|27113001; quantity 185 [184.5,185.5] http://unitsofmeasure.org|[lb_av]"},
		{"Observation-example.json", "code", "token http://loinc.org|3141-9"},
		{"Observation-example.json", "date", "date 2016-03-28T00:00:00.000Z 2016-03-28T23:59:59.999Z"},
	}
	for _, f := range facts {
		if got := byFile[f.file][f.param]; !slices.Contains(got, f.row) {
			t.Errorf("Index(%s) %s: %q, want it to hold %q", f.file, f.param, got, f.row)
		}
	}
	// Observation-example has four codes and one value.
	if got := byFile["Observation-example.json"]["code-value-quantity"]; len(got) != 4 {
		t.Errorf("Index(Observation-example.json) code-value-quantity: %d rows %q, want 4", len(got), got)
	}
}

// TestService_Index checks that Service sets the index of what it writes
// from the stored JSON, with the id and meta it assigned.
func TestService_Index(t *testing.T) {
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "cpis.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	svc := &fhir.Service{Store: store, Codec: codec, Indexer: fhir.NewIndexer(fhir.NewSearchRegistry())}
	p, err := codec.Parse([]byte(`{"resourceType":"Patient","id":"child-1","gender":"female",
		"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000034"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := svc.Update(context.Background(), "Patient", "child-1", p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Index == nil {
		t.Fatal("Update(Patient/child-1): Index is nil")
	}
	got := render(r.Index)
	want := map[string][]string{
		"_id":          {"token |child-1"},
		"identifier":   {"token https://fhir.nhs.uk/Id/nhs-number|9990000034"},
		"gender":       {"token |female"},
		"_lastUpdated": {"date " + renderDate(r.LastUpdated.UnixMilli()) + " " + renderDate(r.LastUpdated.UnixMilli())},
	}
	for param, w := range want {
		if !slices.Equal(got[param], w) {
			t.Errorf("Update(Patient/child-1) %s rows: %q, want %q", param, got[param], w)
		}
	}

	// Without an Indexer nothing is indexed.
	svc.Indexer = nil
	r, err = svc.Create(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Index != nil {
		t.Errorf("Create(Patient) without Indexer: Index = %+v, want nil", r.Index)
	}
}

// TestIndexer_Concurrent indexes from several goroutines while parameters
// are added, for the race detector; every goroutine must get the same rows.
func TestIndexer_Concurrent(t *testing.T) {
	reg := fhir.NewSearchRegistry()
	ix := fhir.NewIndexer(reg)
	body := []byte(extractCases[0].body)
	want, err := ix.Index("Patient", body)
	if err != nil {
		t.Fatal(err)
	}
	wantFamily := render(want)["family"]
	done := make(chan error)
	for g := range 4 {
		go func() {
			for i := range 50 {
				if g == 0 && i%10 == 0 {
					reg.Add(&fhir.SearchParam{Name: fmt.Sprintf("extra-%d", i), Type: fhir.SearchParamToken, Expression: "Patient.gender"}, "Patient")
				}
				idx, err := ix.Index("Patient", body)
				if err != nil {
					done <- err
					return
				}
				if got := render(idx)["family"]; !slices.Equal(got, wantFamily) {
					done <- fmt.Errorf("family rows %q, want %q", got, wantFamily)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
