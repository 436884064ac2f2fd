package profiles_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/profiles"
	"github.com/cpis-fhir/cpis/terminology"
)

const base = "https://fhir.cpis-fhir.org/StructureDefinition/"

func newValidator(tb testing.TB) *profiles.Validator {
	tb.Helper()
	v, err := profiles.New(terminology.New())
	if err != nil {
		tb.Fatalf("profiles.New: %v", err)
	}
	return v
}

// fixture reads testdata/name.json as a generic JSON object.
func fixture(tb testing.TB, name string) map[string]any {
	tb.Helper()
	b, err := os.ReadFile("testdata/" + name + ".json")
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		tb.Fatalf("testdata/%s.json: %v", name, err)
	}
	return m
}

// walkTo returns the container and key (or index) of a dotted path with
// [i] indexes ("identifier[0].extension[0].valueCodeableConcept").
func walkTo(tb testing.TB, m map[string]any, path string) (any, string) {
	tb.Helper()
	var cur any = m
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		name, idx, hasIdx := strings.Cut(strings.TrimSuffix(seg, "]"), "[")
		last := i == len(segs)-1
		obj := cur.(map[string]any)
		if !hasIdx {
			if last {
				return obj, name
			}
			cur = obj[name]
			continue
		}
		if last {
			return obj[name], idx
		}
		n, _ := strconv.Atoi(idx)
		cur = obj[name].([]any)[n]
	}
	tb.Fatalf("bad path %s", path)
	return nil, ""
}

func set(tb testing.TB, m map[string]any, path string, v any) {
	tb.Helper()
	c, k := walkTo(tb, m, path)
	switch c := c.(type) {
	case map[string]any:
		c[k] = v
	case []any:
		n, _ := strconv.Atoi(k)
		c[n] = v
	}
}

func del(tb testing.TB, m map[string]any, path string) {
	tb.Helper()
	c, k := walkTo(tb, m, path)
	delete(c.(map[string]any), k)
}

// decode parses a JSON literal of a test case.
func decode(s string) any {
	var v any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		panic(err)
	}
	return v
}

type want struct {
	severity fhir.Severity
	code     fhir.IssueType
	expr     string
	details  string
}

func (w want) String() string {
	return fmt.Sprintf("%s %s %s %s", w.severity, w.code, w.expr, w.details)
}

func got(issues []profiles.Issue) []want {
	var out []want
	for _, is := range issues {
		w := want{severity: is.Severity, code: is.Code, details: is.Details}
		if len(is.Expression) > 0 {
			w.expr = strings.Join(is.Expression, ",")
		}
		out = append(out, w)
	}
	return out
}

func errAt(code fhir.IssueType, expr string) want {
	return want{severity: fhir.SeverityError, code: code, expr: expr}
}

type validateCase struct {
	name   string
	edit   func(t *testing.T, m map[string]any)
	issues []want
}

func runCases(t *testing.T, fixtureName, profile string, cases []validateCase) {
	v := newValidator(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := fixture(t, fixtureName)
			if tc.edit != nil {
				tc.edit(t, m)
			}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			issues := v.Validate(b, base+profile)
			g := got(issues)
			if fmt.Sprint(g) != fmt.Sprint(tc.issues) {
				for _, is := range issues {
					t.Logf("issue: %s %s %v %s", is.Severity, is.Code, is.Expression, is.Diagnostics)
				}
				t.Errorf("Validate(%s %s):\n got  %v\n want %v", fixtureName, tc.name, g, tc.issues)
			}
			for _, is := range issues {
				if strings.Contains(is.Diagnostics, "999") {
					t.Errorf("Validate(%s %s): diagnostics %q repeat an NHS number", fixtureName, tc.name, is.Diagnostics)
				}
			}
		})
	}
}

