package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server"
)

const (
	nhsSys   = "https://fhir.nhs.uk/Id/nhs-number"
	snomed   = "http://snomed.info/sct"
	cpp      = "342191000000101" // Subject to child protection plan
	lac      = "764841000000100" // Looked after child
	flagCode = `{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient","code":"child-protection-information-system-flag"}]}`
)

// searchBundle is the part of a searchset Bundle the tests read.
type searchBundle struct {
	ResourceType string
	Type         string
	Total        *int
	Link         []struct{ Relation, URL string }
	Entry        []struct {
		FullURL  string
		Resource json.RawMessage
		Search   struct{ Mode string }
	}
}

func (b *searchBundle) ids(mode string) []string {
	var out []string
	for _, e := range b.Entry {
		if e.Search.Mode != mode {
			continue
		}
		var r struct{ ResourceType, ID string }
		json.Unmarshal(e.Resource, &r)
		out = append(out, r.ResourceType+"/"+r.ID)
	}
	return out
}

func (b *searchBundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

func getBundle(tb testing.TB, u string, headers ...string) *searchBundle {
	tb.Helper()
	res := do(tb, http.MethodGet, u, "", headers...).wantStatus(tb, http.StatusOK)
	return decodeBundle(tb, res)
}

func decodeBundle(tb testing.TB, res *response) *searchBundle {
	tb.Helper()
	var b searchBundle
	if err := json.Unmarshal(res.Body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "searchset" {
		tb.Fatalf("%s: body %s, want a searchset Bundle", res.Request.URL, res.Body)
	}
	return &b
}

func put(tb testing.TB, ts *testServer, ref, body string) {
	tb.Helper()
	res := do(tb, http.MethodPut, ts.Base+"/"+ref, body)
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		tb.Fatalf("PUT %s: status %d; body %s", ref, res.StatusCode, res.Body)
	}
}

func flagJSON(id, patient, nhs, status, plan, start, end string) string {
	period := `"start":"` + start + `"`
	if end != "" {
		period += `,"end":"` + end + `"`
	}
	return `{"resourceType":"Flag","id":"` + id + `","status":"` + status + `",` +
		`"category":[{"coding":[{"system":"` + snomed + `","code":"` + plan + `"}]}],"code":` + flagCode + `,` +
		`"subject":{"reference":"Patient/` + patient + `","identifier":{"system":"` + nhsSys + `","value":"` + nhs + `"}},` +
		`"period":{` + period + `},"author":{"reference":"Organization/la-1"}}`
}

// cpisData loads a small CP-IS data set: a council, three children, their
// flags, a care team in the national shape (subject by identifier only),
// attendances and notifications.
func cpisData(tb testing.TB, ts *testServer) {
	tb.Helper()
	put(tb, ts, "Organization/la-1", `{"resourceType":"Organization","id":"la-1","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"LA001"}],"name":"Example Council"}`)
	put(tb, ts, "Organization/la-2", `{"resourceType":"Organization","id":"la-2","name":"Other Council"}`)
	put(tb, ts, "Patient/a", patientJSON("a", nhs1))
	put(tb, ts, "Patient/b", patientJSON("b", nhs2))
	put(tb, ts, "Patient/c", patientJSON("c", "9990000034"))
	put(tb, ts, "Flag/fa", flagJSON("fa", "a", nhs1, "active", cpp, "2025-06-01", ""))
	put(tb, ts, "Flag/fb", flagJSON("fb", "b", nhs2, "inactive", lac, "2024-01-10", "2026-01-31"))
	put(tb, ts, "Flag/fb2", flagJSON("fb2", "b", nhs2, "active", cpp, "2026-02-01", ""))
	put(tb, ts, "CareTeam/ta", `{"resourceType":"CareTeam","id":"ta","status":"active","category":[{"coding":[{"system":"`+snomed+`","code":"`+cpp+`"}]}],`+
		`"name":"Example Council","subject":{"identifier":{"system":"`+nhsSys+`","value":"`+nhs1+`"}},`+
		`"telecom":[{"system":"phone","value":"0113 496 0000","use":"work"},{"system":"phone","value":"0113 496 0999","use":"mobile"}],"period":{"start":"2025-06-01"}}`)
	for i, e := range []struct{ id, patient, start, end string }{
		{"e1", "a", "2026-01-15T10:00:00Z", "2026-01-15T12:00:00Z"},
		{"e2", "a", "2026-02-20T23:30:00+00:00", "2026-02-20T23:50:00+00:00"},
		{"e3", "b", "2026-02-21T01:00:00+01:00", "2026-02-21T01:30:00+01:00"},
		{"e4", "c", "2026-02-25", "2026-02-25"},
	} {
		put(tb, ts, "Encounter/"+e.id, `{"resourceType":"Encounter","id":"`+e.id+`","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},`+
			`"subject":{"reference":"Patient/`+e.patient+`"},"period":{"start":"`+e.start+`","end":"`+e.end+`"},"serviceProvider":{"reference":"Organization/site-`+fmt.Sprint(i)+`"}}`)
	}
	for _, m := range []struct{ id, patient, recipient, sent string }{
		{"m1", "a", "la-1", "2026-01-15T10:05:00Z"}, {"m2", "a", "la-1", "2026-02-20T23:35:00Z"}, {"m3", "b", "la-2", "2026-02-21T00:05:00Z"},
	} {
		put(tb, ts, "Communication/"+m.id, `{"resourceType":"Communication","id":"`+m.id+`","status":"completed",`+
			`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/communication-category","code":"notification"}]}],`+
			`"subject":{"reference":"Patient/`+m.patient+`"},"recipient":[{"reference":"Organization/`+m.recipient+`"}],"sent":"`+m.sent+`",`+
			`"payload":[{"contentString":"A child with a CP-IS record attended unscheduled care."}]}`)
	}
}

// TestSearch_CPIS runs the searches of the CP-IS workflow; each expected
// answer was worked out by hand from cpisData.
func TestSearch_CPIS(t *testing.T) {
	ts := startServer(t, server.Config{})
	cpisData(t, ts)
	nhs := url.QueryEscape(nhsSys + "|")
	for _, tc := range []struct {
		name, query  string
		want, wantIn []string
	}{
		{"flag by NHS number (:identifier)", "Flag?subject:identifier=" + nhs + nhs1, []string{"Flag/fa"}, nil},
		{"flag by NHS number and status", "Flag?subject:identifier=" + nhs + nhs2 + "&status=active", []string{"Flag/fb2"}, nil},
		{"flag by NHS number, inactive", "Flag?subject:identifier=" + nhs + nhs2 + "&status=inactive", []string{"Flag/fb"}, nil},
		{"flag by NHS number (chained)", "Flag?patient.identifier=" + nhs + nhs2, []string{"Flag/fb", "Flag/fb2"}, nil},
		{"flag by chained identifier, code only", "Flag?patient.identifier=" + nhs1, []string{"Flag/fa"}, nil},
		{"flag by patient id", "Flag?patient=b&status=active", []string{"Flag/fb2"}, nil},
		{"flag by plan type", "Flag?category=" + url.QueryEscape(snomed+"|"+lac), []string{"Flag/fb"}, nil},
		{"flag by plan type, code only", "Flag?category=" + cpp, []string{"Flag/fa", "Flag/fb2"}, nil},
		{"flag status OR", "Flag?status=inactive,entered-in-error", []string{"Flag/fb"}, nil},
		{"flag status :not", "Flag?status:not=active", []string{"Flag/fb"}, nil},
		{"flag period overlapping a day", "Flag?date=ge2026-01-15&date=le2026-01-15", []string{"Flag/fa", "Flag/fb"}, nil},
		{"flag period starting after", "Flag?date=sa2026-01-31", []string{"Flag/fb2"}, nil},
		{"flag period ended before", "Flag?date=eb2026-02-01", []string{"Flag/fb"}, nil},
		{"care team, national API shape", "CareTeam?patient:identifier=" + nhs + nhs1, []string{"CareTeam/ta"}, nil},
		{"care team, unknown number", "CareTeam?patient:identifier=" + nhs + "9990000042", nil, nil},
		{"encounters of a child since", "Encounter?subject=Patient/a&date=ge2026-02-01", []string{"Encounter/e2"}, nil},
		// e3 lasts from 00:00Z to 00:30Z on 21 February once its +01:00
		// offset is applied; e2 ends before midnight UTC.
		{"encounters on a UTC day", "Encounter?date=2026-02-21", []string{"Encounter/e3"}, nil},
		{"encounters by time zone", "Encounter?date=lt2026-02-21T00:30:00Z&date=ge2026-02-20", []string{"Encounter/e2", "Encounter/e3"}, nil},
		{"communications to a council since, with subject", "Communication?recipient=Organization/la-1&sent=gt2026-02-01&_include=Communication:subject",
			[]string{"Communication/m2"}, []string{"Patient/a"}},
		{"communications revinclude", "Patient?_id=b&_revinclude=Communication:subject", []string{"Patient/b"}, []string{"Communication/m3"}},
		{"patient by name, accents and case", "Patient?family=" + url.QueryEscape("TESTCHÎLD") + "&_id=a,c", []string{"Patient/a", "Patient/c"}, nil},
		{"patient by birth date and gender", "Patient?birthdate=2015-04&gender=female&_id=b", []string{"Patient/b"}, nil},
		{"has: patients with an active flag", "Patient?_has:Flag:patient:status=active", []string{"Patient/a", "Patient/b"}, nil},
		{"encounters sorted by date descending", "Encounter?_sort=-date", []string{"Encounter/e4", "Encounter/e3", "Encounter/e2", "Encounter/e1"}, nil},
		{"flags sorted by two keys", "Flag?_sort=-status,date", []string{"Flag/fb", "Flag/fa", "Flag/fb2"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := getBundle(t, ts.Base+"/"+tc.query)
			if got := b.ids("match"); !slices.Equal(got, tc.want) {
				t.Errorf("GET %s: matches %q, want %q", tc.query, got, tc.want)
			}
			if got := b.ids("include"); !slices.Equal(got, tc.wantIn) {
				t.Errorf("GET %s: included %q, want %q", tc.query, got, tc.wantIn)
			}
			if b.Total != nil && *b.Total != len(tc.want) {
				t.Errorf("GET %s: total %d, want %d", tc.query, *b.Total, len(tc.want))
			}
		})
	}
}

// TestSearch_POSTForm checks POST [type]/_search with the NHS number in a
// form body, and that no link of the answer carries the number.
func TestSearch_POSTForm(t *testing.T) {
	ts := startServer(t, server.Config{})
	cpisData(t, ts)
	form := url.Values{"subject:identifier": {nhsSys + "|" + nhs1}, "status": {"active"}}.Encode()
	res := do(t, http.MethodPost, ts.Base+"/Flag/_search", form, "Content-Type", "application/x-www-form-urlencoded").wantStatus(t, http.StatusOK)
	b := decodeBundle(t, res)
	if got := b.ids("match"); !slices.Equal(got, []string{"Flag/fa"}) {
		t.Errorf("POST Flag/_search: matches %q, want [Flag/fa]", got)
	}
	for _, l := range b.Link {
		if strings.Contains(l.URL, nhs1) || strings.Contains(l.URL, "identifier") {
			t.Errorf("link %s %s carries the search", l.Relation, l.URL)
		}
	}
	// The self link runs the same search again.
	if got := getBundle(t, b.link("self")).ids("match"); !slices.Equal(got, []string{"Flag/fa"}) {
		t.Errorf("GET self link: matches %q, want [Flag/fa]", got)
	}
	if strings.Contains(ts.Log(), nhs1) {
		t.Errorf("the log holds the NHS number")
	}
	// A JSON body is not a search form.
	do(t, http.MethodPost, ts.Base+"/Flag/_search", `{"a":1}`).wantStatus(t, http.StatusUnsupportedMediaType)
}

// TestSearch_Paging pages through a result while it grows and shrinks: no
// resource that existed throughout is skipped or repeated.
func TestSearch_Paging(t *testing.T) {
	ts := startServer(t, server.Config{})
	var want []string
	for i := range 23 {
		id := fmt.Sprintf("p%02d", i)
		put(t, ts, "Patient/"+id, patientJSON(id, nhs1))
		want = append(want, "Patient/"+id)
	}
	next := ts.Base + "/Patient?identifier=" + url.QueryEscape(nhsSys+"|"+nhs1) + "&_count=5"
	var got []string
	pages := 0
	for next != "" {
		b := getBundle(t, next)
		if strings.Contains(next, nhs1) && pages > 0 {
			t.Errorf("next link %s carries the NHS number", next)
		}
		got = append(got, b.ids("match")...)
		pages++
		switch pages {
		case 1:
			// Writes while paging: a new match at the end, an update of one
			// already seen, a delete of one not yet seen.
			put(t, ts, "Patient/p-new", patientJSON("p-new", nhs1))
			put(t, ts, "Patient/p01", patientJSON("p01", nhs1))
			do(t, http.MethodDelete, ts.Base+"/Patient/p20", "").wantStatus(t, http.StatusNoContent)
		case 2:
			if prev := b.link("previous"); prev == "" {
				t.Error("page 2 has no previous link")
			} else if ids := getBundle(t, prev).ids("match"); !slices.Equal(ids, want[:5]) {
				t.Errorf("previous of page 2: %q, want %q", ids, want[:5])
			}
		}
		next = b.link("next")
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	wantAll := append(slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "Patient/p20" }), "Patient/p-new")
	if !slices.Equal(got, wantAll) {
		t.Errorf("paged ids %q, want %q", got, wantAll)
	}
}

