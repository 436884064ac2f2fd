package fhir_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/London for the daylight-saving cases, whatever the machine has

	"github.com/cpis-fhir/cpis/fhir"
)

const (
	nhsSystem = "https://fhir.nhs.uk/Id/nhs-number"
	// NHS numbers from the 999 range with a valid Modulus 11 check digit
	// (TestNHSNumbersValid works them out again).
	nhs1 = "9990000018"
	nhs2 = "9990000026"

	testBase = "http://localhost:8080/fhir"
)

// TestNHSNumbersValid checks the test data's NHS numbers: weights 10..2 on
// the first nine digits, 11 minus the sum mod 11 is the check digit (11
// gives 0, 10 is never valid). 999000001: 9*10+9*9+9*8+1*2 = 245,
// 245 mod 11 = 3, 11-3 = 8. 999000002: 247 mod 11 = 5, 11-5 = 6.
func TestNHSNumbersValid(t *testing.T) {
	for _, n := range []string{nhs1, nhs2} {
		sum := 0
		for i := 0; i < 9; i++ {
			sum += int(n[i]-'0') * (10 - i)
		}
		check := 11 - sum%11
		if check == 11 {
			check = 0
		}
		if check == 10 || int(n[9]-'0') != check || !strings.HasPrefix(n, "999") {
			t.Errorf("test NHS number %s is not a valid 999-range number", n)
		}
	}
}

// Flag has no status parameter in R4; CP-IS ships one. The tests add their
// own to a registry, as a run-time SearchParameter would be, so that they
// do not depend on the shipped definition.
var flagStatus = &fhir.SearchParam{
	Name: "status", URL: "https://example.org/cpis-test/SearchParameter/Flag-status",
	Type: fhir.SearchParamToken, Expression: "Flag.status", XPathUsage: "normal",
	MultipleOr: true, MultipleAnd: true,
}

func testRegistry() *fhir.SearchRegistry {
	reg := fhir.NewSearchRegistry()
	reg.Add(flagStatus, "Flag")
	reg.Activate(flagStatus)
	return reg
}

// param returns the generated table's parameter.
func param(t testing.TB, typ, name string) *fhir.SearchParam {
	t.Helper()
	p, ok := fhir.LookupSearchParam(typ, name)
	if !ok {
		t.Fatalf("LookupSearchParam(%q, %q): not found", typ, name)
	}
	return p
}

func search(typ string, filters ...fhir.Filter) *fhir.Search {
	return &fhir.Search{Type: typ, Count: 20, Filters: filters}
}

func vals(vs ...fhir.Value) []fhir.Value { return vs }

// dump shows a Search in a failure message, parameters by content.
func dump(s *fhir.Search) string {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func parse(t *testing.T, typ, query string, opts fhir.SearchOptions) (*fhir.Search, error) {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("ParseQuery(%q): %v", query, err)
	}
	if opts.Registry == nil {
		opts.Registry = testRegistry()
	}
	if opts.BaseURL == "" {
		opts.BaseURL = testBase
	}
	return fhir.ParseSearch(typ, q, opts)
}

// Unix milliseconds worked out by hand and checked with date(1):
// 2026-01-01T00:00Z is 20,454 days (56 years, 14 of them leap) after the
// epoch, 1,767,225,600 s.
const (
	ms20260101  = 1767225600000 // 2026-01-01T00:00:00Z
	ms20260102  = 1767312000000 // + 1 day
	ms20260301  = 1772323200000 // + 59 days
	ms20260329  = 1774742400000 // + 87 days; UK clocks go forward at 01:00 GMT
	ms20260401  = 1775001600000 // + 90 days
	ms20261101  = 1793491200000 // + 304 days
	ms20270101  = 1798761600000 // + 365 days
	hour        = 3600000
	nhsIdentVal = nhsSystem + "|" + nhs1
)

