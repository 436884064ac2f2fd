package fhir_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
)

// Test NHS numbers: 999 range, valid Modulus 11 check digit, never issued.
const (
	patchNHS1 = "9990000018"
	patchNHS2 = "9990000026"
)

func patientDoc(members string) string {
	if members == "" {
		return `{"resourceType":"Patient","id":"p1"}`
	}
	return `{"resourceType":"Patient","id":"p1",` + members + `}`
}

// sameJSON reports whether two JSON texts hold equal values.
func sameJSON(tb testing.TB, a, b []byte) bool {
	tb.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		tb.Fatalf("result is not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		tb.Fatalf("expected value is not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

type patchCase struct {
	name     string
	resource string
	patch    string
	want     string         // the patched resource; empty when an error is expected
	code     fhir.IssueType // the expected error code
}

func runPatchCases(t *testing.T, contentType string, cases []patchCase) {
	t.Helper()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.resource)
			got, err := fhir.ApplyPatch(in, contentType, []byte(tt.patch))
			if string(in) != tt.resource {
				t.Errorf("ApplyPatch changed its input to %s", in)
			}
			if tt.want == "" {
				var fe *fhir.Error
				if !errors.As(err, &fe) {
					t.Fatalf("patch %s on %s: got %s, %v; want an *fhir.Error %s", tt.patch, tt.resource, got, err, tt.code)
				}
				if fe.Code != tt.code {
					t.Errorf("patch %s: error code %s (%s), want %s", tt.patch, fe.Code, fe.Message, tt.code)
				}
				for _, secret := range []string{patchNHS1, patchNHS2, "Alex", "Sam", "1920-01-01"} {
					if strings.Contains(fe.Message, secret) {
						t.Errorf("error message %q quotes resource or patch content %q", fe.Message, secret)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("patch %s on %s: %v", tt.patch, tt.resource, err)
			}
			if !sameJSON(t, got, []byte(tt.want)) {
				t.Errorf("patch %s on %s:\n got %s\nwant %s", tt.patch, tt.resource, got, tt.want)
			}
			if _, err := codec.Parse(got); err != nil {
				t.Errorf("patched resource %s is not valid R4: %v", got, err)
			}
		})
	}
}