func TestSearch_Cursor(t *testing.T) {
	ts := startServer(t, server.Config{})
	put(t, ts, "Patient/a", patientJSON("a", nhs1))
	put(t, ts, "Patient/b", patientJSON("b", nhs2))
	b := getBundle(t, ts.Base+"/Patient?_count=1")
	next := b.link("next")
	if next == "" {
		t.Fatal("no next link")
	}
	i := strings.Index(next, "_cursor=") + len("_cursor=") + 5
	flip := "A"
	if next[i] == 'A' {
		flip = "B"
	}
	tampered := next[:i] + flip + next[i+1:]
	res := do(t, http.MethodGet, tampered, "").wantStatus(t, http.StatusBadRequest)
	if code, _, _ := res.outcome(t); code != "invalid" {
		t.Errorf("tampered cursor: issue code %q, want invalid", code)
	}
	// A cursor made for Patient does not page Flag.
	do(t, http.MethodGet, strings.Replace(next, "/Patient?", "/Flag?", 1), "").wantStatus(t, http.StatusBadRequest)
	// A cursor made by another server (another key) is refused.
	other := startServer(t, server.Config{})
	do(t, http.MethodGet, strings.Replace(next, ts.Base, other.Base, 1), "").wantStatus(t, http.StatusBadRequest)
}