func TestParseSearch(t *testing.T) {
	nhsToken := fhir.Value{System: nhsSystem, HasSystem: true, Code: nhs1}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}

	// organization.partof.partof.partof.name on Patient: four hops, the
	// most a chain may take.
	deep := fhir.Filter{Param: param(t, "Organization", "name"), Values: vals(fhir.Value{Norm: "leeds", Exact: "Leeds"})}
	for range 3 {
		deep = fhir.Filter{Param: param(t, "Organization", "partof"), Chain: []fhir.ChainTarget{{Type: "Organization", Filter: deep}}}
	}
	deep = fhir.Filter{Param: param(t, "Patient", "organization"), Chain: []fhir.ChainTarget{{Type: "Organization", Filter: deep}}}

	for _, tc := range []struct {
		name  string
		typ   string
		query string
		opts  fhir.SearchOptions
		want  *fhir.Search
	}{
		// The CP-IS questions.
		{"flag by subject identifier and status", "Flag", "subject:identifier=" + nhsIdentVal + "&status=active", fhir.SearchOptions{},
			search("Flag",
				fhir.Filter{Param: flagStatus, Values: vals(fhir.Value{Code: "active"})},
				fhir.Filter{Param: param(t, "Flag", "subject"), Modifier: "identifier", Values: vals(nhsToken)})},
		{"flag by chained patient identifier", "Flag", "patient.identifier=" + nhsIdentVal, fhir.SearchOptions{},
			// Flag's patient may refer to Group or Patient, and both have identifier.
			search("Flag", fhir.Filter{Param: param(t, "Flag", "patient"), Chain: []fhir.ChainTarget{
				{Type: "Group", Filter: fhir.Filter{Param: param(t, "Group", "identifier"), Values: vals(nhsToken)}},
				{Type: "Patient", Filter: fhir.Filter{Param: param(t, "Patient", "identifier"), Values: vals(nhsToken)}},
			}})},
		{"flag by chained patient identifier, typed", "Flag", "patient:Patient.identifier=" + nhsIdentVal, fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "patient"), Modifier: "Patient", Chain: []fhir.ChainTarget{
				{Type: "Patient", Filter: fhir.Filter{Param: param(t, "Patient", "identifier"), Values: vals(nhsToken)}},
			}})},
		{"care team by patient identifier", "CareTeam", "patient:identifier=" + nhsIdentVal, fhir.SearchOptions{},
			search("CareTeam", fhir.Filter{Param: param(t, "CareTeam", "patient"), Modifier: "identifier", Values: vals(nhsToken)})},
		{"encounter by subject and date", "Encounter", "subject=Patient/1&date=ge2026-01-01", fhir.SearchOptions{},
			search("Encounter",
				fhir.Filter{Param: param(t, "Encounter", "date"), Values: vals(fhir.Value{Prefix: fhir.PrefixGe, DateLow: ms20260101, DateHigh: ms20260102 - 1})},
				fhir.Filter{Param: param(t, "Encounter", "subject"), Values: vals(fhir.Value{RefType: "Patient", RefID: "1"})})},
		{"communication by recipient and sent", "Communication", "recipient=Organization/la-x&sent=gt2026-11-01T10:00:00Z", fhir.SearchOptions{},
			search("Communication",
				fhir.Filter{Param: param(t, "Communication", "recipient"), Values: vals(fhir.Value{RefType: "Organization", RefID: "la-x"})},
				fhir.Filter{Param: param(t, "Communication", "sent"), Values: vals(fhir.Value{Prefix: fhir.PrefixGt, DateLow: ms20261101 + 10*hour, DateHigh: ms20261101 + 10*hour + 999})})},
		{"patients with an active flag", "Patient", "_has:Flag:patient:status=active", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Has: &fhir.HasFilter{Type: "Flag", Ref: param(t, "Flag", "patient"),
				Filter: fhir.Filter{Param: flagStatus, Values: vals(fhir.Value{Code: "active"})}}})},
		{"flag status, several, escaped comma", "Flag", `status=active,inactive\,x`, fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: flagStatus, Values: vals(fhir.Value{Code: "active"}, fhir.Value{Code: "inactive,x"})})},

		// string
		{"string default normalised", "Patient", "name=Zo%C3%AB", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "name"), Values: vals(fhir.Value{Norm: "zoe", Exact: "Zoë"})})},
		{"string exact", "Patient", "name:exact=Zo%C3%AB%20Smith", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "name"), Modifier: "exact", Values: vals(fhir.Value{Norm: "zoe smith", Exact: "Zoë Smith"})})},
		{"string contains", "Patient", "family:contains=MIT", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "family"), Modifier: "contains", Values: vals(fhir.Value{Norm: "mit", Exact: "MIT"})})},
		{"string escaped comma and OR", "Patient", `name=Smith\,John,Jones`, fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "name"), Values: vals(
				fhir.Value{Norm: "smith,john", Exact: "Smith,John"}, fhir.Value{Norm: "jones", Exact: "Jones"})})},
		{"string escaped backslash before comma", "Patient", `name=a\\,b`, fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "name"), Values: vals(
				fhir.Value{Norm: `a\`, Exact: `a\`}, fhir.Value{Norm: "b", Exact: "b"})})},
		{"string missing", "Patient", "name:missing=true", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "name"), Modifier: "missing", Values: vals(fhir.Value{Missing: true})})},
		{"repeated key is AND, in order", "Patient", "given=Ann&given=Bea", fhir.SearchOptions{},
			search("Patient",
				fhir.Filter{Param: param(t, "Patient", "given"), Values: vals(fhir.Value{Norm: "ann", Exact: "Ann"})},
				fhir.Filter{Param: param(t, "Patient", "given"), Values: vals(fhir.Value{Norm: "bea", Exact: "Bea"})})},

		// token
		{"token code", "Patient", "gender=female", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "gender"), Values: vals(fhir.Value{Code: "female"})})},
		{"token no system", "Patient", "identifier=%7Cabc", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "identifier"), Values: vals(fhir.Value{HasSystem: true, Code: "abc"})})},
		{"token system only", "Patient", "identifier=" + nhsSystem + "|", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "identifier"), Values: vals(fhir.Value{System: nhsSystem, HasSystem: true})})},
		{"token escaped pipe", "Patient", `identifier=urn:sys|a\|b`, fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "identifier"), Values: vals(fhir.Value{System: "urn:sys", HasSystem: true, Code: "a|b"})})},
		{"token OR of NHS numbers", "Patient", "identifier=" + nhsIdentVal + "," + nhsSystem + "|" + nhs2, fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "identifier"), Values: vals(nhsToken, fhir.Value{System: nhsSystem, HasSystem: true, Code: nhs2})})},
		{"token not", "Patient", "gender:not=male", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "gender"), Modifier: "not", Values: vals(fhir.Value{Code: "male"})})},
		{"token text", "Observation", "code:text=Blood%20%20Pressure|x", fhir.SearchOptions{},
			search("Observation", fhir.Filter{Param: param(t, "Observation", "code"), Modifier: "text", Values: vals(fhir.Value{Norm: "blood pressure|x", Exact: "Blood  Pressure|x"})})},
		{"token of-type", "Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "identifier"), Modifier: "of-type", Values: vals(
				fhir.Value{System: "http://terminology.hl7.org/CodeSystem/v2-0203", HasSystem: true, Code: "MR|12345"})})},
		{"token of-type on masterIdentifier union", "DocumentReference", "identifier:of-type=s|MR|1", fhir.SearchOptions{},
			search("DocumentReference", fhir.Filter{Param: param(t, "DocumentReference", "identifier"), Modifier: "of-type", Values: vals(
				fhir.Value{System: "s", HasSystem: true, Code: "MR|1"})})},
		{"token missing", "Patient", "identifier:missing=false", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "identifier"), Modifier: "missing", Values: vals(fhir.Value{})})},
		{"_id", "Patient", "_id=p1,p-2.x", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "_id"), Values: vals(fhir.Value{Code: "p1"}, fhir.Value{Code: "p-2.x"})})},
		{"_id not", "Patient", "_id:not=p1", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Param: param(t, "Patient", "_id"), Modifier: "not", Values: vals(fhir.Value{Code: "p1"})})},
		{"_tag and _security", "Flag", "_tag=http://example.org/tags|cpis&_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R", fhir.SearchOptions{},
			search("Flag",
				fhir.Filter{Param: param(t, "Flag", "_security"), Values: vals(fhir.Value{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", HasSystem: true, Code: "R"})},
				fhir.Filter{Param: param(t, "Flag", "_tag"), Values: vals(fhir.Value{System: "http://example.org/tags", HasSystem: true, Code: "cpis"})})},

		// reference
		{"reference bare id", "Flag", "subject=123", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Values: vals(fhir.Value{RefID: "123"})})},
		{"reference type modifier", "Flag", "subject:Patient=123", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Modifier: "Patient", Values: vals(fhir.Value{RefType: "Patient", RefID: "123"})})},
		{"reference OR", "Flag", "subject=Patient/1,Group/g2", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Values: vals(fhir.Value{RefType: "Patient", RefID: "1"}, fhir.Value{RefType: "Group", RefID: "g2"})})},
		{"reference history version dropped", "Flag", "subject=Patient/1/_history/3", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Values: vals(fhir.Value{RefType: "Patient", RefID: "1"})})},
		{"reference absolute under base", "Flag", "subject=" + testBase + "/Patient/p1", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Values: vals(fhir.Value{RefType: "Patient", RefID: "p1"})})},
		{"reference absolute under base with trailing slash", "Flag", "subject=" + testBase + "/Patient/p1/_history/2", fhir.SearchOptions{BaseURL: testBase + "/"},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Values: vals(fhir.Value{RefType: "Patient", RefID: "p1"})})},
		{"reference absolute elsewhere", "Flag", "subject=https://other.example/fhir/Patient/p1", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Values: vals(fhir.Value{URL: "https://other.example/fhir/Patient/p1"})})},
		{"reference urn", "Flag", "subject=urn:uuid:0f5c3c66-0c0b-4b7e-9a52-3f0c8c1b9d11", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Values: vals(fhir.Value{URL: "urn:uuid:0f5c3c66-0c0b-4b7e-9a52-3f0c8c1b9d11"})})},
		{"reference canonical with version", "CarePlan", "instantiates-canonical=http://example.org/PlanDefinition/cp|1.0", fhir.SearchOptions{},
			search("CarePlan", fhir.Filter{Param: param(t, "CarePlan", "instantiates-canonical"), Values: vals(fhir.Value{URL: "http://example.org/PlanDefinition/cp", Version: "1.0"})})},
		{"reference missing", "Flag", "subject:missing=false", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Modifier: "missing", Values: vals(fhir.Value{Missing: false})})},
		{"reference identifier without system", "Flag", "subject:identifier=" + nhs1, fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Modifier: "identifier", Values: vals(fhir.Value{Code: nhs1})})},

		// chains
		{"chain to every target with the parameter", "Flag", "subject.name=Ann", fhir.SearchOptions{},
			// Of Flag.subject's targets, Group, Medication and Procedure have no name.
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Chain: []fhir.ChainTarget{
				{Type: "Location", Filter: fhir.Filter{Param: param(t, "Location", "name"), Values: vals(fhir.Value{Norm: "ann", Exact: "Ann"})}},
				{Type: "Organization", Filter: fhir.Filter{Param: param(t, "Organization", "name"), Values: vals(fhir.Value{Norm: "ann", Exact: "Ann"})}},
				{Type: "Patient", Filter: fhir.Filter{Param: param(t, "Patient", "name"), Values: vals(fhir.Value{Norm: "ann", Exact: "Ann"})}},
				{Type: "PlanDefinition", Filter: fhir.Filter{Param: param(t, "PlanDefinition", "name"), Values: vals(fhir.Value{Norm: "ann", Exact: "Ann"})}},
				{Type: "Practitioner", Filter: fhir.Filter{Param: param(t, "Practitioner", "name"), Values: vals(fhir.Value{Norm: "ann", Exact: "Ann"})}},
			}})},
		{"chain with type and final modifier", "Flag", "subject:Patient.name:exact=Ann", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "subject"), Modifier: "Patient", Chain: []fhir.ChainTarget{
				{Type: "Patient", Filter: fhir.Filter{Param: param(t, "Patient", "name"), Modifier: "exact", Values: vals(fhir.Value{Norm: "ann", Exact: "Ann"})}},
			}})},
		{"chain two deep", "Flag", "patient.organization.name=Leeds", fhir.SearchOptions{},
			// Group has no organization parameter.
			search("Flag", fhir.Filter{Param: param(t, "Flag", "patient"), Chain: []fhir.ChainTarget{
				{Type: "Patient", Filter: fhir.Filter{Param: param(t, "Patient", "organization"), Chain: []fhir.ChainTarget{
					{Type: "Organization", Filter: fhir.Filter{Param: param(t, "Organization", "name"), Values: vals(fhir.Value{Norm: "leeds", Exact: "Leeds"})}},
				}}},
			}})},
		{"chain four deep", "Patient", "organization.partof.partof.partof.name=Leeds", fhir.SearchOptions{},
			search("Patient", deep)},
		{"chain to a reference value", "Flag", "patient:Patient.organization=Organization/la-x", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "patient"), Modifier: "Patient", Chain: []fhir.ChainTarget{
				{Type: "Patient", Filter: fhir.Filter{Param: param(t, "Patient", "organization"), Values: vals(fhir.Value{RefType: "Organization", RefID: "la-x"})}},
			}})},
		{"nested _has", "Patient", "_has:Flag:patient:_has:Provenance:target:agent=Practitioner/pr1", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Has: &fhir.HasFilter{Type: "Flag", Ref: param(t, "Flag", "patient"),
				Filter: fhir.Filter{Has: &fhir.HasFilter{Type: "Provenance", Ref: param(t, "Provenance", "target"),
					Filter: fhir.Filter{Param: param(t, "Provenance", "agent"), Values: vals(fhir.Value{RefType: "Practitioner", RefID: "pr1"})}}}}})},
		{"_has with chained inner parameter", "Patient", "_has:Flag:patient:author:Organization.name=LA", fhir.SearchOptions{},
			search("Patient", fhir.Filter{Has: &fhir.HasFilter{Type: "Flag", Ref: param(t, "Flag", "patient"),
				Filter: fhir.Filter{Param: param(t, "Flag", "author"), Modifier: "Organization", Chain: []fhir.ChainTarget{
					{Type: "Organization", Filter: fhir.Filter{Param: param(t, "Organization", "name"), Values: vals(fhir.Value{Norm: "la", Exact: "LA"})}},
				}}}})},

		// date, number, quantity, uri, composite
		{"_lastUpdated", "Flag", "_lastUpdated=lt2026", fhir.SearchOptions{},
			search("Flag", fhir.Filter{Param: param(t, "Flag", "_lastUpdated"), Values: vals(fhir.Value{Prefix: fhir.PrefixLt, DateLow: ms20260101, DateHigh: ms20270101 - 1})})},
		{"date range by AND", "Flag", "date=ge2026-03&date=lt2026-04", fhir.SearchOptions{},
			search("Flag",
				fhir.Filter{Param: param(t, "Flag", "date"), Values: vals(fhir.Value{Prefix: fhir.PrefixGe, DateLow: ms20260301, DateHigh: ms20260401 - 1})},
				fhir.Filter{Param: param(t, "Flag", "date"), Values: vals(fhir.Value{Prefix: fhir.PrefixLt, DateLow: ms20260401, DateHigh: ms20260401 + 30*24*hour - 1})})},
		{"date day in London on the clocks-forward day", "Flag", "date=2026-03-29", fhir.SearchOptions{Location: london},
			// 23 hours: 00:00 GMT to 00:00 BST (23:00 UTC).
			search("Flag", fhir.Filter{Param: param(t, "Flag", "date"), Values: vals(fhir.Value{Prefix: fhir.PrefixEq, DateLow: ms20260329, DateHigh: ms20260329 + 23*hour - 1})})},
		{"number", "RiskAssessment", "probability=ge100", fhir.SearchOptions{},
			search("RiskAssessment", fhir.Filter{Param: param(t, "RiskAssessment", "probability"), Values: vals(fhir.Value{Prefix: fhir.PrefixGe, Number: 100, Low: 99.5, High: 100.5})})},
		{"number exponent", "RiskAssessment", "probability=1e2", fhir.SearchOptions{},
			search("RiskAssessment", fhir.Filter{Param: param(t, "RiskAssessment", "probability"), Values: vals(fhir.Value{Prefix: fhir.PrefixEq, Number: 100, Low: 50, High: 150})})},
		{"quantity with system and code", "Observation", "value-quantity=le150|http://unitsofmeasure.org|mmol/L", fhir.SearchOptions{},
			search("Observation", fhir.Filter{Param: param(t, "Observation", "value-quantity"), Values: vals(
				fhir.Value{Prefix: fhir.PrefixLe, Number: 150, Low: 149.5, High: 150.5, UnitSystem: "http://unitsofmeasure.org", UnitCode: "mmol/L"})})},
		{"quantity with code only", "Observation", "value-quantity=150||mmol/L", fhir.SearchOptions{},
			search("Observation", fhir.Filter{Param: param(t, "Observation", "value-quantity"), Values: vals(
				fhir.Value{Prefix: fhir.PrefixEq, Number: 150, Low: 149.5, High: 150.5, UnitCode: "mmol/L"})})},
		{"quantity any unit", "Observation", "value-quantity=ap1e2", fhir.SearchOptions{},
			search("Observation", fhir.Filter{Param: param(t, "Observation", "value-quantity"), Values: vals(
				fhir.Value{Prefix: fhir.PrefixAp, Number: 100, Low: 50, High: 150})})},
		{"uri", "ValueSet", "url=http://example.org/ValueSet/cpis", fhir.SearchOptions{},
			search("ValueSet", fhir.Filter{Param: param(t, "ValueSet", "url"), Values: vals(fhir.Value{URI: "http://example.org/ValueSet/cpis"})})},
		{"uri below", "ValueSet", "url:below=http://example.org/ValueSet/", fhir.SearchOptions{},
			search("ValueSet", fhir.Filter{Param: param(t, "ValueSet", "url"), Modifier: "below", Values: vals(fhir.Value{URI: "http://example.org/ValueSet/"})})},
		{"_profile and _source", "Flag", "_profile=https://fhir.hl7.org.uk/StructureDefinition/UKCore-Flag&_source=urn:la:x", fhir.SearchOptions{},
			search("Flag",
				fhir.Filter{Param: param(t, "Flag", "_profile"), Values: vals(fhir.Value{URI: "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Flag"})},
				fhir.Filter{Param: param(t, "Flag", "_source"), Values: vals(fhir.Value{URI: "urn:la:x"})})},
		{"composite token and quantity", "Observation", "code-value-quantity=http://loinc.org|12907-2$ge150|http://unitsofmeasure.org|mmol/L", fhir.SearchOptions{},
			search("Observation", fhir.Filter{Param: param(t, "Observation", "code-value-quantity"), Values: vals(fhir.Value{Parts: []fhir.Value{
				{System: "http://loinc.org", HasSystem: true, Code: "12907-2"},
				{Prefix: fhir.PrefixGe, Number: 150, Low: 149.5, High: 150.5, UnitSystem: "http://unitsofmeasure.org", UnitCode: "mmol/L"},
			}})})},
		{"composite with escaped dollar and OR", "Observation", `code-value-string=http://loinc.org|1234-5$a\$b,x$y`, fhir.SearchOptions{},
			search("Observation", fhir.Filter{Param: param(t, "Observation", "code-value-string"), Values: vals(
				fhir.Value{Parts: []fhir.Value{{System: "http://loinc.org", HasSystem: true, Code: "1234-5"}, {Norm: "a$b", Exact: "a$b"}}},
				fhir.Value{Parts: []fhir.Value{{Code: "x"}, {Norm: "y", Exact: "y"}}},
			)})},
		{"composite with date part", "Observation", "code-value-date=x$ge2026-03-29T10:00:00Z", fhir.SearchOptions{},
			search("Observation", fhir.Filter{Param: param(t, "Observation", "code-value-date"), Values: vals(fhir.Value{Parts: []fhir.Value{
				{Code: "x"}, {Prefix: fhir.PrefixGe, DateLow: ms20260329 + 10*hour, DateHigh: ms20260329 + 10*hour + 999},
			}})})},

		// system search
		{"system search with _type", "", "_type=Patient,Flag&identifier=" + nhsIdentVal, fhir.SearchOptions{},
			&fhir.Search{Types: []string{"Patient", "Flag"}, Count: 20, Filters: []fhir.Filter{
				{Param: param(t, "Patient", "identifier"), Values: vals(nhsToken)}}}},
		{"system search on a common parameter", "", "_id=p1&_lastUpdated=ge2026-01-01", fhir.SearchOptions{},
			&fhir.Search{Count: 20, Filters: []fhir.Filter{
				{Param: param(t, "Patient", "_id"), Values: vals(fhir.Value{Code: "p1"})},
				{Param: param(t, "Patient", "_lastUpdated"), Values: vals(fhir.Value{Prefix: fhir.PrefixGe, DateLow: ms20260101, DateHigh: ms20260102 - 1})}}}},
		{"system search _type deduplicated", "", "_type=Flag,%20Flag", fhir.SearchOptions{},
			&fhir.Search{Types: []string{"Flag"}, Count: 20}},

		// result controls
		{"_count", "Flag", "_count=50", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 50}},
		{"_count capped", "Flag", "_count=5000", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 1000}},
		{"_count capped from overflow", "Flag", "_count=99999999999999999999999", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 1000}},
		{"_count zero", "Flag", "_count=0", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 0}},
		{"configured counts", "Flag", "", fhir.SearchOptions{DefaultCount: 10}, &fhir.Search{Type: "Flag", Count: 10}},
		{"configured max", "Flag", "_count=500", fhir.SearchOptions{MaxCount: 100}, &fhir.Search{Type: "Flag", Count: 100}},
		{"_sort", "Flag", "_sort=-date,_lastUpdated", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Sort: []fhir.SortKey{
			{Param: param(t, "Flag", "date"), Descending: true}, {Param: param(t, "Flag", "_lastUpdated")}}}},
		{"_sort on a run-time parameter", "Flag", "_sort=status", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Sort: []fhir.SortKey{{Param: flagStatus}}}},
		{"_total", "Flag", "_total=accurate", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Total: fhir.TotalAccurate}},
		{"_summary count", "Flag", "_summary=count&_count=50", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 0, Summary: fhir.SummaryCount, Total: fhir.TotalAccurate}},
		{"_summary count estimate", "Flag", "_summary=count&_total=estimate", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 0, Summary: fhir.SummaryCount, Total: fhir.TotalEstimate}},
		{"_summary text", "Flag", "_summary=text", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Summary: fhir.SummaryText}},
		{"_elements", "Patient", "_elements=identifier,%20name%20,birthDate", fhir.SearchOptions{}, &fhir.Search{Type: "Patient", Count: 20, Elements: []string{"identifier", "name", "birthDate"}}},
		{"_include", "Flag", "_include=Flag:subject", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Include: []fhir.Include{
			{Source: "Flag", Param: param(t, "Flag", "subject")}}}},
		{"_include with target, several", "Flag", "_include=Flag:subject:Patient&_include=Flag:author", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Include: []fhir.Include{
			{Source: "Flag", Param: param(t, "Flag", "subject"), TargetType: "Patient"}, {Source: "Flag", Param: param(t, "Flag", "author")}}}},
		{"_include wildcards", "Flag", "_include=Flag:*&_include:iterate=*", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Include: []fhir.Include{
			{Source: "Flag"}, {Iterate: true}}}},
		{"_include star", "Flag", "_include=*", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Include: []fhir.Include{{Source: "Flag"}}}},
		{"_include iterate and recurse", "Flag", "_include=Flag:patient&_include:iterate=Patient:organization&_include:recurse=Organization:partof", fhir.SearchOptions{},
			&fhir.Search{Type: "Flag", Count: 20, Include: []fhir.Include{
				{Source: "Flag", Param: param(t, "Flag", "patient")},
				{Source: "Patient", Param: param(t, "Patient", "organization"), Iterate: true},
				{Source: "Organization", Param: param(t, "Organization", "partof"), Iterate: true}}}},
		{"_revinclude", "Patient", "_revinclude=Flag:patient&_revinclude=*&_revinclude:iterate=Provenance:target", fhir.SearchOptions{},
			&fhir.Search{Type: "Patient", Count: 20, RevInclude: []fhir.Include{
				{Source: "Flag", Param: param(t, "Flag", "patient")}, {},
				{Source: "Provenance", Param: param(t, "Provenance", "target"), Iterate: true}}}},
		{"page of encounters with subjects", "Encounter", "_include=Encounter:subject&_count=100", fhir.SearchOptions{},
			&fhir.Search{Type: "Encounter", Count: 100, Include: []fhir.Include{{Source: "Encounter", Param: param(t, "Encounter", "subject")}}}},
		{"server parameters skipped", "Flag", "_format=json&_pretty=true&_cursor=abc", fhir.SearchOptions{}, search("Flag")},
		{"nameless parameter skipped", "Flag", "=x&&", fhir.SearchOptions{}, search("Flag")},

		// lenient: unknown and unsupported parameters ignored
		{"unknown parameter ignored", "Flag", "foo=1&subject=Patient/1", fhir.SearchOptions{},
			&fhir.Search{Type: "Flag", Count: 20, Ignored: []string{"foo"}, Filters: []fhir.Filter{
				{Param: param(t, "Flag", "subject"), Values: vals(fhir.Value{RefType: "Patient", RefID: "1"})}}}},
		{"unsupported common parameters ignored", "Patient", "_text=x&_content=x&_filter=name%20eq%20x&_list=l1&_query=q&_containedType=container&_contained=true", fhir.SearchOptions{},
			&fhir.Search{Type: "Patient", Count: 20, Ignored: []string{"_contained", "_containedType", "_content", "_filter", "_list", "_query", "_text"}}},
		{"unsupported token modifiers ignored", "Observation", "code:in=http://vs&code:not-in=http://vs&code:below=x&code:above=x&status=final", fhir.SearchOptions{},
			&fhir.Search{Type: "Observation", Count: 20, Ignored: []string{"code:above", "code:below", "code:in", "code:not-in"}, Filters: []fhir.Filter{
				{Param: param(t, "Observation", "status"), Values: vals(fhir.Value{Code: "final"})}}}},
		{"special parameter ignored", "Location", "near=42.25|-83.69|10|km", fhir.SearchOptions{}, &fhir.Search{Type: "Location", Count: 20, Ignored: []string{"near"}}},
		{"chain to no target with the parameter ignored", "Flag", "subject.foo=x", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Ignored: []string{"subject.foo"}}},
		{"chain deeper than four ignored", "Patient", "organization.partof.partof.partof.partof.name=x", fhir.SearchOptions{},
			&fhir.Search{Type: "Patient", Count: 20, Ignored: []string{"organization.partof.partof.partof.partof.name"}}},
		{"_has on unknown parameter ignored", "Patient", "_has:Flag:patient:foo=x&_has:Flag:foo:status=active", fhir.SearchOptions{},
			&fhir.Search{Type: "Patient", Count: 20, Ignored: []string{"_has:Flag:foo:status", "_has:Flag:patient:foo"}}},
		{"_type in a type search ignored", "Patient", "_type=Patient", fhir.SearchOptions{}, &fhir.Search{Type: "Patient", Count: 20, Ignored: []string{"_type"}}},
		{"ignored once per key", "Flag", "foo=1&foo=2", fhir.SearchOptions{}, &fhir.Search{Type: "Flag", Count: 20, Ignored: []string{"foo"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse(t, tc.typ, tc.query, tc.opts)
			if err != nil {
				t.Fatalf("ParseSearch(%q, %q): %v", tc.typ, tc.query, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseSearch(%q, %q):\n%s\nwant\n%s", tc.typ, tc.query, dump(got), dump(tc.want))
			}
		})
	}
}