func TestValidate_Flag(t *testing.T) {
	runCases(t, "flag", "CPIS-Flag", []validateCase{
		{name: "valid"},
		{name: "valid unborn plan with end date", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "category[0].coding[0].code", "818901000000100")
			set(t, m, "period", decode(`{"start": "2026-01-15", "end": "2026-06-30"}`))
		}},
		{name: "valid with urn:uuid subject (transaction entry)", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "subject", decode(`{"reference": "urn:uuid:0b9c5a3e-1d2f-4a57-8d0e-3a6f4f2b9c11"}`))
		}},
		{name: "valid with contained author", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "contained", decode(`[{"resourceType": "Organization", "id": "la", "name": "LA"}]`))
			set(t, m, "author", decode(`{"reference": "#la"}`))
		}},
		{name: "missing status", edit: func(t *testing.T, m map[string]any) { del(t, m, "status") },
			issues: []want{errAt(fhir.IssueRequired, "Flag.status")}},
		{name: "status not in flag-status", edit: func(t *testing.T, m map[string]any) { set(t, m, "status", "current") },
			issues: []want{errAt(profiles.IssueCodeInvalid, "Flag.status")}},
		{name: "missing category", edit: func(t *testing.T, m map[string]any) { del(t, m, "category") },
			issues: []want{errAt(fhir.IssueRequired, "Flag.category")}},
		{name: "two categories", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "category", decode(`[{"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101"}]}, {"coding": [{"system": "http://snomed.info/sct", "code": "764841000000100"}]}]`))
		}, issues: []want{errAt(fhir.IssueStructure, "Flag.category")}},
		{name: "plan type not in the value set", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "category[0].coding[0].code", "22298006")
		}, issues: []want{errAt(profiles.IssueCodeInvalid, "Flag.category[0]")}},
		{name: "plan type under https SNOMED (2024 example)", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "category[0].coding[0].system", "https://snomed.info/sct")
		}, issues: []want{
			errAt(profiles.IssueCodeInvalid, "Flag.category[0]"),
			errAt(fhir.IssueRequired, "Flag.category[0].coding"),
		}},
		{name: "code is not the CP-IS flag", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "code.coding[0].code", "female-genital-mutilation-flag")
		}, issues: []want{errAt(fhir.IssueValue, "Flag.code")}},
		{name: "code from another system", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "code", decode(`{"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101"}]}`))
		}, issues: []want{errAt(fhir.IssueValue, "Flag.code"), errAt(profiles.IssueCodeInvalid, "Flag.code")}},
		{name: "subject is a Group", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "subject", decode(`{"reference": "Group/g1"}`))
		}, issues: []want{errAt(fhir.IssueStructure, "Flag.subject")}},
		{name: "subject by absolute URL to a Patient", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "subject", decode(`{"reference": "https://other.example.org/fhir/Patient/p9/_history/2"}`))
		}},
		{name: "author missing", edit: func(t *testing.T, m map[string]any) { del(t, m, "author") },
			issues: []want{errAt(fhir.IssueRequired, "Flag.author")}},
		{name: "author is a Practitioner", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "author", decode(`{"reference": "Practitioner/sw-1"}`))
		}, issues: []want{errAt(fhir.IssueStructure, "Flag.author")}},
		{name: "author by type only", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "author", decode(`{"type": "Device", "identifier": {"value": "x"}}`))
		}, issues: []want{errAt(fhir.IssueStructure, "Flag.author")}},
		{name: "missing period", edit: func(t *testing.T, m map[string]any) { del(t, m, "period") },
			issues: []want{errAt(fhir.IssueRequired, "Flag.period")}},
		{name: "period without start", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "period", decode(`{"end": "2026-06-30"}`))
		}, issues: []want{errAt(fhir.IssueRequired, "Flag.period.start")}},
		{name: "unborn plan without end date", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "category[0].coding[0].code", "818901000000100")
		}, issues: []want{errAt(fhir.IssueInvariant, "Flag")}},
		{name: "plan ends before it starts", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "period", decode(`{"start": "2026-01-15", "end": "2025-12-31"}`))
		}, issues: []want{errAt(fhir.IssueInvariant, "Flag")}},
		{name: "flag-detail to an Observation", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "extension[0].valueReference", decode(`{"reference": "Observation/o1"}`))
		}, issues: []want{errAt(fhir.IssueStructure, "Flag.extension[0].valueReference")}},
		{name: "flag-detail with a string value (type choice)", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "extension[0]", decode(`{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail", "valueString": "plan"}`))
		}, issues: []want{
			errAt(fhir.IssueStructure, "Flag.extension[0].valueString"),
			errAt(fhir.IssueRequired, "Flag.extension[0].value"),
		}},
		{name: "two flag-detail extensions", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "extension", decode(`[{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail", "valueReference": {"reference": "CarePlan/a"}}, {"url": "http://hl7.org/fhir/StructureDefinition/flag-detail", "valueReference": {"reference": "CarePlan/b"}}]`))
		}, issues: []want{errAt(fhir.IssueStructure, "Flag.extension")}},
		{name: "other extension is open slicing", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "extension", decode(`[{"url": "https://example.org/ext", "valueString": "x"}]`))
		}},
		{name: "subject identifier fails the check digit", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "subject.identifier.value", "9990000019")
		}, issues: []want{{fhir.SeverityError, fhir.IssueValue, "Flag.subject.identifier.value", "INVALID_SEARCH_DATA"}}},
	})
}