func TestSearch_Errors(t *testing.T) {
	ts := startServer(t, server.Config{})
	put(t, ts, "Patient/a", patientJSON("a", nhs1))
	for _, tc := range []struct {
		query   string
		status  int
		mention string
	}{
		{"Patient?birthdate=2015-13-01", 400, "birthdate"},
		{"Patient?birthdate=xx2015", 400, "birthdate"},
		{"Flag?date=2026-02-30", 400, "date"},
		{"Patient?_count=abc", 400, "_count"},
		{"Patient?_sort=nope", 400, "_sort"},
		{"Patient?_include=Patient:nope", 400, "_include"},
		{"Patient?identifier=a|b|c", 400, "identifier"},
		{"Nope?x=1", 404, ""},
	} {
		res := do(t, http.MethodGet, ts.Base+"/"+tc.query, "").wantStatus(t, tc.status)
		_, diag, _ := res.outcome(t)
		if !strings.Contains(diag, tc.mention) {
			t.Errorf("GET %s: diagnostics %q do not name %q", tc.query, diag, tc.mention)
		}
	}
	// Unknown parameters: lenient by default, 400 when strict.
	b := getBundle(t, ts.Base+"/Patient?foo=bar&gender=female")
	if got := b.ids("match"); !slices.Equal(got, []string{"Patient/a"}) {
		t.Errorf("lenient: matches %q, want [Patient/a]", got)
	}
	var outcome bool
	for _, e := range b.Entry {
		if e.Search.Mode == "outcome" && strings.Contains(string(e.Resource), "foo") {
			outcome = true
		}
	}
	if !outcome {
		t.Errorf("lenient: no outcome entry naming foo in %s", b.Entry)
	}
	if self := b.link("self"); self == "" {
		t.Error("no self link")
	} else if got := getBundle(t, self); len(got.ids("outcome")) != 0 {
		t.Error("the self link still carries the ignored parameter")
	}
	res := do(t, http.MethodGet, ts.Base+"/Patient?foo=bar", "", "Prefer", "handling=strict").wantStatus(t, http.StatusBadRequest)
	if _, diag, _ := res.outcome(t); !strings.Contains(diag, "foo") {
		t.Errorf("strict: diagnostics %q do not name foo", diag)
	}
}