// TestParseSearchDates covers every precision and time-zone form: without a
// zone the value is taken in SearchOptions.Location.
func TestParseSearchDates(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	const t10 = ms20260329 + 10*hour // 2026-03-29T10:00:00Z
	for _, tc := range []struct {
		value     string // as written in the query string
		loc       *time.Location
		prefix    fhir.Prefix
		low, high int64
	}{
		{"2026", nil, fhir.PrefixEq, ms20260101, ms20270101 - 1},
		{"2026-03", nil, fhir.PrefixEq, ms20260301, ms20260401 - 1},
		{"2026-03-29", nil, fhir.PrefixEq, ms20260329, ms20260329 + 24*hour - 1},
		{"2026-03-29", london, fhir.PrefixEq, ms20260329, ms20260329 + 23*hour - 1},
		{"sa2026-03-29", london, fhir.PrefixSa, ms20260329, ms20260329 + 23*hour - 1},
		{"2026", london, fhir.PrefixEq, ms20260101, ms20270101 - 1}, // GMT in January
		// After 01:00 GMT London is on BST, UTC+1.
		{"2026-03-29T10:00", london, fhir.PrefixEq, t10 - hour, t10 - hour + 60000 - 1},
		{"2026-03-29T10:00", nil, fhir.PrefixEq, t10, t10 + 60000 - 1},
		{"2026-03-29T10:00:00", london, fhir.PrefixEq, t10 - hour, t10 - hour + 999},
		{"2026-03-29T10:00:00Z", london, fhir.PrefixEq, t10, t10 + 999},
		{"2026-03-29T10:00:00%2B01:00", nil, fhir.PrefixEq, t10 - hour, t10 - hour + 999},
		// An unencoded '+' arrives as a space.
		{"2026-03-29T10:00:00+01:00", nil, fhir.PrefixEq, t10 - hour, t10 - hour + 999},
		{"le2026-03-29T10:00:00-05:30", nil, fhir.PrefixLe, t10 + 5*hour + 30*60000, t10 + 5*hour + 30*60000 + 999},
		{"eb2026-03-29T10:00:00.5Z", nil, fhir.PrefixEb, t10 + 500, t10 + 599},
		{"ne2026-03-29T10:00:00.123Z", nil, fhir.PrefixNe, t10 + 123, t10 + 123},
		{"ap2026-03-29T10:00:00.123456Z", nil, fhir.PrefixAp, t10 + 123, t10 + 123},
	} {
		t.Run(tc.value, func(t *testing.T) {
			got, err := parse(t, "Flag", "date="+tc.value, fhir.SearchOptions{Location: tc.loc})
			if err != nil {
				t.Fatalf("ParseSearch(Flag, date=%s): %v", tc.value, err)
			}
			want := []fhir.Filter{{Param: param(t, "Flag", "date"), Values: vals(fhir.Value{Prefix: tc.prefix, DateLow: tc.low, DateHigh: tc.high})}}
			if !reflect.DeepEqual(got.Filters, want) {
				t.Errorf("ParseSearch(Flag, date=%s): %+v, want %+v", tc.value, got.Filters[0].Values, want[0].Values)
			}
		})
	}
}

