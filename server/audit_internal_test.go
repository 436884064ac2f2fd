package server

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestNHSNumbersIn: the query scan finds what the regular expression over
// the decoded bars found before it.
func TestNHSNumbersIn(t *testing.T) {
	re := regexp.MustCompile(`nhs-number\|([0-9]{10})`)
	for _, q := range []string{
		"",
		"subject:identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9990000018&status=active",
		"patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018",
		"identifier=https://fhir.nhs.uk/Id/nhs-number%7c9990000026,https://fhir.nhs.uk/Id/nhs-number|9990000034",
		"identifier=nhs-number|999000001&x=nhs-number|99900000181",
		"identifier=nhs-number%7C12345abcde&nhs-number&nhs-numbernhs-number|9990000042",
		"a=nhs-number%7",
	} {
		var want []string
		for _, m := range re.FindAllStringSubmatch(strings.ReplaceAll(strings.ReplaceAll(q, "%7C", "|"), "%7c", "|"), -1) {
			want = append(want, m[1])
		}
		if got := nhsNumbersIn(q); !slices.Equal(got, want) {
			t.Errorf("nhsNumbersIn(%q) = %q, want %q", q, got, want)
		}
	}
}

// TestAuditRecord_JSONAsMarshal: the record's JSON is json.Marshal's, for
// every field set or empty and strings that need escaping.
func TestAuditRecord_JSONAsMarshal(t *testing.T) {
	yes, no := true, false
	for i, r := range []auditRecord{
		{},
		{Time: "2026-12-01T10:00:00.000Z", RequestID: "r1", Interaction: "search-type", Method: "GET", Path: "/Flag", Unscheduled: &no},
		{Time: "2026-12-01T10:00:00.000Z", RequestID: "r2", Subject: "u<1>", ClientID: "c&d", Role: "clinician-unscheduled", ODS: "R9A01", SDSRole: "R8000", TokenID: "j\"t\\i",
			Interaction: "search-type", Method: "GET", Path: "/Flag", Type: "Flag", ID: "x", Query: "subject%3Aidentifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9990000018\u2028\x01\xff",
			Status: 200, Unscheduled: &yes, Patients: []string{"9990000018", "Patient/p1"}, Resources: []string{"Flag/f1/_history/1"}, Written: []string{"AuditEvent/a1/_history/1 create"}},
	} {
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestPageState_JSONAsMarshal: a sealed page state's JSON is json.Marshal's.
func TestPageState_JSONAsMarshal(t *testing.T) {
	for i, st := range []pageState{
		{},
		{Query: "a=b"},
		{Type: "Flag", Compartment: "Patient/1", Query: "subject%3Aidentifier=x%7C1&<>", Cursor: []byte{0, 1, 2, 250, 251, 252, 253}, Backward: true},
		{Type: "Patient", Query: "", Cursor: []byte("k")},
	} {
		want, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