func TestSearch_ResultControls(t *testing.T) {
	ts := startServer(t, server.Config{})
	cpisData(t, ts)
	b := getBundle(t, ts.Base+"/Flag?_summary=count")
	if b.Total == nil || *b.Total != 3 || len(b.Entry) != 0 {
		t.Errorf("_summary=count: total %v, %d entries; want 3, none", b.Total, len(b.Entry))
	}
	b = getBundle(t, ts.Base+"/Flag?_total=accurate&_count=1")
	if b.Total == nil || *b.Total != 3 || len(b.ids("match")) != 1 {
		t.Errorf("_total=accurate&_count=1: total %v, %d matches; want 3, 1", b.Total, len(b.ids("match")))
	}
	b = getBundle(t, ts.Base+"/Patient?_id=a&_elements=gender")
	var p map[string]any
	json.Unmarshal(b.Entry[0].Resource, &p)
	if p["gender"] != "female" || p["name"] != nil || p["birthDate"] != nil {
		t.Errorf("_elements=gender: %v", p)
	}
	if !strings.Contains(string(b.Entry[0].Resource), "SUBSETTED") {
		t.Errorf("_elements: resource not tagged SUBSETTED: %s", b.Entry[0].Resource)
	}
	b = getBundle(t, ts.Base+"/Flag?_id=fa&_summary=true")
	var f map[string]any
	json.Unmarshal(b.Entry[0].Resource, &f)
	if f["status"] != "active" || f["subject"] == nil || f["text"] != nil {
		t.Errorf("_summary=true: %v", f)
	}
}