func TestValidate_Patient(t *testing.T) {
	runCases(t, "patient", "CPIS-Patient", []validateCase{
		{name: "valid"},
		{name: "valid with the NHS number second", edit: func(t *testing.T, m map[string]any) {
			ids := m["identifier"].([]any)
			m["identifier"] = []any{ids[1], ids[0]}
		}},
		{name: "no NHS number", edit: func(t *testing.T, m map[string]any) {
			m["identifier"] = m["identifier"].([]any)[1:]
		}, issues: []want{errAt(fhir.IssueRequired, "Patient.identifier")}},
		{name: "no identifier", edit: func(t *testing.T, m map[string]any) { del(t, m, "identifier") },
			issues: []want{errAt(fhir.IssueRequired, "Patient.identifier"), errAt(fhir.IssueRequired, "Patient.identifier")}},
		{name: "two NHS numbers", edit: func(t *testing.T, m map[string]any) {
			ids := m["identifier"].([]any)
			m["identifier"] = []any{ids[0], ids[0]}
		}, issues: []want{errAt(fhir.IssueStructure, "Patient.identifier")}},
		{name: "bad check digit", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "identifier[0].value", "9990000017")
		}, issues: []want{{fhir.SeverityError, fhir.IssueValue, "Patient.identifier[0].value", "INVALID_SEARCH_DATA"}}},
		{name: "NHS number without value", edit: func(t *testing.T, m map[string]any) {
			del(t, m, "identifier[0].value")
		}, issues: []want{errAt(fhir.IssueRequired, "Patient.identifier[0].value")}},
		{name: "no verification status", edit: func(t *testing.T, m map[string]any) {
			del(t, m, "identifier[0].extension")
		}, issues: []want{errAt(fhir.IssueRequired, "Patient.identifier[0].extension")}},
		{name: "verification status 02 (not traced)", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "identifier[0].extension[0].valueCodeableConcept.coding[0].code", "02")
		}, issues: []want{errAt(fhir.IssueValue, "Patient.identifier[0].extension[0].valueCodeableConcept")}},
		{name: "verification status 99 (not a code)", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "identifier[0].extension[0].valueCodeableConcept.coding[0].code", "99")
		}, issues: []want{
			errAt(fhir.IssueValue, "Patient.identifier[0].extension[0].valueCodeableConcept"),
			errAt(profiles.IssueCodeInvalid, "Patient.identifier[0].extension[0].valueCodeableConcept"),
		}},
		{name: "verification status as a Coding (type choice)", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "identifier[0].extension[0]", decode(`{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus", "valueCoding": {"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland", "code": "01"}}`))
		}, issues: []want{
			errAt(fhir.IssueStructure, "Patient.identifier[0].extension[0].valueCoding"),
			errAt(fhir.IssueRequired, "Patient.identifier[0].extension[0].value"),
		}},
		{name: "missing name, gender and birth date", edit: func(t *testing.T, m map[string]any) {
			del(t, m, "name")
			del(t, m, "gender")
			del(t, m, "birthDate")
		}, issues: []want{errAt(fhir.IssueRequired, "Patient.name"), errAt(fhir.IssueRequired, "Patient.gender"), errAt(fhir.IssueRequired, "Patient.birthDate")}},
		{name: "gender not a code", edit: func(t *testing.T, m map[string]any) { set(t, m, "gender", "f") },
			issues: []want{errAt(profiles.IssueCodeInvalid, "Patient.gender")}},
		{name: "telecom use outside contact-point-use is not unfolded here", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "telecom", decode(`[{"system": "phone", "value": "0300 000 0009", "use": "home"}]`))
		}},
	})
}