// TestParseSearchDecimal checks a decimal's range by its precision, within
// rounding: 5.4 covers [5.35, 5.45).
func TestParseSearchDecimal(t *testing.T) {
	got, err := parse(t, "Observation", "value-quantity=gt5.4|http://unitsofmeasure.org|mg", fhir.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := got.Filters[0].Values[0]
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if v.Prefix != fhir.PrefixGt || !near(v.Number, 5.4) || !near(v.Low, 5.35) || !near(v.High, 5.45) || v.UnitSystem != "http://unitsofmeasure.org" || v.UnitCode != "mg" {
		t.Errorf("value-quantity=gt5.4|ucum|mg: %+v, want gt 5.4 in [5.35, 5.45) mg", v)
	}
}

// TestParseSearchErrors checks the refusals: the issue type, that the
// message names the parameter and that it never repeats the value.
func TestParseSearchErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		typ    string
		query  string
		strict bool
		code   fhir.IssueType
		key    string // named in the message
		secret string // never in the message
	}{
		// malformed values
		{"bad date", "Flag", "date=2026-13-01", false, fhir.IssueInvalid, "date", "2026-13-01"},
		{"bad time", "Flag", "date=2026-01-01T25:00", false, fhir.IssueInvalid, "date", "2026-01-01T25:00"},
		{"bad prefix", "Flag", "date=xx2026-01-01", false, fhir.IssueInvalid, "date", "xx2026"},
		{"bad prefix, strict", "Flag", "date=xx2026-01-01", true, fhir.IssueInvalid, "date", "xx2026"},
		{"bad number", "RiskAssessment", "probability=abc9990000018", false, fhir.IssueInvalid, "probability", nhs1},
		{"bad quantity unit", "Observation", "value-quantity=5|mg", false, fhir.IssueInvalid, "value-quantity", "mg"},
		{"token with too many pipes", "Flag", "subject:identifier=" + nhsIdentVal + "|x", false, fhir.IssueInvalid, "subject:identifier", nhs1},
		{"token with too many pipes on identifier", "Patient", "identifier=" + nhsIdentVal + "|x", false, fhir.IssueInvalid, "identifier", nhs1},
		{"token with neither system nor code", "Patient", "identifier=|", false, fhir.IssueInvalid, "identifier", ""},
		{"of-type with two parts", "Patient", "identifier:of-type=sys|" + nhs1, false, fhir.IssueInvalid, "identifier:of-type", nhs1},
		{"missing not boolean", "Patient", "name:missing=maybe", false, fhir.IssueInvalid, "name:missing", "maybe"},
		{"empty value", "Flag", "subject:identifier=", false, fhir.IssueInvalid, "subject:identifier", ""},
		{"empty value in list", "Flag", "subject=Patient/1,,Patient/2", false, fhir.IssueInvalid, "subject", "Patient/2"},
		{"white-space string", "Patient", "name=%20%20", false, fhir.IssueInvalid, "name", ""},
		{"bad _id", "Patient", "_id=a|b", false, fhir.IssueInvalid, "_id", "a|b"},
		{"bad reference id", "Flag", "subject=Patient/" + nhs1 + "!", false, fhir.IssueInvalid, "subject", nhs1},
		{"reference type not a target", "Flag", "subject=Observation/" + nhs1, false, fhir.IssueInvalid, "subject", nhs1},
		{"reference not a resource type", "Flag", "subject=Foo/" + nhs1, false, fhir.IssueInvalid, "subject", nhs1},
		{"reference type against modifier", "Flag", "subject:Patient=Group/" + nhs1, false, fhir.IssueInvalid, "subject:Patient", nhs1},
		{"reference with too many segments", "Flag", "subject=Patient/1/x", false, fhir.IssueInvalid, "subject", "Patient/1/x"},
		{"reference version on relative", "Flag", "subject=Patient/" + nhs1 + "|2", false, fhir.IssueInvalid, "subject", nhs1},
		{"composite with too few parts", "Observation", "code-value-quantity=http://loinc.org|" + nhs1, false, fhir.IssueInvalid, "code-value-quantity", nhs1},
		{"composite with bad part", "Observation", "code-value-quantity=x$" + nhs1 + "kg", false, fhir.IssueInvalid, "code-value-quantity", nhs1},

		// modifiers and chains
		{"unknown modifier", "Patient", "name:phonetic=Smith", false, fhir.IssueInvalid, "name:phonetic", "Smith"},
		{"identifier is not a token modifier", "Patient", "identifier:identifier=" + nhs1, false, fhir.IssueInvalid, "identifier:identifier", nhs1},
		{"exact is not a token modifier", "Patient", "gender:exact=female", false, fhir.IssueInvalid, "gender:exact", "female"},
		{"of-type on a non-identifier", "Patient", "gender:of-type=a|b|c", false, fhir.IssueInvalid, "gender:of-type", "a|b|c"},
		{"type modifier not a target", "Flag", "subject:Observation=" + nhs1, false, fhir.IssueInvalid, "subject:Observation", nhs1},
		{"modifier on date", "Flag", "date:exact=2026", false, fhir.IssueInvalid, "date:exact", "2026"},
		{"text on _id", "Patient", "_id:text=p1", false, fhir.IssueInvalid, "_id:text", "p1"},
		{"chain through a token", "Flag", "identifier.name=Smith", false, fhir.IssueInvalid, "identifier.name", "Smith"},
		{"chain with a non-type modifier", "Flag", "subject:identifier.name=Smith", false, fhir.IssueInvalid, "subject:identifier.name", "Smith"},
		{"chain type modifier not a target", "Flag", "subject:Observation.code=x", false, fhir.IssueInvalid, "subject:Observation.code", ""},
		{"malformed value down a chain", "Flag", "patient.birthdate=yesterday", false, fhir.IssueInvalid, "patient.birthdate", "yesterday"},
		{"_has too short", "Patient", "_has:Flag:patient=active", false, fhir.IssueInvalid, "_has:Flag:patient", "active"},
		{"_has alone", "Patient", "_has=active", false, fhir.IssueInvalid, "_has", "active"},
		{"_has unknown type", "Patient", "_has:Foo:patient:status=active", false, fhir.IssueInvalid, "_has:Foo:patient:status", "active"},
		{"_has through a token", "Patient", "_has:Flag:identifier:status=active", false, fhir.IssueInvalid, "_has:Flag:identifier:status", "active"},
		{"_has reference cannot refer to the type", "Encounter", "_has:Flag:patient:status=active", false, fhir.IssueInvalid, "_has:Flag:patient:status", "active"},
		{"_has with malformed inner value", "Patient", "_has:Flag:patient:date=2026-02-30", false, fhir.IssueInvalid, "_has:Flag:patient:date", "2026-02-30"},

		// system search
		{"_type unknown", "", "_type=Patient,Foo", false, fhir.IssueInvalid, "_type", ""},
		{"_type twice", "", "_type=Patient&_type=Flag", false, fhir.IssueInvalid, "_type", ""},
		{"_type with modifier", "", "_type:not=Patient", false, fhir.IssueInvalid, "_type:not", ""},
		{"system search on a parameter of some types", "", "name=Smith", false, fhir.IssueInvalid, "name", "Smith"},
		{"system search on a parameter not on every type", "", "_type=Patient,Flag&name=Smith", false, fhir.IssueInvalid, "name", "Smith"},
		{"unknown resource type", "Foo", "", false, fhir.IssueNotFound, "Foo", ""},

		// result controls
		{"negative _count", "Flag", "_count=-1", false, fhir.IssueInvalid, "_count", "-1"},
		{"word _count", "Flag", "_count=ten", false, fhir.IssueInvalid, "_count", "ten"},
		{"decimal _count", "Flag", "_count=1.5", false, fhir.IssueInvalid, "_count", "1.5"},
		{"_count twice", "Flag", "_count=10&_count=20", false, fhir.IssueInvalid, "_count", ""},
		{"_count with modifier", "Flag", "_count:x=10", false, fhir.IssueInvalid, "_count:x", ""},
		{"_sort unknown", "Flag", "_sort=foo", false, fhir.IssueInvalid, "_sort", "foo"},
		{"_sort composite", "Observation", "_sort=code-value-quantity", false, fhir.IssueInvalid, "_sort", "code-value-quantity"},
		{"_sort special", "Location", "_sort=near", false, fhir.IssueInvalid, "_sort", "near"},
		{"_sort unsupported", "Patient", "_sort=_text", false, fhir.IssueInvalid, "_sort", "_text"},
		{"_sort empty", "Flag", "_sort=", false, fhir.IssueInvalid, "_sort", ""},
		{"_sort empty key", "Flag", "_sort=date,,-date", false, fhir.IssueInvalid, "_sort", ""},
		{"_sort chained", "Flag", "_sort=patient.name", false, fhir.IssueInvalid, "_sort", "patient.name"},
		{"_total bad", "Flag", "_total=all", false, fhir.IssueInvalid, "_total", "all"},
		{"_summary bad", "Flag", "_summary=yes", false, fhir.IssueInvalid, "_summary", "yes"},
		{"_summary count with _total none", "Flag", "_summary=count&_total=none", false, fhir.IssueInvalid, "_summary", ""},
		{"_elements path", "Patient", "_elements=name.given", false, fhir.IssueInvalid, "_elements", "name.given"},
		{"_elements empty entry", "Patient", "_elements=name,", false, fhir.IssueInvalid, "_elements", ""},
		{"_include unknown parameter", "Flag", "_include=Flag:foo", false, fhir.IssueInvalid, "_include", "foo"},
		{"_include not a reference", "Flag", "_include=Flag:identifier", false, fhir.IssueInvalid, "_include", ""},
		{"_include other source without iterate", "Flag", "_include=Patient:organization", false, fhir.IssueInvalid, "_include", ""},
		{"_include target not allowed", "Flag", "_include=Flag:subject:Observation", false, fhir.IssueInvalid, "_include", ""},
		{"_include unknown source", "Flag", "_include=Foo:subject", false, fhir.IssueInvalid, "_include", ""},
		{"_include malformed", "Flag", "_include=subject", false, fhir.IssueInvalid, "_include", ""},
		{"_include bad modifier", "Flag", "_include:deep=Flag:subject", false, fhir.IssueInvalid, "_include:deep", ""},
		{"_include source not among _type", "", "_type=Patient&_include=Flag:subject", false, fhir.IssueInvalid, "_include", ""},
		{"_revinclude cannot refer to the type", "Patient", "_revinclude=Flag:encounter", false, fhir.IssueInvalid, "_revinclude", ""},
		{"_revinclude target other than the type", "Patient", "_revinclude=Flag:subject:Group", false, fhir.IssueInvalid, "_revinclude", ""},

		// strict: unknown and unsupported refused
		{"strict unknown", "Flag", "foo=" + nhs1, true, fhir.IssueNotSupported, "foo", nhs1},
		{"strict unsupported parameter", "Patient", "_text=" + nhs1, true, fhir.IssueNotSupported, "_text", nhs1},
		{"strict _contained", "Patient", "_contained=true", true, fhir.IssueNotSupported, "_contained", ""},
		{"strict unsupported modifier", "Observation", "code:in=http://vs", true, fhir.IssueNotSupported, "code:in", "http://vs"},
		{"strict special", "Location", "near=1|2|3|km", true, fhir.IssueNotSupported, "near", ""},
		{"strict unknown chain", "Flag", "subject.foo=" + nhs1, true, fhir.IssueNotSupported, "subject.foo", nhs1},
		{"strict deep chain", "Patient", "organization.partof.partof.partof.partof.name=x", true, fhir.IssueNotSupported, "organization.partof.partof.partof.partof.name", ""},
		{"strict _type in a type search", "Patient", "_type=Patient", true, fhir.IssueNotSupported, "_type", ""},
		{"strict unknown in a system search", "", "foo=" + nhs1, true, fhir.IssueNotSupported, "foo", nhs1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.typ, tc.query, fhir.SearchOptions{Strict: tc.strict})
			var fe *fhir.Error
			if !errors.As(err, &fe) {
				t.Fatalf("ParseSearch(%q, %q): error %v, want an *fhir.Error with code %s", tc.typ, tc.query, err, tc.code)
			}
			if fe.Code != tc.code {
				t.Errorf("ParseSearch(%q, %q): code %s (%s), want %s", tc.typ, tc.query, fe.Code, fe.Message, tc.code)
			}
			if !strings.Contains(fe.Message, tc.key) {
				t.Errorf("ParseSearch(%q, %q): message %q does not name %q", tc.typ, tc.query, fe.Message, tc.key)
			}
			if tc.secret != "" && strings.Contains(fe.Message, tc.secret) {
				t.Errorf("ParseSearch(%q, %q): message %q repeats the value %q", tc.typ, tc.query, fe.Message, tc.secret)
			}
		})
	}
}