func TestSearch_CompartmentAndSystem(t *testing.T) {
	ts := startServer(t, server.Config{})
	cpisData(t, ts)
	b := getBundle(t, ts.Base+"/Patient/b/Flag")
	if got := b.ids("match"); !slices.Equal(got, []string{"Flag/fb", "Flag/fb2"}) {
		t.Errorf("Patient/b/Flag: %q, want [Flag/fb Flag/fb2]", got)
	}
	b = getBundle(t, ts.Base+"/Patient/a/Encounter?date=ge2026-02-01")
	if got := b.ids("match"); !slices.Equal(got, []string{"Encounter/e2"}) {
		t.Errorf("Patient/a/Encounter?date=ge2026-02-01: %q, want [Encounter/e2]", got)
	}
	do(t, http.MethodGet, ts.Base+"/Flag/fa/Patient", "").wantStatus(t, http.StatusNotFound)
	b = getBundle(t, ts.Base+"?_type=Organization,CareTeam&_id=la-2,ta")
	if got := b.ids("match"); !slices.Equal(got, []string{"Organization/la-2", "CareTeam/ta"}) {
		t.Errorf("system search: %q, want [Organization/la-2 CareTeam/ta]", got)
	}
}

func TestSearch_Capability(t *testing.T) {
	ts := startServer(t, server.Config{})
	var cs struct {
		Rest []struct {
			Interaction []struct{ Code string }
			Resource    []struct {
				Type             string
				Interaction      []struct{ Code string }
				SearchInclude    []string
				SearchRevInclude []string
				SearchParam      []struct{ Name, Type, Definition string }
			}
		}
	}
	res := do(t, http.MethodGet, ts.Base+"/metadata", "").wantStatus(t, http.StatusOK)
	if err := json.Unmarshal(res.Body, &cs); err != nil {
		t.Fatal(err)
	}
	for _, r := range cs.Rest[0].Resource {
		if r.Type != "Flag" {
			continue
		}
		var names []string
		for _, p := range r.SearchParam {
			names = append(names, p.Name)
		}
		for _, want := range []string{"_id", "_lastUpdated", "status", "category", "subject", "patient", "date"} {
			if !slices.Contains(names, want) {
				t.Errorf("Flag searchParam lacks %s: %q", want, names)
			}
		}
		if slices.Contains(names, "_text") {
			t.Error("Flag searchParam lists _text, which is not supported")
		}
		if !slices.Contains(r.SearchInclude, "Flag:subject") || !slices.Contains(r.SearchRevInclude, "Provenance:target") {
			t.Errorf("Flag includes %q revincludes %d", r.SearchInclude, len(r.SearchRevInclude))
		}
		if !slices.ContainsFunc(r.Interaction, func(i struct{ Code string }) bool { return i.Code == "search-type" }) {
			t.Error("Flag does not list search-type")
		}
		return
	}
	t.Fatal("no Flag in the CapabilityStatement")
}

