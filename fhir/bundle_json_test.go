package fhir

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestBundle_JSONAsMarshal: Bundle.JSON writes the bytes json.Marshal
// writes, for every field, escapes in strings and resources that are not
// compact or hold HTML characters.
func TestBundle_JSONAsMarshal(t *testing.T) {
	total := 3
	zero := 0
	cases := []*Bundle{
		{ResourceType: "Bundle", Type: "searchset"},
		{ResourceType: "Bundle", ID: "b1", Meta: &BundleMeta{}, Type: "searchset", Total: &zero},
		{ResourceType: "Bundle", ID: "b2", Meta: &BundleMeta{LastUpdated: "2026-12-01T10:00:00.000Z"}, Type: "searchset", Total: &total,
			Link: []BundleLink{{Relation: "self", URL: "http://x/fhir/Flag?a=b&c=<d>"}, {Relation: "next", URL: "http://x/fhir/Flag?_cursor=abc\u2028\"q\"\\ \x01 \xff é"}},
			Entry: []BundleEntry{
				{FullURL: "http://x/fhir/Flag/1", Resource: json.RawMessage(`{"resourceType":"Flag","id":"1","text":{"div":"<div>a &amp; b</div>"}}`), Search: &BundleSearch{Mode: "match"}},
				{Resource: json.RawMessage("{ \"resourceType\" : \"Patient\",\n \"name\":[{\"text\":\"A \\\"B\\\" \u2029\"}] }"), Search: &BundleSearch{}},
				{Resource: json.RawMessage(`{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"a\\nb \\u0041"}]}`), Search: &BundleSearch{Mode: "outcome"}},
				{Request: &BundleRequest{Method: "POST", URL: "Patient?identifier=x|1"}, Response: &BundleResponse{Status: "201 Created", Location: "Patient/1/_history/1", Etag: `W/"1"`, LastModified: "2026-12-01T10:00:00.000Z",
					Outcome: json.RawMessage(`{"resourceType":"OperationOutcome","issue":[]}`)}},
				{Response: &BundleResponse{Status: "200 OK"}},
				{FullURL: "urn:uuid:1"},
			}},
	}
	for i, b := range cases {
		want, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func BenchmarkBundle_JSON(b *testing.B) {
	total := 1
	res := json.RawMessage(`{"resourceType":"Flag","id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","meta":{"versionId":"1","lastUpdated":"2026-12-01T10:00:00.000Z","profile":["https://fhir.nhs.uk/StructureDefinition/CPIS-Flag"]},"status":"active","category":[{"coding":[{"system":"http://snomed.info/sct","code":"1141000000108","display":"Looked after child"}]}],"code":{"coding":[{"system":"http://snomed.info/sct","code":"1141000000108"}]},"subject":{"reference":"Patient/1","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}},"period":{"start":"2025-01-01"},"author":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}}}`)
	bu := &Bundle{ResourceType: "Bundle", ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", Meta: &BundleMeta{LastUpdated: "2026-12-01T10:00:00.000Z"}, Type: "searchset", Total: &total,
		Link:  []BundleLink{{Relation: "self", URL: "http://127.0.0.1:8080/fhir/Flag?_cursor=kmCM1qr1wuF02urnpoPUC91HpjLTmflU-c_Z9_qSvAU8FTTUKtAkQKWbE7dOqQuUWM3HQbX4tF"}},
		Entry: []BundleEntry{{FullURL: "http://127.0.0.1:8080/fhir/Flag/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Resource: res, Search: &BundleSearch{Mode: "match"}}}}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(bu)
		}
	})
	b.Run("JSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bu.JSON()
		}
	})
}