func TestParseSearchNeedsRegistry(t *testing.T) {
	_, err := fhir.ParseSearch("Flag", url.Values{}, fhir.SearchOptions{})
	if err == nil || fhir.ErrorCode(err) != fhir.IssueException {
		t.Errorf("ParseSearch without a registry: %v, want an internal (uncoded) error", err)
	}
}

// TestParseSearchStrictAccepts checks that strict mode changes nothing for
// a query the server fully supports.
func TestParseSearchStrictAccepts(t *testing.T) {
	q := "subject:identifier=" + nhsIdentVal + "&status=active&_include=Flag:subject&_count=10"
	lenient, err := parse(t, "Flag", q, fhir.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	strict, err := parse(t, "Flag", q, fhir.SearchOptions{Strict: true})
	if err != nil {
		t.Fatalf("strict ParseSearch(Flag, %q): %v", q, err)
	}
	if !reflect.DeepEqual(lenient, strict) {
		t.Errorf("strict ParseSearch(Flag, %q):\n%s\nwant the lenient result\n%s", q, dump(strict), dump(lenient))
	}
}

func benchmarkParse(b *testing.B, typ, query string) {
	q, err := url.ParseQuery(query)
	if err != nil {
		b.Fatal(err)
	}
	opts := fhir.SearchOptions{Registry: testRegistry(), BaseURL: testBase}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fhir.ParseSearch(typ, q, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSearch_FlagNHSNumber(b *testing.B) {
	benchmarkParse(b, "Flag", "subject:identifier="+nhsIdentVal+"&status=active")
}

func BenchmarkParseSearch_FlagChainedNHSNumber(b *testing.B) {
	benchmarkParse(b, "Flag", "patient.identifier="+nhsIdentVal)
}

func BenchmarkParseSearch_EncounterPage(b *testing.B) {
	benchmarkParse(b, "Encounter", "subject=Patient/1&date=ge2026-01-01&_include=Encounter:subject&_count=100&_sort=-date")
}

func BenchmarkParseSearch_SystemAllTypes(b *testing.B) {
	benchmarkParse(b, "", "_lastUpdated=ge2026-01-01&_id=p1")
}

// TestParseSearchValueSets checks :in and :not-in with a registry whose
// ValueSetCodes holds two small value sets: their values become the union
// of the codes, each once.
func TestParseSearchValueSets(t *testing.T) {
	const (
		vsA = "https://example.org/ValueSet/a"
		vsB = "https://example.org/ValueSet/b"
		sys = "http://example.org/codes"
	)
	sets := map[string][]fhir.Coding{
		vsA:     {{System: sys, Code: "x"}, {System: sys, Code: "y"}},
		vsB:     {{System: sys, Code: "y"}, {System: "http://other", Code: "z"}},
		"empty": nil,
	}
	big := make([]fhir.Coding, 1001)
	for i := range big {
		big[i] = fhir.Coding{System: sys, Code: fmt.Sprint(i)}
	}
	reg := testRegistry()
	reg.SetValueSets(func(u, version string) ([]fhir.Coding, bool) {
		switch {
		case u == "https://example.org/ValueSet/big":
			return big, true
		case u == "https://example.org/ValueSet/empty":
			return nil, true
		case version != "" && version != "1":
			return nil, false
		}
		cs, ok := sets[u]
		return cs, ok
	})
	tok := func(system, code string) fhir.Value { return fhir.Value{System: system, HasSystem: true, Code: code} }
	for _, tc := range []struct {
		name, typ, query string
		want             *fhir.Search
	}{
		{"in", "Observation", "code:in=" + vsA, search("Observation",
			fhir.Filter{Param: param(t, "Observation", "code"), Modifier: "in", Values: vals(tok(sys, "x"), tok(sys, "y"))})},
		{"not-in, two value sets, union", "Observation", "code:not-in=" + vsA + "," + vsB + "|1", search("Observation",
			fhir.Filter{Param: param(t, "Observation", "code"), Modifier: "not-in", Values: vals(tok(sys, "x"), tok(sys, "y"), tok("http://other", "z"))})},
		{"empty value set", "Observation", "code:in=https://example.org/ValueSet/empty", search("Observation",
			fhir.Filter{Param: param(t, "Observation", "code"), Modifier: "in"})},
		{"chained", "Flag", "patient.gender:in=" + vsB, search("Flag", fhir.Filter{Param: param(t, "Flag", "patient"), Chain: []fhir.ChainTarget{
			{Type: "Patient", Filter: fhir.Filter{Param: param(t, "Patient", "gender"), Modifier: "in", Values: vals(tok(sys, "y"), tok("http://other", "z"))}}}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, strict := range []bool{false, true} {
				got, err := parse(t, tc.typ, tc.query, fhir.SearchOptions{Registry: reg, Strict: strict})
				if err != nil {
					t.Fatalf("ParseSearch(%q, %q): %v", tc.typ, tc.query, err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("ParseSearch(%q, %q):\n%s\nwant\n%s", tc.typ, tc.query, dump(got), dump(tc.want))
				}
			}
		})
	}
	for _, tc := range []struct{ name, query, key string }{
		{"unknown value set", "code:in=https://example.org/ValueSet/secret", "code:in"},
		{"unknown version", "code:not-in=" + vsA + "|secret", "code:not-in"},
		{"relative URL", "code:in=ValueSet/secret", "code:in"},
		{"two versions", "code:in=" + vsA + "|1|secret", "code:in"},
		{"empty entry", "code:in=" + vsA + ",", "code:in"},
		{"more than 1000 codes", "code:in=https://example.org/ValueSet/big", "code:in"},
		{"not a token", "date:in=" + vsA, "date:in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, "Observation", tc.query, fhir.SearchOptions{Registry: reg})
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Code != fhir.IssueInvalid || !strings.Contains(fe.Message, tc.key) || strings.Contains(fe.Message, "secret") {
				t.Errorf("ParseSearch(Observation, %q): %v, want IssueInvalid naming %s without the value", tc.query, err, tc.key)
			}
		})
	}
}