// TestSearch_RuntimeSearchParameter posts a SearchParameter: it becomes
// searchable over the data already stored once the reindex is done.
func TestSearch_RuntimeSearchParameter(t *testing.T) {
	ts := startServer(t, server.Config{})
	verified := `{"resourceType":"Patient","id":"v","identifier":[{"system":"` + nhsSys + `","value":"` + nhs1 + `","extension":[{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",` +
		`"valueCodeableConcept":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland","code":"01"}]}}]}]}`
	put(t, ts, "Patient/v", verified)
	put(t, ts, "Patient/u", patientJSON("u", nhs2))
	// Before: unknown, so ignored (lenient) and everything matches.
	if got := getBundle(t, ts.Base+"/Patient?nhs-verification=01").ids("match"); len(got) != 2 {
		t.Errorf("before: %q, want both patients", got)
	}
	sp := `{"resourceType":"SearchParameter","id":"nhs-verification","url":"https://example.org/SearchParameter/nhs-verification","name":"NHSVerification","status":"active",` +
		`"description":"NHS number verification status","code":"nhs-verification","base":["Patient"],"type":"token",` +
		`"expression":"Patient.identifier.extension('https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus').value"}`
	put(t, ts, "SearchParameter/nhs-verification", sp)
	ts.srv.WaitIndexing()
	if got := getBundle(t, ts.Base+"/Patient?nhs-verification=01").ids("match"); !slices.Equal(got, []string{"Patient/v"}) {
		t.Errorf("after: %q, want [Patient/v]", got)
	}
	if !strings.Contains(string(do(t, http.MethodGet, ts.Base+"/metadata", "").Body), "https://example.org/SearchParameter/nhs-verification") {
		t.Error("the CapabilityStatement does not list the new parameter")
	}
	// A restarted server loads the definition and, since the index already
	// holds it, can search with it before any reindex.
	codec, _ := fhir.NewCodec()
	srv2, err := server.New(ts.Store, codec, server.Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv2)
	defer hs.Close()
	if got := getBundle(t, hs.URL+"/fhir/Patient?nhs-verification=01", "Prefer", "handling=strict").ids("match"); !slices.Equal(got, []string{"Patient/v"}) {
		t.Errorf("after a restart: %q, want [Patient/v]", got)
	}
	// A definition the server cannot use is refused before it is stored.
	bad := strings.Replace(strings.Replace(sp, `"id":"nhs-verification"`, `"id":"bad"`, 1), `"expression":"Patient.identifier`, `"expression":"Patient.identifier.(((`, 1)
	do(t, http.MethodPut, ts.Base+"/SearchParameter/bad", bad).wantStatus(t, http.StatusUnprocessableEntity)
	do(t, http.MethodGet, ts.Base+"/SearchParameter/bad", "").wantStatus(t, http.StatusNotFound)
}