func TestValidate_Organization(t *testing.T) {
	runCases(t, "organization", "CPIS-Organization", []validateCase{
		{name: "valid"},
		{name: "no ODS code", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "identifier[0].system", "https://example.org/Id/council")
		}, issues: []want{errAt(fhir.IssueRequired, "Organization.identifier")}},
		{name: "no name", edit: func(t *testing.T, m map[string]any) { del(t, m, "name") },
			issues: []want{errAt(fhir.IssueRequired, "Organization.name")}},
	})
}

func TestValidate_CarePlan(t *testing.T) {
	runCases(t, "careplan", "CPIS-CarePlan", []validateCase{
		{name: "valid"},
		{name: "no care team", edit: func(t *testing.T, m map[string]any) { del(t, m, "careTeam") },
			issues: []want{errAt(fhir.IssueRequired, "CarePlan.careTeam")}},
		{name: "care team is an Organization", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "careTeam[0]", decode(`{"reference": "Organization/la-1"}`))
		}, issues: []want{errAt(fhir.IssueStructure, "CarePlan.careTeam[0]")}},
		{name: "intent outside care-plan-intent", edit: func(t *testing.T, m map[string]any) { set(t, m, "intent", "directive") },
			issues: []want{errAt(profiles.IssueCodeInvalid, "CarePlan.intent")}},
		{name: "unborn plan without end", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "category[0].coding[0].code", "818901000000100")
		}, issues: []want{errAt(fhir.IssueInvariant, "CarePlan")}},
	})
}

func TestValidate_CareTeam(t *testing.T) {
	runCases(t, "careteam", "CPIS-CareTeam", []validateCase{
		{name: "valid"},
		{name: "valid with an extra email", edit: func(t *testing.T, m map[string]any) {
			m["telecom"] = append(m["telecom"].([]any), decode(`{"system": "email", "value": "cs@example.org"}`))
		}},
		{name: "no emergency-duty phone", edit: func(t *testing.T, m map[string]any) {
			m["telecom"] = m["telecom"].([]any)[:1]
		}, issues: []want{errAt(fhir.IssueRequired, "CareTeam.telecom"), errAt(fhir.IssueRequired, "CareTeam.telecom")}},
		{name: "two office-hours phones", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "telecom[1].use", "work")
		}, issues: []want{errAt(fhir.IssueStructure, "CareTeam.telecom"), errAt(fhir.IssueRequired, "CareTeam.telecom")}},
		{name: "office-hours phone without number", edit: func(t *testing.T, m map[string]any) {
			del(t, m, "telecom[0].value")
		}, issues: []want{errAt(fhir.IssueRequired, "CareTeam.telecom[0].value")}},
		{name: "no name", edit: func(t *testing.T, m map[string]any) { del(t, m, "name") },
			issues: []want{errAt(fhir.IssueRequired, "CareTeam.name")}},
		{name: "category outside the plan types", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "category[0].coding[0].code", "22298006")
		}, issues: []want{errAt(profiles.IssueCodeInvalid, "CareTeam.category[0]")}},
		{name: "subject identifier wrong length", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "subject.identifier.value", "999000002")
		}, issues: []want{{fhir.SeverityError, fhir.IssueValue, "CareTeam.subject.identifier.value", "INVALID_SEARCH_DATA"}}},
	})
}