// TestApplyPatch_JSONPatch runs the examples of RFC 6902 appendix A,
// adapted to FHIR resources, and the error cases.
func TestApplyPatch_JSONPatch(t *testing.T) {
	name := `"name":[{"family":"Testchild","given":["Alex","Sam"]}]`
	runPatchCases(t, "application/json-patch+json", []patchCase{
		{"A.1 add an object member", patientDoc(name),
			`[{"op":"add","path":"/gender","value":"female"}]`,
			patientDoc(name + `,"gender":"female"`), ""},
		{"A.2 add an array element", patientDoc(name),
			`[{"op":"add","path":"/name/0/given/1","value":"Jo"}]`,
			patientDoc(`"name":[{"family":"Testchild","given":["Alex","Jo","Sam"]}]`), ""},
		{"A.3 remove an object member", patientDoc(name + `,"birthDate":"2015-04-01"`),
			`[{"op":"remove","path":"/birthDate"}]`,
			patientDoc(name), ""},
		{"A.4 remove an array element", patientDoc(`"name":[{"given":["Alex","Jo","Sam"]}]`),
			`[{"op":"remove","path":"/name/0/given/1"}]`,
			patientDoc(`"name":[{"given":["Alex","Sam"]}]`), ""},
		{"A.5 replace a value", patientDoc(`"gender":"female"`),
			`[{"op":"replace","path":"/gender","value":"male"}]`,
			patientDoc(`"gender":"male"`), ""},
		{"A.6 move a value", patientDoc(`"name":[{"family":"Testchild","text":"Alex Testchild"}],"contact":[{"name":{"family":"Testparent"}}]`),
			`[{"op":"move","from":"/name/0/text","path":"/contact/0/name/text"}]`,
			patientDoc(`"name":[{"family":"Testchild"}],"contact":[{"name":{"family":"Testparent","text":"Alex Testchild"}}]`), ""},
		{"A.7 move an array element", patientDoc(`"name":[{"given":["Ann","Bea","Cal","Dee"]}]`),
			`[{"op":"move","from":"/name/0/given/1","path":"/name/0/given/3"}]`,
			patientDoc(`"name":[{"given":["Ann","Cal","Dee","Bea"]}]`), ""},
		{"A.8 test a value", patientDoc(name + `,"gender":"female"`),
			`[{"op":"test","path":"/gender","value":"female"},{"op":"test","path":"/name/0/given","value":["Alex","Sam"]},{"op":"replace","path":"/gender","value":"other"}]`,
			patientDoc(name + `,"gender":"other"`), ""},
		{"A.9 test a value: error", patientDoc(name + `,"gender":"female"`),
			`[{"op":"test","path":"/gender","value":"male"},{"op":"replace","path":"/gender","value":"other"}]`,
			"", fhir.IssueProcessing},
		{"A.10 add a nested member object", patientDoc(""),
			`[{"op":"add","path":"/maritalStatus","value":{"text":"Single"}}]`,
			patientDoc(`"maritalStatus":{"text":"Single"}`), ""},
		{"A.11 ignore unrecognised members", patientDoc(""),
			`[{"op":"add","path":"/gender","value":"female","xyz":123}]`,
			patientDoc(`"gender":"female"`), ""},
		{"A.12 add to a nonexistent target", patientDoc(""),
			`[{"op":"add","path":"/maritalStatus/text","value":"Single"}]`,
			"", fhir.IssueProcessing},
		{"A.13 invalid operation", patientDoc(""),
			`[{"op":"merge","path":"/gender","value":"female"}]`,
			"", fhir.IssueInvalid},
		{"A.16 add an array value", patientDoc(name),
			`[{"op":"add","path":"/name/0/given/-","value":"Zed"}]`,
			patientDoc(`"name":[{"family":"Testchild","given":["Alex","Sam","Zed"]}]`), ""},
		{"add to the end of a list", patientDoc(`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + patchNHS1 + `"}]`),
			`[{"op":"add","path":"/identifier/-","value":{"system":"https://example.org/ids","value":"x1"}}]`,
			patientDoc(`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + patchNHS1 + `"},{"system":"https://example.org/ids","value":"x1"}]`), ""},
		{"stored companion nulls", patientDoc(`"name":[{"given":["Ann","Bea"],"_given":[null,{"id":"b"}]}]`),
			`[{"op":"add","path":"/gender","value":"female"}]`,
			patientDoc(`"name":[{"given":["Ann","Bea"],"_given":[{},{"id":"b"}]}],"gender":"female"`), ""},
		{"copy", patientDoc(`"name":[{"family":"Testchild"}]`),
			`[{"op":"copy","from":"/name/0","path":"/name/-"},{"op":"replace","path":"/name/1/use","value":"old"}]`,
			"", fhir.IssueProcessing}, // name[1].use does not exist: replace needs an existing target
		{"copy then add", patientDoc(`"name":[{"family":"Testchild"}]`),
			`[{"op":"copy","from":"/name/0","path":"/name/-"},{"op":"add","path":"/name/1/use","value":"old"}]`,
			patientDoc(`"name":[{"family":"Testchild"},{"family":"Testchild","use":"old"}]`), ""},
		{"test numbers by value", patientDoc(`"multipleBirthInteger":2`),
			`[{"op":"test","path":"/multipleBirthInteger","value":2.0},{"op":"replace","path":"/multipleBirthInteger","value":3}]`,
			patientDoc(`"multipleBirthInteger":3`), ""},
		{"test a string against a number", patientDoc(`"multipleBirthInteger":2`),
			`[{"op":"test","path":"/multipleBirthInteger","value":"2"}]`,
			"", fhir.IssueProcessing},
		{"replace the whole document", patientDoc(`"gender":"female"`),
			`[{"op":"replace","path":"","value":{"resourceType":"Patient","id":"p1","gender":"male"}}]`,
			patientDoc(`"gender":"male"`), ""},
		{"move to the same place", patientDoc(`"gender":"female"`),
			`[{"op":"move","from":"/gender","path":"/gender"}]`,
			patientDoc(`"gender":"female"`), ""},
		{"move into itself", patientDoc(`"maritalStatus":{"text":"Single"}`),
			`[{"op":"move","from":"/maritalStatus","path":"/maritalStatus/coding"}]`,
			"", fhir.IssueInvalid},
		{"remove a missing element", patientDoc(name),
			`[{"op":"remove","path":"/name/5"}]`,
			"", fhir.IssueProcessing},
		{"index with a leading zero", patientDoc(name),
			`[{"op":"remove","path":"/name/0/given/01"}]`,
			"", fhir.IssueProcessing},
		{"index past the end", patientDoc(name),
			`[{"op":"add","path":"/name/0/given/3","value":"Zed"}]`,
			"", fhir.IssueProcessing},
		{"change the id", patientDoc(""),
			`[{"op":"replace","path":"/id","value":"p2"}]`,
			"", fhir.IssueInvalid},
		{"id made an object", patientDoc(""),
			`[{"op":"replace","path":"/id","value":{"x":1}}]`,
			"", fhir.IssueInvalid},
		{"remove the resourceType", patientDoc(""),
			`[{"op":"remove","path":"/resourceType"}]`,
			"", fhir.IssueInvalid},
		{"not an array", patientDoc(""), `{"op":"add","path":"/gender","value":"female"}`, "", fhir.IssueInvalid},
		{"not JSON", patientDoc(""), `[{"op":`, "", fhir.IssueInvalid},
		{"pointer without a slash", patientDoc(""), `[{"op":"add","path":"gender","value":"female"}]`, "", fhir.IssueInvalid},
		{"bad ~ escape", patientDoc(""), `[{"op":"add","path":"/gen~2der","value":"female"}]`, "", fhir.IssueInvalid},
		{"add without a value", patientDoc(""), `[{"op":"add","path":"/gender"}]`, "", fhir.IssueInvalid},
		{"move without from", patientDoc(`"gender":"female"`), `[{"op":"move","path":"/birthDate"}]`, "", fhir.IssueInvalid},
		{"failure does not quote the patch", patientDoc(name),
			`[{"op":"test","path":"/identifier/0/value","value":"` + patchNHS2 + `"}]`,
			"", fhir.IssueProcessing},
	})
}

// TestApplyPatch_JSONPointerEscapes runs RFC 6902 A.14 and A.15 on a
// document with members named "/" and "~1" (ApplyPatch does not validate,
// the caller's codec does).
func TestApplyPatch_JSONPointerEscapes(t *testing.T) {
	doc := `{"resourceType":"Patient","id":"p1","/":9,"~1":10}`
	for _, tt := range []struct {
		name, patch, want string
	}{
		{"A.14 ~01 is ~1", `[{"op":"test","path":"/~01","value":10},{"op":"remove","path":"/~01"}]`, `{"resourceType":"Patient","id":"p1","/":9}`},
		{"~1 is /", `[{"op":"replace","path":"/~1","value":8}]`, `{"resourceType":"Patient","id":"p1","/":8,"~1":10}`},
		{"A.15 string is not number", `[{"op":"test","path":"/~01","value":"10"}]`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fhir.ApplyPatch([]byte(doc), fhir.MediaJSONPatch, []byte(tt.patch))
			if tt.want == "" {
				if fhir.ErrorCode(err) != fhir.IssueProcessing {
					t.Fatalf("patch %s: %s, %v; want a processing error", tt.patch, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("patch %s: %v", tt.patch, err)
			}
			if !sameJSON(t, got, []byte(tt.want)) {
				t.Errorf("patch %s: got %s, want %s", tt.patch, got, tt.want)
			}
		})
	}
}

// FHIRPath Patch builders: a Parameters resource of operations, each made
// of parts given as JSON members.
func fpPatch(ops ...string) string {
	return `{"resourceType":"Parameters","parameter":[` + strings.Join(ops, ",") + `]}`
}

func fpOp(typ, path string, parts ...string) string {
	all := append([]string{`{"name":"type","valueCode":"` + typ + `"}`, `{"name":"path","valueString":` + strconv.Quote(path) + `}`}, parts...)
	return `{"name":"operation","part":[` + strings.Join(all, ",") + `]}`
}

func fpName(n string) string  { return `{"name":"name","valueString":"` + n + `"}` }
func fpValue(m string) string { return `{"name":"value",` + m + `}` }
func fpInt(n string, i int) string {
	return `{"name":"` + n + `","valueInteger":` + strconv.Itoa(i) + `}`
}

// TestApplyPatch_FHIRPathPatch runs the FHIRPath Patch cases of the FHIR
// test suite (fhir-test-cases r4/patch/fhir-path-tests.xml, the examples of
// https://hl7.org/fhir/R4/fhirpatch.html) turned into JSON, and more.
func TestApplyPatch_FHIRPathPatch(t *testing.T) {
	contact := `"contact":[{"name":{"text":"a name"},"gender":"male"}]`
	ids := func(vs ...int) string {
		var parts []string
		for _, v := range vs {
			parts = append(parts, `{"system":"http://example.org","value":"value `+strconv.Itoa(v)+`"}`)
		}
		return `"identifier":[` + strings.Join(parts, ",") + `]`
	}
	ident3 := fpValue(`"valueIdentifier":{"system":"http://example.org","value":"value 3"}`)
	runPatchCases(t, "application/fhir+json", []patchCase{
		{"No Difference", patientDoc(`"birthDate":"1920-01-01"`), fpPatch(), patientDoc(`"birthDate":"1920-01-01"`), ""},
		{"Replace Primitive", patientDoc(`"birthDate":"1920-01-01"`),
			fpPatch(fpOp("replace", "Patient.birthDate", fpValue(`"valueDate":"1930-01-01"`))),
			patientDoc(`"birthDate":"1930-01-01"`), ""},
		{"Delete Primitive", patientDoc(`"birthDate":"1920-01-01"`),
			fpPatch(fpOp("delete", "Patient.birthDate")), patientDoc(""), ""},
		{"Add Primitive", patientDoc(""),
			fpPatch(fpOp("add", "Patient", fpName("birthDate"), fpValue(`"valueDate":"1930-01-01"`))),
			patientDoc(`"birthDate":"1930-01-01"`), ""},
		{"Replace Nested Primitive #1", patientDoc(contact),
			fpPatch(fpOp("replace", "Patient.contact[0].gender", fpValue(`"valueCode":"female"`))),
			patientDoc(`"contact":[{"name":{"text":"a name"},"gender":"female"}]`), ""},
		{"Replace Nested Primitive #2", patientDoc(contact),
			fpPatch(fpOp("replace", "Patient.contact[0].name.text", fpValue(`"valueString":"the name"`))),
			patientDoc(`"contact":[{"name":{"text":"the name"},"gender":"male"}]`), ""},
		{"Delete Nested Primitive #1", patientDoc(contact),
			fpPatch(fpOp("delete", "Patient.contact[0].gender")),
			patientDoc(`"contact":[{"name":{"text":"a name"}}]`), ""},
		{"Delete Nested Primitive #2", patientDoc(contact),
			fpPatch(fpOp("delete", "Patient.contact[0].name.text")),
			patientDoc(`"contact":[{"gender":"male"}]`), ""},
		{"Add Nested Primitive", patientDoc(`"contact":[{"name":{"text":"a name"}}]`),
			fpPatch(fpOp("add", "Patient.contact[0]", fpName("gender"), fpValue(`"valueCode":"male"`))),
			patientDoc(contact), ""},
		{"Add Complex", patientDoc(""),
			fpPatch(fpOp("add", "Patient", fpName("maritalStatus"), fpValue(`"valueCodeableConcept":{"text":"married"}`))),
			patientDoc(`"maritalStatus":{"text":"married"}`), ""},
		{"Replace Complex", patientDoc(`"maritalStatus":{"id":"1","text":"married"}`),
			fpPatch(fpOp("replace", "Patient.maritalStatus", fpValue(`"valueCodeableConcept":{"id":"2","text":"not married"}`))),
			patientDoc(`"maritalStatus":{"id":"2","text":"not married"}`), ""},
		{"Delete Complex", patientDoc(`"maritalStatus":{"text":"married"}`),
			fpPatch(fpOp("delete", "Patient.maritalStatus")), patientDoc(""), ""},
		{"Add Anonymous Type", patientDoc(""),
			fpPatch(fpOp("add", "Patient", fpName("contact"), `{"name":"value","part":[{"name":"name","valueHumanName":{"text":"a name"}}]}`)),
			patientDoc(`"contact":[{"name":{"text":"a name"}}]`), ""},
		{"Delete Anonymous Type", patientDoc(`"contact":[{"name":{"text":"a name"}}]`),
			fpPatch(fpOp("delete", "Patient.contact[0]")), patientDoc(""), ""},
		{"List unchanged, contents changed", patientDoc(`"identifier":[{"id":"a","system":"http://example.org","value":"value 1"},{"id":"b","system":"http://example.org","value":"value 2"}]`),
			fpPatch(fpOp("replace", "Patient.identifier[0].value", fpValue(`"valueString":"value 2"`)),
				fpOp("replace", "Patient.identifier[1].value", fpValue(`"valueString":"value 1"`))),
			patientDoc(`"identifier":[{"id":"a","system":"http://example.org","value":"value 2"},{"id":"b","system":"http://example.org","value":"value 1"}]`), ""},
		{"Add to list", patientDoc(ids(1, 2)),
			fpPatch(fpOp("insert", "Patient.identifier", fpInt("index", 2), ident3)), patientDoc(ids(1, 2, 3)), ""},
		{"Insert in list #1", patientDoc(ids(1, 2)),
			fpPatch(fpOp("insert", "Patient.identifier", fpInt("index", 1), ident3)), patientDoc(ids(1, 3, 2)), ""},
		{"Insert in list #2", patientDoc(ids(1, 2)),
			fpPatch(fpOp("insert", "Patient.identifier", fpInt("index", 0), ident3)), patientDoc(ids(3, 1, 2)), ""},
		{"Delete from List #1", patientDoc(ids(1, 2, 3)), fpPatch(fpOp("delete", "Patient.identifier[0]")), patientDoc(ids(2, 3)), ""},
		{"Delete from List #2", patientDoc(ids(1, 2, 3)), fpPatch(fpOp("delete", "Patient.identifier[1]")), patientDoc(ids(1, 3)), ""},
		{"Delete from List #3", patientDoc(ids(1, 2, 3)), fpPatch(fpOp("delete", "Patient.identifier[2]")), patientDoc(ids(1, 2)), ""},
		{"Reorder List #1", patientDoc(ids(1, 2, 3, 4)),
			fpPatch(fpOp("move", "Patient.identifier", fpInt("source", 3), fpInt("destination", 1))), patientDoc(ids(1, 4, 2, 3)), ""},
		{"Reorder List #2", patientDoc(ids(1, 2, 3, 4)),
			fpPatch(fpOp("move", "Patient.identifier", fpInt("source", 3), fpInt("destination", 0))), patientDoc(ids(4, 1, 2, 3)), ""},
		{"Reorder List #3", patientDoc(ids(1, 2, 3, 4)),
			fpPatch(fpOp("move", "Patient.identifier", fpInt("source", 3), fpInt("destination", 2))), patientDoc(ids(1, 2, 4, 3)), ""},
		{"Reorder List #4", patientDoc(ids(1, 2, 3, 4)),
			fpPatch(fpOp("move", "Patient.identifier", fpInt("source", 0), fpInt("destination", 3))), patientDoc(ids(2, 3, 4, 1)), ""},
		{"Reorder List #5 (two moves)", patientDoc(ids(1, 2, 3, 4)),
			fpPatch(fpOp("move", "Patient.identifier", fpInt("source", 1), fpInt("destination", 0)),
				fpOp("move", "Patient.identifier", fpInt("source", 3), fpInt("destination", 2))),
			patientDoc(ids(2, 1, 4, 3)), ""},

		// Beyond the test suite.
		{"add to a list that does not exist yet", patientDoc(""),
			fpPatch(fpOp("add", "Patient", fpName("identifier"), fpValue(`"valueIdentifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"`+patchNHS1+`"}`))),
			patientDoc(`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + patchNHS1 + `"}]`), ""},
		{"insert into an empty list", patientDoc(`"gender":"female"`),
			fpPatch(fpOp("insert", "Patient.identifier", fpInt("index", 0), ident3)), patientDoc(`"gender":"female",` + ids(3)), ""},
		{"select with where()", patientDoc(`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + patchNHS1 + `"},{"system":"http://example.org","value":"value 2"}]`),
			fpPatch(fpOp("replace", "Patient.identifier.where(system='https://fhir.nhs.uk/Id/nhs-number').value", fpValue(`"valueString":"`+patchNHS2+`"`))),
			patientDoc(`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + patchNHS2 + `"},{"system":"http://example.org","value":"value 2"}]`), ""},
		{"delete what is not there", patientDoc(`"gender":"female"`),
			fpPatch(fpOp("delete", "Patient.birthDate")), patientDoc(`"gender":"female"`), ""},
		{"delete a primitive list item with its extension", patientDoc(`"name":[{"given":["Ann","Bea"],"_given":[null,{"extension":[{"url":"http://example.org/ext","valueString":"x"}]}]}]`),
			fpPatch(fpOp("delete", "Patient.name[0].given[0]")),
			patientDoc(`"name":[{"given":["Bea"],"_given":[{"extension":[{"url":"http://example.org/ext","valueString":"x"}]}]}]`), ""},
		// google/fhir stores a companion list item without id or extension
		// as null but parses only {} (see fillCompanions).
		{"move a primitive list item with its id", patientDoc(`"name":[{"given":["Ann","Bea","Cal"],"_given":[null,{"id":"b"},null]}]`),
			fpPatch(fpOp("move", "Patient.name[0].given", fpInt("source", 1), fpInt("destination", 2))),
			patientDoc(`"name":[{"given":["Ann","Cal","Bea"],"_given":[{},{},{"id":"b"}]}]`), ""},
		{"insert into a primitive list with ids", patientDoc(`"name":[{"given":["Ann","Bea"],"_given":[null,{"id":"b"}]}]`),
			fpPatch(fpOp("insert", "Patient.name[0].given", fpInt("index", 0), fpValue(`"valueString":"Zoe"`))),
			patientDoc(`"name":[{"given":["Zoe","Ann","Bea"],"_given":[{},{},{"id":"b"}]}]`), ""},
		{"add an extension to a primitive", patientDoc(`"birthDate":"2015-04-01"`),
			fpPatch(fpOp("add", "Patient.birthDate", fpName("extension"),
				`{"name":"value","part":[{"name":"url","valueUri":"http://hl7.org/fhir/StructureDefinition/patient-birthTime"},{"name":"value","valueDateTime":"2015-04-01T08:30:00Z"}]}`)),
			patientDoc(`"birthDate":"2015-04-01","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"2015-04-01T08:30:00Z"}]}`), ""},
		{"replace a choice element with another type", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},"valueQuantity":{"value":12.5,"unit":"kg"}}`,
			fpPatch(fpOp("replace", "Observation.value", fpValue(`"valueString":"not weighed"`))),
			`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},"valueString":"not weighed"}`, ""},
		{"add a choice element by its base name", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"}}`,
			fpPatch(fpOp("add", "Observation", fpName("value"), fpValue(`"valueQuantity":{"value":12.5,"unit":"kg"}`))),
			`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},"valueQuantity":{"value":12.5,"unit":"kg"}}`, ""},
		{"add to a contained resource", `{"resourceType":"Patient","id":"p1","contained":[{"resourceType":"Organization","id":"org"}],"managingOrganization":{"reference":"#org"}}`,
			fpPatch(fpOp("add", "Patient.managingOrganization.resolve()", fpName("name"), fpValue(`"valueString":"Testshire Council"`))),
			`{"resourceType":"Patient","id":"p1","contained":[{"resourceType":"Organization","id":"org","name":"Testshire Council"}],"managingOrganization":{"reference":"#org"}}`, ""},

		// Errors.
		{"replace what is not there", patientDoc(""),
			fpPatch(fpOp("replace", "Patient.birthDate", fpValue(`"valueDate":"1930-01-01"`))), "", fhir.IssueProcessing},
		{"replace several elements", patientDoc(ids(1, 2)),
			fpPatch(fpOp("replace", "Patient.identifier", ident3)), "", fhir.IssueProcessing},
		{"add an element that exists", patientDoc(`"birthDate":"1920-01-01"`),
			fpPatch(fpOp("add", "Patient", fpName("birthDate"), fpValue(`"valueDate":"1930-01-01"`))), "", fhir.IssueProcessing},
		{"add an element the type does not have", patientDoc(""),
			fpPatch(fpOp("add", "Patient", fpName("colour"), fpValue(`"valueString":"red"`))), "", fhir.IssueProcessing},
		{"insert beyond the end", patientDoc(ids(1)),
			fpPatch(fpOp("insert", "Patient.identifier", fpInt("index", 2), ident3)), "", fhir.IssueProcessing},
		{"move beyond the end", patientDoc(ids(1, 2)),
			fpPatch(fpOp("move", "Patient.identifier", fpInt("source", 2), fpInt("destination", 0))), "", fhir.IssueProcessing},
		{"change the id", patientDoc(""),
			fpPatch(fpOp("replace", "Patient.id", fpValue(`"valueId":"p2"`))), "", fhir.IssueInvalid},
		{"delete the resource", patientDoc(""), fpPatch(fpOp("delete", "Patient")), "", fhir.IssueInvalid},
		{"a resource that resolve() does not hold", patientDoc(`"generalPractitioner":[{"reference":"Practitioner/gp1"}]`),
			fpPatch(fpOp("add", "Patient.generalPractitioner.resolve()", fpName("active"), fpValue(`"valueBoolean":true`))), "", fhir.IssueProcessing},
		{"path that does not parse", patientDoc(""),
			fpPatch(fpOp("delete", "Patient.name.where(")), "", fhir.IssueInvalid},
		{"unknown type", patientDoc(""), fpPatch(fpOp("merge", "Patient")), "", fhir.IssueInvalid},
		{"missing part", patientDoc(""), fpPatch(fpOp("insert", "Patient.identifier", ident3)), "", fhir.IssueInvalid},
		{"unknown part", patientDoc(""), fpPatch(fpOp("delete", "Patient.gender", `{"name":"colour","valueString":"red"}`)), "", fhir.IssueInvalid},
		{"not Parameters", patientDoc(""), `{"resourceType":"Patient"}`, "", fhir.IssueInvalid},
		{"a JSON Patch sent as FHIR JSON", patientDoc(""), `[{"op":"remove","path":"/gender"}]`, "", fhir.IssueInvalid},
		{"failure does not quote the path", patientDoc(ids(1)),
			fpPatch(fpOp("replace", "Patient.identifier.where(value='"+patchNHS1+"')", ident3)), "", fhir.IssueProcessing},
	})
}

func TestApplyPatch_MediaType(t *testing.T) {
	_, err := fhir.ApplyPatch([]byte(patientDoc("")), "application/xml-patch+xml", []byte(`<diff/>`))
	if fhir.ErrorCode(err) != fhir.IssueNotSupported {
		t.Errorf("XML patch: %v, want a not-supported error", err)
	}
	for ct, want := range map[string]fhir.PatchFormat{
		"application/json-patch+json":          fhir.PatchJSON,
		"application/fhir+json; charset=utf-8": fhir.PatchFHIRPath,
		"application/json":                     fhir.PatchFHIRPath,
	} {
		if got, ok := fhir.PatchFormatOf(ct); !ok || got != want {
			t.Errorf("PatchFormatOf(%q) = %v, %v; want %v", ct, got, ok, want)
		}
	}
	if _, ok := fhir.PatchFormatOf("text/plain"); ok {
		t.Errorf("PatchFormatOf(text/plain) ok, want not a patch format")
	}
}

func TestBundlePatch(t *testing.T) {
	// base64 of [{"op":"remove","path":"/gender"}], worked out with base64(1).
	binary := `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"W3sib3AiOiJyZW1vdmUiLCJwYXRoIjoiL2dlbmRlciJ9XQ=="}`
	ct, patch, err := fhir.BundlePatch([]byte(binary))
	if err != nil || ct != fhir.MediaJSONPatch || string(patch) != `[{"op":"remove","path":"/gender"}]` {
		t.Errorf("BundlePatch(Binary) = %q, %q, %v; want the JSON Patch", ct, patch, err)
	}
	params := fpPatch(fpOp("delete", "Patient.gender"))
	ct, patch, err = fhir.BundlePatch([]byte(params))
	if err != nil || string(patch) != params {
		t.Errorf("BundlePatch(Parameters) = %q, %q, %v; want the Parameters", ct, patch, err)
	}
	if f, ok := fhir.PatchFormatOf(ct); !ok || f != fhir.PatchFHIRPath {
		t.Errorf("BundlePatch(Parameters) media type %q, want a FHIRPath Patch type", ct)
	}
	for _, bad := range []struct {
		body string
		code fhir.IssueType
	}{
		{`{"resourceType":"Binary","contentType":"text/plain","data":"eA=="}`, fhir.IssueNotSupported},
		{`{"resourceType":"Binary","contentType":"application/json-patch+json","data":"%%%"}`, fhir.IssueInvalid},
		{patientDoc(""), fhir.IssueInvalid},
	} {
		if _, _, err := fhir.BundlePatch([]byte(bad.body)); fhir.ErrorCode(err) != bad.code {
			t.Errorf("BundlePatch(%s): %v, want %s", bad.body, err, bad.code)
		}
	}
}

func BenchmarkApplyPatch_FHIRPathReplace(b *testing.B) {
	res := []byte(patientDoc(`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + patchNHS1 + `"}],"name":[{"family":"Testchild","given":["Alex"]}],"gender":"female","birthDate":"2015-04-01"`))
	patch := []byte(fpPatch(fpOp("replace", "Patient.birthDate", fpValue(`"valueDate":"2015-04-02"`))))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fhir.ApplyPatch(res, "application/fhir+json", patch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyPatch_JSONPatchReplace(b *testing.B) {
	res := []byte(patientDoc(`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + patchNHS1 + `"}],"name":[{"family":"Testchild","given":["Alex"]}],"gender":"female","birthDate":"2015-04-01"`))
	patch := []byte(`[{"op":"test","path":"/gender","value":"female"},{"op":"replace","path":"/birthDate","value":"2015-04-02"}]`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fhir.ApplyPatch(res, fhir.MediaJSONPatch, patch); err != nil {
			b.Fatal(err)
		}
	}
}
