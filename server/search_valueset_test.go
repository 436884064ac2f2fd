package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/server"
)

const (
	vsGender = "http://hl7.org/fhir/ValueSet/administrative-gender"
	vsFlag   = "http://hl7.org/fhir/ValueSet/flag-status"
)

// valueSetData is cpisData plus a Flag whose category is outside the plan
// types, a Flag without a category (neither is a CP-IS Flag) and a Patient
// without a gender.
func valueSetData(tb testing.TB, ts *testServer) {
	tb.Helper()
	cpisData(tb, ts)
	put(tb, ts, "Flag/other", `{"resourceType":"Flag","id":"other","status":"active",`+
		`"category":[{"coding":[{"system":"`+snomed+`","code":"183932001"}]}],"code":{"text":"Other alert"},"subject":{"reference":"Patient/c"}}`)
	put(tb, ts, "Flag/nocat", `{"resourceType":"Flag","id":"nocat","status":"active","code":{"text":"No category"},"subject":{"reference":"Patient/c"}}`)
	put(tb, ts, "Patient/d", `{"resourceType":"Patient","id":"d","birthDate":"2016-01-01"}`)
	put(tb, ts, "Encounter/e5", `{"resourceType":"Encounter","id":"e5","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},`+
		`"serviceType":{"coding":[{"system":"`+snomed+`","code":"310000008"}]},"subject":{"reference":"Patient/c"}}`)
}

// TestSearch_ValueSetModifiers checks the token modifiers :in and :not-in
// on the embedded value sets; each expected answer was worked out by hand
// from valueSetData (the plan types value set holds CPP, LAC and the
// unborn plan; every Patient but d has gender female).
func TestSearch_ValueSetModifiers(t *testing.T) {
	ts := startServer(t, server.Config{})
	valueSetData(t, ts)
	q := url.QueryEscape
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"category in the plan types", "Flag?category:in=" + q(vsPlan), []string{"Flag/fa", "Flag/fb", "Flag/fb2"}},
		{"with the version held", "Flag?category:in=" + q(vsPlan+"|1.0.0"), []string{"Flag/fa", "Flag/fb", "Flag/fb2"}},
		{"category not in the plan types, no category included", "Flag?category:not-in=" + q(vsPlan), []string{"Flag/other", "Flag/nocat"}},
		{"in ANDed with another parameter", "Flag?category:in=" + q(vsPlan) + "&status=active", []string{"Flag/fa", "Flag/fb2"}},
		{"two value sets ORed", "Flag?status:in=" + q(vsGender+","+vsFlag), []string{"Flag/fa", "Flag/fb", "Flag/fb2", "Flag/other", "Flag/nocat"}},
		// gender is a code element, indexed without a system: it matches
		// by code.
		{"gender in", "Patient?gender:in=" + q(vsGender), []string{"Patient/a", "Patient/b", "Patient/c"}},
		{"gender not in: only the Patient without one", "Patient?gender:not-in=" + q(vsGender), []string{"Patient/d"}},
		{"gender not in a value set of other codes", "Patient?gender:not-in=" + q(vsFlag), []string{"Patient/a", "Patient/b", "Patient/c", "Patient/d"}},
		{"gender in a value set of other codes", "Patient?gender:in=" + q(vsFlag), nil},
		{"chained", "Flag?patient.gender:not-in=" + q(vsGender), nil},
		{"chained, in", "Encounter?patient.gender:in=" + q(vsGender) + "&subject=Patient/c", []string{"Encounter/e4", "Encounter/e5"}},
		{"reverse chain", "Patient?_has:Flag:patient:category:in=" + q(vsPlan), []string{"Patient/a", "Patient/b"}},
		// The care setting types: a value set of 419 SNOMED CT codes.
		{"large value set", "Encounter?service-type:in=" + q("https://fhir.hl7.org.uk/ValueSet/UKCore-CareSettingType"), []string{"Encounter/e5"}},
		{"reverse chain, not in", "Patient?_has:Flag:patient:category:not-in=" + q(vsPlan), []string{"Patient/c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, h := range [][]string{nil, {"Prefer", "handling=strict"}} {
				b := getBundle(t, ts.Base+"/"+tc.query, h...)
				if got := b.ids("match"); !slices.Equal(got, tc.want) {
					t.Errorf("GET %s %q: matches %q, want %q", tc.query, h, got, tc.want)
				}
				if got := b.ids("outcome"); len(got) != 0 {
					t.Errorf("GET %s %q: an outcome entry (something ignored): %s", tc.query, h, b.Entry)
				}
			}
		})
	}
}