func TestValidate_Encounter(t *testing.T) {
	runCases(t, "encounter", "CPIS-Encounter", []validateCase{
		{name: "valid"},
		{name: "care setting from another system (extensible)", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "serviceType", decode(`{"coding": [{"system": "https://example.org/care-setting", "code": "ae"}]}`))
		}},
		{name: "SNOMED code outside the care settings (extensible)", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "serviceType.coding[0].code", "22298006")
		}, issues: []want{errAt(profiles.IssueCodeInvalid, "Encounter.serviceType")}},
		{name: "no service provider", edit: func(t *testing.T, m map[string]any) { del(t, m, "serviceProvider") },
			issues: []want{errAt(fhir.IssueRequired, "Encounter.serviceProvider")}},
		{name: "subject is a Group", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "subject", decode(`{"reference": "Group/g1"}`))
		}, issues: []want{errAt(fhir.IssueStructure, "Encounter.subject")}},
	})
}

func TestValidate_Communication(t *testing.T) {
	runCases(t, "communication", "CPIS-Communication", []validateCase{
		{name: "valid"},
		{name: "category is not notification", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "category[0].coding[0].code", "alert")
		}, issues: []want{errAt(fhir.IssueValue, "Communication.category[0]")}},
		{name: "payload as attachment (type choice)", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "payload[0]", decode(`{"contentAttachment": {"contentType": "text/plain", "data": "eA=="}}`))
		}, issues: []want{errAt(fhir.IssueStructure, "Communication.payload[0].contentAttachment"), errAt(fhir.IssueRequired, "Communication.payload[0].content")}},
		{name: "about a Condition", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "about[1]", decode(`{"reference": "Condition/c1"}`))
		}, issues: []want{errAt(fhir.IssueStructure, "Communication.about[1]")}},
		{name: "no recipient and no sent time", edit: func(t *testing.T, m map[string]any) {
			del(t, m, "recipient")
			del(t, m, "sent")
		}, issues: []want{errAt(fhir.IssueRequired, "Communication.sent"), errAt(fhir.IssueRequired, "Communication.recipient")}},
	})
}

func TestValidate_AuditEvent(t *testing.T) {
	runCases(t, "auditevent", "CPIS-AuditEvent", []validateCase{
		{name: "valid"},
		{name: "one agent", edit: func(t *testing.T, m map[string]any) {
			m["agent"] = m["agent"].([]any)[:1]
		}, issues: []want{errAt(fhir.IssueRequired, "AuditEvent.agent")}},
		{name: "agent without who", edit: func(t *testing.T, m map[string]any) { del(t, m, "agent[1].who") },
			issues: []want{errAt(fhir.IssueRequired, "AuditEvent.agent[1].who")}},
		{name: "no recorded time (R4 base 1..1)", edit: func(t *testing.T, m map[string]any) { del(t, m, "recorded") },
			issues: []want{errAt(fhir.IssueRequired, "AuditEvent.recorded")}},
		{name: "child's NHS number with check digit 10", edit: func(t *testing.T, m map[string]any) {
			set(t, m, "agent[0].who.identifier.value", "9990000000")
		}, issues: []want{{fhir.SeverityError, fhir.IssueValue, "AuditEvent.agent[0].who.identifier.value", "INVALID_SEARCH_DATA"}}},
	})
}

func TestValidate_PractitionerRole(t *testing.T) {
	runCases(t, "practitionerrole", "CPIS-PractitionerRole", []validateCase{
		{name: "valid"},
		{name: "no organization", edit: func(t *testing.T, m map[string]any) { del(t, m, "organization") },
			issues: []want{errAt(fhir.IssueRequired, "PractitionerRole.organization")}},
		{name: "role profile id without value", edit: func(t *testing.T, m map[string]any) { del(t, m, "identifier[0].value") },
			issues: []want{errAt(fhir.IssueRequired, "PractitionerRole.identifier[0].value")}},
	})
}