// TestSearch_ValueSetModifierErrors checks that an unknown value set, an
// unknown version and a value that is not a canonical URL are 400 in both
// modes, naming the parameter and not echoing the value.
func TestSearch_ValueSetModifierErrors(t *testing.T) {
	ts := startServer(t, server.Config{})
	valueSetData(t, ts)
	for _, tc := range []struct{ key, value string }{
		{"category:in", "https://example.org/ValueSet/secret-unknown"},
		{"category:not-in", "https://example.org/ValueSet/secret-unknown"},
		{"category:in", vsPlan + "|9.9.9-secret"},
		{"category:in", "secret-not-a-url"},
		{"category:in", vsPlan + ",https://example.org/ValueSet/secret-unknown"},
		{"patient.gender:in", "https://example.org/ValueSet/secret-unknown"},
	} {
		for _, h := range [][]string{nil, {"Prefer", "handling=strict"}} {
			u := ts.Base + "/Flag?" + url.Values{tc.key: {tc.value}}.Encode()
			res := do(t, http.MethodGet, u, "", h...).wantStatus(t, http.StatusBadRequest)
			_, diag, _ := res.outcome(t)
			if !strings.Contains(diag, tc.key) || strings.Contains(diag, "secret") {
				t.Errorf("GET Flag?%s=%s %q: diagnostics %q, want the parameter named and the value not repeated", tc.key, tc.value, h, diag)
			}
		}
	}
	// :in applies to tokens only.
	do(t, http.MethodGet, ts.Base+"/Flag?date:in="+url.QueryEscape(vsPlan), "").wantStatus(t, http.StatusBadRequest)
}

// TestSearch_ValueSetModifierPaging pages an :in search: the sealed cursor
// carries the search, which is expanded again on every page.
func TestSearch_ValueSetModifierPaging(t *testing.T) {
	ts := startServer(t, server.Config{})
	valueSetData(t, ts)
	next := ts.Base + "/Flag?category:in=" + url.QueryEscape(vsPlan) + "&_count=1"
	var got []string
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		b := getBundle(t, next)
		got = append(got, b.ids("match")...)
		if pages > 0 && strings.Contains(next, "ValueSet") {
			t.Errorf("next link %s carries the search", next)
		}
		next = b.link("next")
	}
	if want := []string{"Flag/fa", "Flag/fb", "Flag/fb2"}; !slices.Equal(got, want) {
		t.Errorf("paged matches %q, want %q", got, want)
	}
}

// TestSearch_ValueSetModifierInBundles checks :in in a batch's search entry
// and in a transaction's conditional create.
func TestSearch_ValueSetModifierInBundles(t *testing.T) {
	ts := startServer(t, server.Config{})
	valueSetData(t, ts)
	in := url.QueryEscape(vsPlan)
	body := `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Flag?category:in=` + in + `&status=active"}},
		{"request":{"method":"GET","url":"Flag?category:in=https://example.org/ValueSet/unknown"}}]}`
	b := postBundle(t, ts, body, "batch-response")
	if got, want := strings.Join(b.statuses(), " "), "200 400"; got != want {
		t.Fatalf("statuses %s, want %s", got, want)
	}
	var set searchBundle
	if err := json.Unmarshal(b.Entry[0].Resource, &set); err != nil {
		t.Fatalf("search entry: %v", err)
	}
	if got, want := set.ids("match"), []string{"Flag/fa", "Flag/fb2"}; !slices.Equal(got, want) {
		t.Errorf("search entry: matches %q, want %q", got, want)
	}

	// A conditional create whose condition uses :not-in: Patient d has no
	// gender, so it matches and nothing is created.
	body = `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":{"resourceType":"Patient","birthDate":"2016-01-01"},
		 "request":{"method":"POST","url":"Patient","ifNoneExist":"birthdate=2016-01-01&gender:not-in=` + url.QueryEscape(vsGender) + `"}}]}`
	tb := postBundle(t, ts, body, "transaction-response")
	if got := tb.Entry[0].Response; !strings.HasPrefix(got.Status, "200") || !strings.Contains(got.Location, "Patient/d/") {
		t.Errorf("conditional create: status %s location %s, want 200 and Patient/d", got.Status, got.Location)
	}
}