func TestValidate_Errors(t *testing.T) {
	v := newValidator(t)
	flag, err := os.ReadFile("testdata/flag.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		body    []byte
		profile string
		want    []want
	}{
		{"unknown profile", flag, base + "CPIS-Nothing", []want{{fhir.SeverityError, fhir.IssueNotSupported, "", ""}}},
		{"not JSON", []byte(`{"resourceType":`), base + "CPIS-Flag", []want{{fhir.SeverityError, fhir.IssueStructure, "", ""}}},
		{"wrong type", []byte(`{"resourceType":"Patient"}`), base + "CPIS-Flag", []want{{fhir.SeverityError, fhir.IssueInvalid, "Patient", ""}}},
		{"versioned profile URL", flag, base + "CPIS-Flag|0.1.0", nil},
	}
	for _, tt := range tests {
		g := got(v.Validate(tt.body, tt.profile))
		if fmt.Sprint(g) != fmt.Sprint(tt.want) {
			t.Errorf("Validate(%s): got %v, want %v", tt.name, g, tt.want)
		}
	}
}

func TestProfiles(t *testing.T) {
	v := newValidator(t)
	want := []string{"AuditEvent", "CarePlan", "CareTeam", "Communication", "Encounter", "Flag", "Organization", "Patient", "PractitionerRole"}
	if got := v.Profiles(); len(got) != len(want) {
		t.Fatalf("Profiles() = %v, want %d", got, len(want))
	}
	for _, typ := range want {
		url := v.ProfileFor(typ)
		if url != base+"CPIS-"+typ {
			t.Errorf("ProfileFor(%s) = %q, want %q", typ, url, base+"CPIS-"+typ)
			continue
		}
		p := v.Profile(url)
		var sd struct{ ResourceType, URL, Type string }
		if err := json.Unmarshal(p.JSON, &sd); err != nil || sd.ResourceType != "StructureDefinition" || sd.Type != typ {
			t.Errorf("Profile(%s).JSON: %+v, %v; want a StructureDefinition of %s", url, sd, err, typ)
		}
	}
}

// TestValidate_Concurrent validates fixtures from several goroutines at
// once; each must give the same findings as a serial run.
func TestValidate_Concurrent(t *testing.T) {
	v := newValidator(t)
	names := map[string]string{"flag": "CPIS-Flag", "patient": "CPIS-Patient", "careteam": "CPIS-CareTeam", "encounter": "CPIS-Encounter"}
	bodies := map[string][]byte{}
	serial := map[string]string{}
	for name, profile := range names {
		m := fixture(t, name)
		m["id"] = json.Number("1") // not a string: no finding, but a changed body
		b, _ := json.Marshal(m)
		b = bytes.Replace(b, []byte("999000001"), []byte("999000002"), 1)
		bodies[name] = b
		serial[name] = fmt.Sprint(got(v.Validate(b, base+profile)))
	}
	done := make(chan string)
	for name, profile := range names {
		go func() {
			for range 50 {
				if g := fmt.Sprint(got(v.Validate(bodies[name], base+profile))); g != serial[name] {
					done <- fmt.Sprintf("Validate(%s) concurrently: got %s, want %s", name, g, serial[name])
					return
				}
			}
			done <- ""
		}()
	}
	for range names {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
}

func TestAsError(t *testing.T) {
	v := newValidator(t)
	m := fixture(t, "flag")
	if err := profiles.AsError(v.Validate(mustJSON(t, m), base+"CPIS-Flag")); err != nil {
		t.Errorf("AsError(valid Flag) = %v, want nil", err)
	}
	del(t, m, "author")
	err := profiles.AsError(v.Validate(mustJSON(t, m), base+"CPIS-Flag"))
	var fe *fhir.Error
	if !errors.As(err, &fe) || fe.Code != fhir.IssueProcessing || len(fe.Issues) != 1 || fe.Issues[0].Expression[0] != "Flag.author" {
		t.Errorf("AsError(Flag without author) = %#v, want processing with the Flag.author issue", err)
	}
	info := []profiles.Issue{{Issue: fhir.Issue{Severity: fhir.SeverityInformation, Code: profiles.IssueCodeInvalid}}}
	if err := profiles.AsError(info); err != nil {
		t.Errorf("AsError(information only) = %v, want nil", err)
	}
}

func mustJSON(t *testing.T, m map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
