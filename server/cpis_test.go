package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
)

// cpisWorld is the CP-IS service with two councils, a hospital and their
// tokens.
type cpisWorld struct {
	ts           *testServer
	la, lb       string // council tokens
	cl, cls      string // unscheduled clinician at siteODS, scheduled clinician
	admin        string
	nhs          []string
	councilRefs  map[string]string // ODS -> Organization/id
	socialWorker string
}

const (
	siteName   = "St Elsewhere Hospital"
	laPhoneA   = "02070000001"
	laPhoneOOH = "07700900001"
)

func newCPISWorld(t *testing.T) *cpisWorld {
	t.Helper()
	return newCPISWorldWith(t, server.Config{})
}

// newCPISWorldWith is newCPISWorld on a server with the configuration
// cfg.
func newCPISWorldWith(t *testing.T, cfg server.Config) *cpisWorld {
	t.Helper()
	ts := startServer(t, cfg)
	w := &cpisWorld{ts: ts, councilRefs: map[string]string{councilA: "Organization/la-a", councilB: "Organization/la-b"}}
	for serial := 200; len(w.nhs) < 6; serial++ {
		if n, ok := fhirtest.NHSNumber(serial); ok {
			w.nhs = append(w.nhs, n)
		}
	}
	org := func(id, ods, name string) {
		put(t, ts, "Organization/"+id, `{"resourceType":"Organization","id":"`+id+`","identifier":[{"system":"`+odsSys+`","value":"`+ods+`"}],"name":"`+name+`"}`)
	}
	org("la-a", councilA, "Council A")
	org("la-b", councilB, "Council B")
	org("site", siteODS, siteName)
	w.renew(t)
	// Council A registers its social worker for notifications.
	res := do(t, http.MethodPost, ts.Base+"/PractitionerRole", `{"resourceType":"PractitionerRole","active":true,`+
		`"organization":{"reference":"Organization/la-a","identifier":{"system":"`+odsSys+`","value":"`+councilA+`"}},"code":[{"text":"Social worker"}]}`,
		bearer(w.la)...).wantStatus(t, http.StatusCreated)
	w.socialWorker = "PractitionerRole/" + res.object(t)["id"].(string)
	return w
}

// renew makes the tokens again at the clock's time (they last 24 hours).
func (w *cpisWorld) renew(t *testing.T) {
	t.Helper()
	ts := w.ts
	w.la = ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: councilA, Subject: "la-a-system", ClientID: "la-a"})
	w.lb = ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: councilB, Subject: "la-b-system", ClientID: "la-b"})
	w.cl = ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: siteODS, SDSRole: "R8000", Subject: "dr-1", ClientID: "epr"})
	w.cls = ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianScheduled, ODS: "Y00001", SDSRole: "R8000", Subject: "gp-1", ClientID: "gp"})
	w.admin = ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, Subject: "test-admin", ClientID: "test"})
	ts.Token = w.admin
	testTokens.Store(ts.URL, w.admin)
}

// upload is a council's transaction for one child: the Patient by NHS
// number (conditional create), its Flag (with flag-detail to the
// CarePlan), the CarePlan and the CareTeam (subject by reference, the two
// phone numbers).
func upload(ods, nhs, plan, start, end, birth string) string {
	org := fmt.Sprintf(`{"reference":"Organization/%s","identifier":{"system":"%s","value":"%s"}}`,
		map[string]string{councilA: "la-a", councilB: "la-b"}[ods], odsSys, ods)
	period := `"start":"` + start + `"`
	if end != "" {
		period += `,"end":"` + end + `"`
	}
	const p, f, cp, ct = "urn:uuid:10000000-0000-4000-8000-000000000001", "urn:uuid:10000000-0000-4000-8000-000000000002",
		"urn:uuid:10000000-0000-4000-8000-000000000003", "urn:uuid:10000000-0000-4000-8000-000000000004"
	patient := strings.Replace(cpisPatient("", nhs, "female", birth, true, false), `"gender"`, `"managingOrganization":`+org+`,"gender"`, 1)
	cat := `[{"coding":[{"system":"` + snomed + `","code":"` + plan + `"}]}]`
	return `{"resourceType":"Bundle","type":"transaction","entry":[` +
		`{"fullUrl":"` + p + `","resource":` + patient + `,"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=` + url.QueryEscape(nhsSys+"|"+nhs) + `"}},` +
		`{"fullUrl":"` + f + `","resource":{"resourceType":"Flag","status":"active","category":` + cat + `,"code":` + flagCode + `,` +
		`"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/flag-detail","valueReference":{"reference":"` + cp + `"}}],` +
		`"subject":{"reference":"` + p + `"},"period":{` + period + `},"author":` + org + `},"request":{"method":"POST","url":"Flag"}},` +
		`{"fullUrl":"` + cp + `","resource":{"resourceType":"CarePlan","status":"active","intent":"plan","category":` + cat + `,` +
		`"subject":{"reference":"` + p + `"},"period":{` + period + `},"author":` + org + `,"careTeam":[{"reference":"` + ct + `"}]},"request":{"method":"POST","url":"CarePlan"}},` +
		`{"fullUrl":"` + ct + `","resource":{"resourceType":"CareTeam","status":"active","category":` + cat + `,"name":"Children's Social Care","subject":{"reference":"` + p + `"},` +
		`"period":{` + period + `},"managingOrganization":[` + org + `],` +
		`"telecom":[{"system":"phone","value":"` + laPhoneA + `","use":"work"},{"system":"phone","value":"` + laPhoneOOH + `","use":"mobile"}]},"request":{"method":"POST","url":"CareTeam"}}]}`
}

// encounter is an attendance at the site for the Patient ref.
func encounter(subject string) string {
	return `{"resourceType":"Encounter","status":"arrived","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},` +
		`"serviceType":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-CareSettingType","code":"1060971000000108","display":"General practice service"}],"text":"Emergency department"},` +
		`"subject":` + subject + `,"period":{"start":"2026-03-01T08:55:00Z"},` +
		`"serviceProvider":{"reference":"Organization/site","identifier":{"system":"` + odsSys + `","value":"` + siteODS + `"}}}`
}

func (w *cpisWorld) uploadChild(t *testing.T, tok, ods, nhs, plan, start, end, birth string) (patient string) {
	t.Helper()
	return w.uploadRecords(t, tok, ods, nhs, plan, start, end, birth)[0]
}

// uploadRecords uploads a child's record as uploadChild does and returns
// the Patient, Flag, CarePlan and CareTeam written (Type/id).
func (w *cpisWorld) uploadRecords(t *testing.T, tok, ods, nhs, plan, start, end, birth string) []string {
	t.Helper()
	b := postBundle(t, w.ts, upload(ods, nhs, plan, start, end, birth), "transaction-response", bearer(tok)...)
	if got := strings.Join(b.statuses(), " "); got != "201 201 201 201" {
		t.Fatalf("council %s upload: statuses %s, want 201 201 201 201", ods, got)
	}
	var refs []string
	for _, e := range b.Entry {
		refs = append(refs, strings.SplitN(strings.TrimPrefix(e.Response.Location, w.ts.Base+"/"), "/_history", 2)[0])
	}
	return refs
}

// searchset decodes a searchset Bundle.
type searchset struct {
	ResourceType, Type string
	Total              *int
	Link               []struct{ Relation, URL string }
	Entry              []struct {
		FullURL  string
		Resource json.RawMessage
		Search   struct{ Mode string }
	}
}

func (s *searchset) mode(m string) []map[string]any {
	var out []map[string]any
	for _, e := range s.Entry {
		if e.Search.Mode == m {
			var r map[string]any
			json.Unmarshal(e.Resource, &r)
			out = append(out, r)
		}
	}
	return out
}

func getSearchset(t *testing.T, ts *testServer, query string, headers ...string) *searchset {
	t.Helper()
	res := do(t, http.MethodGet, ts.Base+"/"+query, "", headers...).wantStatus(t, http.StatusOK)
	var s searchset
	if err := json.Unmarshal(res.Body, &s); err != nil || s.ResourceType != "Bundle" || s.Type != "searchset" {
		t.Fatalf("GET %s: body %s, want a searchset Bundle", query, res.Body)
	}
	return &s
}

func lookupQuery(typ, nhs string) string {
	return typ + "?patient:identifier=" + url.QueryEscape(nhsSys+"|"+nhs)
}

// communications returns the notifications the council of tok finds
// about the child with the NHS number.
func (w *cpisWorld) communications(t *testing.T, tok, nhs string) []map[string]any {
	t.Helper()
	return getSearchset(t, w.ts, "Communication?subject:Patient.identifier="+url.QueryEscape(nhsSys+"|"+nhs)+"&category=notification", bearer(tok)...).mode("match")
}

func refs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		if r, _ := m["reference"].(string); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// TestCPIS_Scenario: a council uploads a plan; a clinician looks the child
// up and sees it with the council's two phone numbers; the child attends
// A&E and the council finds exactly the expected notification; a second
// council's record gets its own; the 24-hour rule.
func TestCPIS_Scenario(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[0]
	pa := w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	pb := w.uploadChild(t, w.lb, councilB, nhs, lac, "2026-02-01", "", "2015-04-01")
	if pa == pb {
		t.Fatalf("both councils' uploads share %s; each council keeps its own Patient", pa)
	}

	t.Run("clinician lookup", func(t *testing.T) {
		// A scheduled (silent) read, so that the attendance below is the
		// first contact (an unscheduled lookup notifies too: TestCPIS_AccessHistory).
		silent := append(bearer(w.cl), "IsUnscheduledAccessEvent", "false")
		s := getSearchset(t, ts, lookupQuery("CareTeam", nhs), silent...)
		teams := s.mode("match")
		if len(teams) != 2 || s.Total == nil || *s.Total != 2 {
			t.Fatalf("CareTeam lookup: %d matches (total %v), want 2", len(teams), s.Total)
		}
		for _, ct := range teams {
			tel, _ := json.Marshal(ct["telecom"])
			if !strings.Contains(string(tel), `"value":"`+laPhoneA+`","use":"work"`) && !strings.Contains(string(tel), `"use":"work","value":"`+laPhoneA+`"`) ||
				!strings.Contains(string(tel), laPhoneOOH) || !strings.Contains(string(tel), "mobile") {
				t.Errorf("CareTeam telecom %s, want the office-hours (work) and emergency-duty (mobile) numbers", tel)
			}
		}
		if len(s.Link) == 0 || s.Link[0].Relation != "self" {
			t.Errorf("links %+v, want a self link", s.Link)
		}
		for _, e := range s.Entry {
			if e.Search.Mode == "match" && !strings.HasPrefix(e.FullURL, ts.Base+"/CareTeam/") {
				t.Errorf("fullUrl %s, want an absolute %s/CareTeam/{id}", e.FullURL, ts.Base)
			}
		}
		if oo := s.mode("outcome"); len(oo) != 0 {
			t.Errorf("a lookup with records carries an outcome %v", oo)
		}
		flags := getSearchset(t, ts, "Flag?subject:identifier="+url.QueryEscape(nhsSys+"|"+nhs)+"&_include=Flag:subject", silent...)
		if n := len(flags.mode("match")); n != 2 {
			t.Errorf("Flag?subject:identifier: %d matches, want 2", n)
		}
	})

	var first []map[string]any
	t.Run("attendance notifies each council once", func(t *testing.T) {
		res := do(t, http.MethodPost, ts.Base+"/Encounter", encounter(`{"reference":"`+pa+`"}`), bearer(w.cl)...).wantStatus(t, http.StatusCreated)
		if wh := res.Header.Get("Warning"); !strings.Contains(wh, "look the child up") || strings.Contains(wh, "Plan") || strings.Contains(wh, nhs) {
			t.Errorf("Warning header %q, want one that says to look the child up and nothing of the record", wh)
		}
		enc := "Encounter/" + res.object(t)["id"].(string)
		a := w.communications(t, w.la, nhs)
		if len(a) != 1 {
			t.Fatalf("council A notifications: %d, want 1", len(a))
		}
		first = a
		c := a[0]
		if got := refs(c["recipient"]); len(got) != 2 || got[0] != "Organization/la-a" || got[1] != w.socialWorker {
			t.Errorf("recipient %v, want Organization/la-a and %s", got, w.socialWorker)
		}
		if got := c["encounter"].(map[string]any)["reference"]; got != enc {
			t.Errorf("encounter %v, want %s", got, enc)
		}
		if got := c["subject"].(map[string]any)["reference"]; got != pa {
			t.Errorf("subject %v, want %s", got, pa)
		}
		if about := refs(c["about"]); len(about) != 1 || !strings.HasPrefix(about[0], "Flag/") {
			t.Errorf("about %v, want council A's Flag", about)
		}
		cat, _ := json.Marshal(c["category"])
		if !strings.Contains(string(cat), `"notification"`) || c["sent"] == nil {
			t.Errorf("category %s sent %v, want notification and a sent time", cat, c["sent"])
		}
		text, _ := json.Marshal(c["payload"])
		for _, want := range []string{nhs, siteName, siteODS, "Child Protection Plan", "2026-01-15", "Emergency department", "2026-03-01 08:55"} {
			if !strings.Contains(string(text), want) {
				t.Errorf("payload %s lacks %q", text, want)
			}
		}
		// The notification conforms to CPIS-Communication.
		body, _ := json.Marshal(c)
		v := do(t, http.MethodPost, ts.Base+"/Communication/$validate", string(body)).wantStatus(t, http.StatusOK)
		for _, is := range issuesOf(t, v) {
			if is.Severity == "error" {
				t.Errorf("notification invalid against CPIS-Communication: %s", v.Body)
				break
			}
		}
		b := w.communications(t, w.lb, nhs)
		if len(b) != 1 {

			t.Fatalf("council B notifications: %d, want 1", len(b))
		}
		if got := b[0]["subject"].(map[string]any)["reference"]; got != pb {
			t.Errorf("council B notification subject %v, want its own Patient %s", got, pb)
		}
		if got := refs(b[0]["recipient"]); len(got) != 1 || got[0] != "Organization/la-b" {
			t.Errorf("council B recipient %v, want Organization/la-b alone (no social worker registered)", got)
		}
		if text, _ := json.Marshal(b[0]["payload"]); !strings.Contains(string(text), "Looked After Child") {
			t.Errorf("council B payload %s, want its Looked After Child plan", text)
		}
		if strings.Contains(ts.Log(), nhs) {
			t.Errorf("the log carries the NHS number")
		}
	})

	t.Run("24 hours", func(t *testing.T) {
		ts.Clock.Add(2 * time.Hour)
		do(t, http.MethodPost, ts.Base+"/Encounter", encounter(`{"reference":"`+pa+`"}`), bearer(w.cl)...).wantStatus(t, http.StatusCreated)
		if n := len(w.communications(t, w.la, nhs)); n != 1 {
			t.Errorf("after a second attendance within 24 hours: %d notifications, want 1", n)
		}
		ts.Clock.Add(23 * time.Hour)
		w.renew(t)
		// The subject named by NHS number only is found too.
		subject := `{"identifier":{"system":"` + nhsSys + `","value":"` + nhs + `"}}`
		res := do(t, http.MethodPost, ts.Base+"/Encounter", strings.Replace(encounter(subject), "2026-03-01T08:55:00Z", "2026-03-02T10:00:00Z", 1), bearer(w.cl)...).
			wantStatus(t, http.StatusCreated)
		if res.Header.Get("Warning") == "" {
			t.Errorf("Encounter by NHS number: no Warning header")
		}
		if n := len(w.communications(t, w.la, nhs)); n != 2 {
			t.Errorf("after an attendance 25 hours later: %d notifications, want 2", n)
		}
		if n := len(w.communications(t, w.lb, nhs)); n != 2 {
			t.Errorf("council B after an attendance 25 hours later: %d notifications, want 2", n)
		}
	})

	t.Run("Prefer return=OperationOutcome", func(t *testing.T) {
		other := w.ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: "RYY02", Subject: "dr-2", ClientID: "epr2"})
		body := strings.ReplaceAll(encounter(`{"reference":"`+pa+`"}`), siteODS, "RYY02")
		res := do(t, http.MethodPost, ts.Base+"/Encounter", body, append(bearer(other), "Prefer", "return=OperationOutcome")...).wantStatus(t, http.StatusCreated)
		found := false
		for _, is := range issuesOf(t, res) {
			if is.Severity == "warning" && strings.Contains(is.Diagnostics, "look the child up") {
				found = true
			}
		}
		if !found {
			t.Errorf("OperationOutcome %s, want a warning to look the child up", res.Body)
		}
		// Another care organisation: notified again at once.
		if n := len(w.communications(t, w.la, nhs)); n != 3 {
			t.Errorf("after an attendance elsewhere: %d notifications, want 3", n)
		}
	})

	t.Run("Encounter in a batch", func(t *testing.T) {
		before := len(w.communications(t, w.la, nhs))
		ts.Clock.Add(25 * time.Hour)
		w.renew(t)
		body := `{"resourceType":"Bundle","type":"batch","entry":[{"resource":` + encounter(`{"reference":"`+pa+`"}`) + `,"request":{"method":"POST","url":"Encounter"}}]}`
		b := postBundle(t, ts, body, "batch-response", bearer(w.cl)...)
		if got := strings.Join(b.statuses(), " "); got != "201" {
			t.Fatalf("batch statuses %s, want 201", got)
		}
		if !strings.Contains(string(b.Entry[0].Response.Outcome), "look the child up") {
			t.Errorf("batch entry outcome %s, want the warning", b.Entry[0].Response.Outcome)
		}
		if n := len(w.communications(t, w.la, nhs)); n != before+1 {
			t.Errorf("after a batch attendance: %d notifications, want %d", n, before+1)
		}
	})

	t.Run("no record", func(t *testing.T) {
		none := w.nhs[1]
		res := do(t, http.MethodPost, ts.Base+"/Encounter", encounter(`{"identifier":{"system":"`+nhsSys+`","value":"`+none+`"}}`), bearer(w.cl)...).
			wantStatus(t, http.StatusCreated)
		if wh := res.Header.Get("Warning"); wh != "" {
			t.Errorf("Encounter of a child with no record: Warning %q", wh)
		}
		s := getSearchset(t, ts, lookupQuery("CareTeam", none), bearer(w.cl)...)
		if len(s.mode("match")) != 0 || s.Total == nil || *s.Total != 0 {
			t.Errorf("lookup with no record: %d matches, total %v; want 0, 0", len(s.mode("match")), s.Total)
		}
		oo := s.mode("outcome")
		if len(oo) != 1 {
			t.Fatalf("lookup with no record: %d outcome entries, want 1", len(oo))
		}
		is, _ := json.Marshal(oo[0]["issue"])
		if !strings.Contains(string(is), `"information"`) || !strings.Contains(string(is), "No CP-IS record is held") || !strings.Contains(string(is), "does not mean that the child is not at risk") {
			t.Errorf("outcome %s, want information that no record is held and that this does not mean the child is safe", is)
		}
	})

	t.Run("first notification unchanged", func(t *testing.T) {
		if len(first) != 1 {
			t.Skip("the attendance step failed")
		}
		res := do(t, http.MethodGet, ts.Base+"/Communication/"+first[0]["id"].(string), "", bearer(w.la)...).wantStatus(t, http.StatusOK)
		if res.Header.Get("ETag") != `W/"1"` {
			t.Errorf("notification version %s, want W/\"1\"", res.Header.Get("ETag"))
		}
		do(t, http.MethodGet, ts.Base+"/Communication/"+first[0]["id"].(string), "", bearer(w.lb)...).wantStatus(t, http.StatusNotFound)
	})
}

// TestCPIS_LookupHeadersAndErrors: the national API's headers and errors,
// compared with the national examples' shape.
func TestCPIS_LookupHeadersAndErrors(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[2]
	w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	q := lookupQuery("CareTeam", nhs)

	spine := func(t *testing.T, res *response, status int, code, spineCode string) {
		t.Helper()
		res.wantStatus(t, status)
		is := issuesOf(t, res)
		if len(is) == 0 || is[0].Severity != "error" || is[0].Code != code || len(is[0].Details.Coding) != 1 ||
			is[0].Details.Coding[0].Code != spineCode || is[0].Details.Coding[0].System != spineSystem {
			t.Errorf("outcome %s, want error %s with %s|%s", res.Body, code, spineSystem, spineCode)
		}
		if strings.Contains(string(res.Body), nhs) {
			t.Errorf("error text carries the NHS number: %s", res.Body)
		}
	}
	for _, v := range []string{"true", "false", "TRUE", "False"} {
		do(t, http.MethodGet, ts.Base+"/"+q, "", append(bearer(w.cl), "IsUnscheduledAccessEvent", v)...).wantStatus(t, http.StatusOK)
	}
	spine(t, do(t, http.MethodGet, ts.Base+"/"+q, "", append(bearer(w.cl), "IsUnscheduledAccessEvent", "maybe")...),
		http.StatusBadRequest, "invalid", "PRECONDITION_FAILED")
	res := do(t, http.MethodGet, ts.Base+"/"+q, "", append(bearer(w.cl), "TraceID", "8d7c6f02-0a4f-4c35-9a52-5d3d9e5d1b61")...).wantStatus(t, http.StatusOK)
	if got := res.Header.Get("TraceID"); got != "8d7c6f02-0a4f-4c35-9a52-5d3d9e5d1b61" {
		t.Errorf("TraceID echoed %q", got)
	}
	// Also on a refusal before the request is authenticated.
	res = do(t, http.MethodGet, ts.Base+"/"+q, "", "Authorization", "Bearer not-a-token", "TraceID", "trace-401").wantStatus(t, http.StatusUnauthorized)
	if got := res.Header.Get("TraceID"); got != "trace-401" {
		t.Errorf("TraceID echoed on a 401: %q", got)
	}
	bad := nhs[:9] + string('0'+(nhs[9]-'0'+1)%10)
	spine(t, do(t, http.MethodGet, ts.Base+"/"+lookupQuery("CareTeam", bad), "", bearer(w.cl)...), http.StatusBadRequest, "invalid", "INVALID_SEARCH_DATA")
	spine(t, do(t, http.MethodGet, ts.Base+"/Flag?subject:identifier="+url.QueryEscape(nhsSys+"|"+bad), "", bearer(w.cl)...), http.StatusBadRequest, "invalid", "INVALID_SEARCH_DATA")
	spine(t, do(t, http.MethodGet, ts.Base+"/Patient?identifier="+url.QueryEscape(nhsSys+"|"+bad), "", bearer(w.cl)...), http.StatusBadRequest, "invalid", "INVALID_SEARCH_DATA")
	// A clinician may not read notifications; a search of all CareTeams
	// names no child.
	spine(t, do(t, http.MethodGet, ts.Base+"/Communication?subject:identifier="+url.QueryEscape(nhsSys+"|"+nhs), "", bearer(w.cl)...), http.StatusForbidden, "forbidden", "ACCESS_DENIED")
	spine(t, do(t, http.MethodGet, ts.Base+"/CareTeam", "", bearer(w.cl)...), http.StatusForbidden, "forbidden", "ACCESS_DENIED")

	// The shape of cpis-careteam-bundle-01.json: searchset, total, self
	// link, absolute fullUrl, search.mode match, category, name, subject,
	// telecom, period.
	s := getSearchset(t, ts, q, bearer(w.cls)...)
	if s.Total == nil || *s.Total != 1 || len(s.Entry) != 1 || s.Entry[0].Search.Mode != "match" {
		t.Fatalf("lookup: %+v, want total 1 and one match", s)
	}
	var ct map[string]any
	json.Unmarshal(s.Entry[0].Resource, &ct)
	for _, k := range []string{"category", "name", "subject", "telecom", "period"} {
		if ct[k] == nil {
			t.Errorf("CareTeam lacks %s (the national shape has it): %s", k, s.Entry[0].Resource)
		}
	}
	// Also by patient:identifier on Flag, with the plan and team included.
	f := getSearchset(t, ts, lookupQuery("Flag", nhs)+"&_include=Flag:subject", bearer(w.cl)...)
	if len(f.mode("match")) != 1 || len(f.mode("include")) != 1 {
		t.Errorf("Flag lookup with _include: %d matches %d included, want 1 and 1", len(f.mode("match")), len(f.mode("include")))
	}
	f = getSearchset(t, ts, lookupQuery("Flag", nhs)+"&_include=Flag:detail&_include:iterate=CarePlan:care-team", bearer(w.cl)...)
	var types []string
	for _, r := range f.mode("include") {
		types = append(types, r["resourceType"].(string))
	}
	if len(f.mode("match")) != 1 || strings.Join(types, " ") != "CarePlan CareTeam" && strings.Join(types, " ") != "CareTeam CarePlan" {
		t.Errorf("Flag lookup with the plan and its team: %d matches, included %v; want 1 and CarePlan, CareTeam", len(f.mode("match")), types)
	}
	f = getSearchset(t, ts, "Flag?subject:identifier="+url.QueryEscape(nhsSys+"|"+nhs)+"&_include=Flag:detail", bearer(w.cl)...)
	if len(f.mode("match")) != 1 || len(f.mode("include")) != 1 {
		t.Errorf("Flag?subject:identifier with _include=Flag:detail: %d matches %d included, want 1 and 1", len(f.mode("match")), len(f.mode("include")))
	}
}

// TestCPIS_CouncilUploadRules: DOMAIN.md rules 1 and 8 over HTTP with a
// council's token, one batch entry per case, each entry's outcome saying
// what was wrong.
func TestCPIS_CouncilUploadRules(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	owned := func(body, ods string) string {
		org := `{"reference":"` + w.councilRefs[ods] + `","identifier":{"system":"` + odsSys + `","value":"` + ods + `"}}`
		return strings.Replace(body, `"gender"`, `"managingOrganization":`+org+`,"gender"`, 1)
	}
	n := w.nhs
	put(t, ts, "Patient/restricted", owned(cpisPatient("restricted", n[1], "female", "2015-04-01", false, true), councilA))
	put(t, ts, "Patient/boy", owned(cpisPatient("boy", n[2], "male", "2010-06-01", false, false), councilA))
	put(t, ts, "Patient/adult", owned(cpisPatient("adult", n[3], "female", "2008-01-15", false, false), councilA))
	put(t, ts, "Patient/child", owned(cpisPatient("child", n[4], "female", "2015-04-01", false, false), councilA))
	authorA := `{"reference":"Organization/la-a","identifier":{"system":"` + odsSys + `","value":"` + councilA + `"}}`
	authorB := `{"reference":"Organization/la-b","identifier":{"system":"` + odsSys + `","value":"` + councilB + `"}}`
	flag := func(subject, plan, start, end, author string) string {
		f := cpisFlag(subject, plan, start, end, "Organization/x")
		return strings.Replace(f, `{"reference":"Organization/x"}`, author, 1)
	}
	bad := n[0][:9] + string('0'+(n[0][9]-'0'+1)%10)
	unverified := strings.Replace(owned(cpisPatient("", n[5], "female", "2015-04-01", true, false), councilA), `"code":"01"`, `"code":"02"`, 1)
	cases := []struct {
		name, resource, url string
		status              int
		code, expr          string // the issue expected: its code and (last) expression
		spine               string
	}{
		{"invalid NHS number", owned(cpisPatient("", bad, "female", "2015-04-01", true, false), councilA), "Patient", 422, "value", "Patient.identifier[0].value", "INVALID_SEARCH_DATA"},
		{"unverified NHS number", unverified, "Patient", 422, "", "", ""},
		{"restricted record", flag("Patient/restricted", cpp, "2026-01-15", "", authorA), "Flag", 422, "business-rule", "Flag.subject", ""},
		{"unborn plan on a male", flag("Patient/boy", unborn, "2026-01-15", "2026-09-01", authorA), "Flag", 422, "business-rule", "Flag.subject", ""},
		{"unborn plan without an end date", flag("Patient/adult", unborn, "2026-01-15", "", authorA), "Flag", 422, "", "", ""},
		{"child plan at 18", flag("Patient/adult", cpp, "2026-01-15", "", authorA), "Flag", 422, "business-rule", "Flag.period.start", ""},
		{"another council's record", flag("Patient/child", cpp, "2026-01-15", "", authorB), "Flag", 403, "forbidden", "", "ACCESS_DENIED"},
		{"valid", flag("Patient/child", cpp, "2026-01-15", "", authorA), "Flag", 201, "", "", ""},
	}
	var entries []string
	for i, c := range cases {
		entries = append(entries, fmt.Sprintf(`{"fullUrl":"urn:uuid:20000000-0000-4000-8000-%012d","resource":%s,"request":{"method":"POST","url":"%s"}}`, i, c.resource, c.url))
	}
	b := postBundle(t, ts, `{"resourceType":"Bundle","type":"batch","entry":[`+strings.Join(entries, ",")+`]}`, "batch-response", bearer(w.la)...)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := b.Entry[i]
			if !strings.HasPrefix(e.Response.Status, fmt.Sprint(c.status)) {
				t.Fatalf("entry %d: status %s, want %d; outcome %s", i, e.Response.Status, c.status, e.Response.Outcome)
			}
			if c.status == 201 {
				return
			}
			var oo struct{ Issue []outcomeIssue }
			if err := json.Unmarshal(e.Response.Outcome, &oo); err != nil || len(oo.Issue) == 0 {
				t.Fatalf("entry %d: outcome %s, want an OperationOutcome", i, e.Response.Outcome)
			}
			if strings.Contains(string(e.Response.Outcome), "99900") {
				t.Errorf("entry %d: the outcome carries an NHS number: %s", i, e.Response.Outcome)
			}
			var is *outcomeIssue
			if c.expr != "" {
				is = findIssue(oo.Issue, c.expr)
			} else {
				is = &oo.Issue[0]
			}
			if is == nil || is.Severity != "error" || (c.code != "" && is.Code != c.code) || is.Diagnostics == "" {
				t.Fatalf("entry %d: outcome %s, want an error %s at %s with a reason", i, e.Response.Outcome, c.code, c.expr)
			}
			if c.spine != "" && (len(is.Details.Coding) != 1 || is.Details.Coding[0].Code != c.spine) {
				t.Errorf("entry %d: details %+v, want %s", i, is.Details, c.spine)
			}
			t.Logf("entry %d: %s", i, is.Diagnostics)
		})
	}

	t.Run("update and delete a plan", func(t *testing.T) {
		loc := b.Entry[len(cases)-1].Response.Location
		ref := strings.SplitN(strings.TrimPrefix(loc, ts.Base+"/"), "/_history", 2)[0]
		id := strings.TrimPrefix(ref, "Flag/")
		ended := `{"id":"` + id + `",` + flag("Patient/child", cpp, "2026-01-15", "2026-02-28", authorA)[1:]
		do(t, http.MethodPut, ts.Base+"/"+ref, ended, bearer(w.la)...).wantStatus(t, http.StatusOK)
		// Council B may neither change nor delete it.
		do(t, http.MethodPut, ts.Base+"/"+ref, ended, bearer(w.lb)...).wantStatus(t, http.StatusForbidden)
		do(t, http.MethodDelete, ts.Base+"/"+ref, "", bearer(w.lb)...).wantStatus(t, http.StatusForbidden)
		do(t, http.MethodDelete, ts.Base+"/"+ref, "", bearer(w.la)...).wantStatus(t, http.StatusNoContent)
		do(t, http.MethodGet, ts.Base+"/"+ref, "", bearer(w.la)...).wantStatus(t, http.StatusGone)
		// The history keeps the deleted record for audit.
		do(t, http.MethodGet, ts.Base+"/"+ref+"/_history/2", "").wantStatus(t, http.StatusOK)
	})
}

// TestCPIS_SupersededNumber: a council links a child's old Patient to its
// replacement (link replaced-by); a lookup by the old number finds the
// records of the replacement and says that the number is superseded.
func TestCPIS_SupersededNumber(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	oldNHS, newNHS := w.nhs[0], w.nhs[1]
	replacement := w.uploadChild(t, w.la, councilA, newNHS, cpp, "2026-01-15", "", "2015-04-01")
	org := `{"reference":"Organization/la-a","identifier":{"system":"` + odsSys + `","value":"` + councilA + `"}}`
	old := strings.Replace(cpisPatient("old", oldNHS, "female", "2015-04-01", false, false), `"gender"`, `"managingOrganization":`+org+`,"gender"`, 1)
	do(t, http.MethodPut, ts.Base+"/Patient/old", old, bearer(w.la)...).wantStatus(t, http.StatusCreated)
	if n := len(getSearchset(t, ts, lookupQuery("CareTeam", oldNHS), bearer(w.cl)...).mode("match")); n != 0 {
		t.Fatalf("old number before the link: %d CareTeams, want 0", n)
	}
	linked := strings.Replace(old, `"gender"`, `"link":[{"other":{"reference":"`+replacement+`"},"type":"replaced-by"}],"gender"`, 1)
	do(t, http.MethodPut, ts.Base+"/Patient/old", linked, bearer(w.la)...).wantStatus(t, http.StatusOK)
	for _, typ := range []string{"CareTeam", "Flag", "CarePlan"} {
		s := getSearchset(t, ts, lookupQuery(typ, oldNHS), bearer(w.cl)...)
		if n := len(s.mode("match")); n != 1 {
			t.Errorf("%s by the superseded number: %d matches, want 1 (the replacement's)", typ, n)
		}
		oo := s.mode("outcome")
		is, _ := json.Marshal(oo)
		if len(oo) != 1 || !strings.Contains(string(is), "superseded") || !strings.Contains(string(is), `"warning"`) {
			t.Errorf("%s by the superseded number: outcome %s, want a warning that the number is superseded", typ, is)
		}
		if strings.Contains(string(is), newNHS) {
			t.Errorf("the outcome names the replacement number: %s", is)
		}
	}
	// The replacement's own number: no warning.
	s := getSearchset(t, ts, lookupQuery("CareTeam", newNHS), bearer(w.cl)...)
	if len(s.mode("match")) != 1 || len(s.mode("outcome")) != 0 {
		t.Errorf("lookup by the new number: %d matches, %d outcomes; want 1, 0", len(s.mode("match")), len(s.mode("outcome")))
	}
}

// TestCPIS_Lifecycle: child plans end at the 18th birthday; ended records
// leave lookups after the retention period and stay in the history; a
// second server's run the same day does nothing.
func TestCPIS_Lifecycle(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	// Born 2008-03-05: 18 on 2026-03-05 (the clock starts 2026-03-01).
	turning := w.nhs[0]
	w.uploadChild(t, w.la, councilA, turning, cpp, "2025-06-01", "", "2008-03-05")
	young := w.nhs[1]
	w.uploadChild(t, w.la, councilA, young, lac, "2025-06-01", "", "2015-04-01")
	// An unborn plan on an adult: not a child plan, ends on its own date.
	mother := w.nhs[2]
	w.uploadChild(t, w.la, councilA, mother, unborn, "2026-01-01", "2026-06-30", "1995-01-01")

	run := func(holder string) server.LifecycleResult {
		t.Helper()
		res, err := w.ts.srv.RunLifecycle(t.Context(), holder)
		if err != nil {
			t.Fatalf("RunLifecycle: %v", err)
		}
		return res
	}
	lookup := func(typ, nhs string) []map[string]any {
		t.Helper()
		return getSearchset(t, ts, lookupQuery(typ, nhs), bearer(w.cl)...).mode("match")
	}
	if res := run("a"); res.Skipped || res.Ended != 0 || res.Removed != 0 {
		t.Errorf("first run: %+v, want nothing to do", res)
	}
	if res := run("b"); !res.Skipped {
		t.Errorf("a second server the same day: %+v, want skipped", res)
	}

	ts.Clock.Add(4 * 24 * time.Hour) // 2026-03-05
	w.renew(t)
	if res := run("b"); res.Skipped || res.Ended != 3 {
		t.Errorf("run on the 18th birthday: %+v, want 3 ended (Flag, CarePlan, CareTeam)", res)
	}
	for typ, want := range map[string]string{"Flag": "inactive", "CarePlan": "completed", "CareTeam": "inactive"} {
		rs := lookup(typ, turning)
		if len(rs) != 1 {
			t.Fatalf("%s after the 18th birthday: %d matches, want 1 (still visible with its end date)", typ, len(rs))
		}
		period, _ := rs[0]["period"].(map[string]any)
		if rs[0]["status"] != want || period["end"] != "2026-03-05" {
			t.Errorf("%s after the 18th birthday: status %v, period %v; want %s ending 2026-03-05", typ, rs[0]["status"], period, want)
		}
	}
	for _, typ := range []string{"Flag", "CareTeam"} {
		if rs := lookup(typ, young); len(rs) != 1 || rs[0]["status"] != "active" {
			t.Errorf("%s of a younger child: %v, want it active", typ, rs)
		}
	}
	if rs := lookup("Flag", mother); len(rs) != 1 || rs[0]["status"] != "active" {
		t.Errorf("unborn plan of an adult: %v, want it untouched", rs)
	}
	// An attendance after the end notifies no one and warns nothing.
	res := do(t, http.MethodPost, ts.Base+"/Encounter", encounter(`{"identifier":{"system":"`+nhsSys+`","value":"`+turning+`"}}`), bearer(w.cl)...).
		wantStatus(t, http.StatusCreated)
	if res.Header.Get("Warning") != "" || len(w.communications(t, w.la, turning)) != 0 {
		t.Errorf("attendance after the plan ended: Warning %q, notifications %d; want none", res.Header.Get("Warning"), len(w.communications(t, w.la, turning)))
	}

	ts.Clock.Add(365 * 24 * time.Hour) // 2027-03-05: the end is exactly 365 days ago
	w.renew(t)
	if res := run("a"); res.Removed != 0 {
		t.Errorf("run 365 days after the end: %+v, want nothing removed yet", res)
	}
	ts.Clock.Add(24 * time.Hour)
	w.renew(t)
	// The unborn plan ended 2026-06-30: still within retention.
	if res := run("a"); res.Removed != 3 {
		t.Errorf("run 366 days after the end: %+v, want 3 removed", res)
	}
	for _, typ := range []string{"Flag", "CarePlan", "CareTeam"} {
		if rs := lookup(typ, turning); len(rs) != 0 {
			t.Errorf("%s after the retention period: %d matches, want 0", typ, len(rs))
		}
		if rs := lookup(typ, mother); len(rs) != 1 {
			t.Errorf("%s of the unborn plan (ended 2026-06-30): %d matches, want 1", typ, len(rs))
		}
	}
	// The history keeps the removed records.
	hist := getHistory(t, ts, "Flag/_history")
	if !strings.Contains(hist, `"method":"DELETE"`) {
		t.Errorf("Flag history lacks the deletion")
	}

	t.Run("retention configured", func(t *testing.T) {
		ts := startServer(t, server.Config{Retention: 30 * 24 * time.Hour})
		w := &cpisWorld{ts: ts, councilRefs: map[string]string{councilA: "Organization/la-a"}, nhs: []string{turning}}
		put(t, ts, "Organization/la-a", `{"resourceType":"Organization","id":"la-a","identifier":[{"system":"`+odsSys+`","value":"`+councilA+`"}],"name":"Council A"}`)
		w.renew(t)
		w.uploadChild(t, w.la, councilA, turning, cpp, "2025-06-01", "2026-01-15", "2015-04-01")
		if res, err := ts.srv.RunLifecycle(t.Context(), "a"); err != nil || res.Removed != 3 {
			t.Errorf("run 45 days after the end with 30 days' retention: %+v %v, want 3 removed", res, err)
		}
	})
}

func getHistory(t *testing.T, ts *testServer, path string) string {
	t.Helper()
	return string(do(t, http.MethodGet, ts.Base+"/"+path, "").wantStatus(t, http.StatusOK).Body)
}

// TestCPIS_NotificationCanonical: a notification is stored as the canonical
// JSON the codec makes of it (it is written without a parse), and is valid
// R4.
func TestCPIS_NotificationCanonical(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	put(t, ts, "Organization/site", `{"resourceType":"Organization","id":"site","identifier":[{"system":"`+odsSys+`","value":"`+siteODS+`"}],"name":"St Mary's & <Royal> \"Infirmary\" é"}`)
	pa := w.uploadChild(t, w.la, councilA, w.nhs[0], cpp, "2026-01-15", "", "2015-04-01")
	do(t, http.MethodPost, ts.Base+"/Encounter", encounter(`{"reference":"`+pa+`"}`), bearer(w.cl)...).wantStatus(t, http.StatusCreated)
	cs := w.communications(t, w.la, w.nhs[0])
	if len(cs) != 1 {
		t.Fatalf("notifications: %d, want 1", len(cs))
	}
	stored, canon := storedCanonical(t, ts, "Communication", cs[0]["id"].(string))
	if string(canon) != string(stored) {
		t.Errorf("stored notification is not canonical:\n got %s\nwant %s", stored, canon)
	}
	if !strings.Contains(string(stored), `St Mary's & <Royal>`) {
		t.Errorf("site name not in the payload: %s", stored)
	}
}

// TestCPIS_NotifyOnce: concurrent attendances of one child at one site make
// one notification; other roles' Encounters make none.
func TestCPIS_NotifyOnce(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[0]
	pa := w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	for _, tok := range []string{w.admin, w.cls} {
		body := encounter(`{"reference":"` + pa + `"}`)
		if tok == w.cls {
			body = strings.ReplaceAll(body, siteODS, "Y00001")
		}
		res := do(t, http.MethodPost, ts.Base+"/Encounter", body, bearer(tok)...).wantStatus(t, http.StatusCreated)
		if res.Header.Get("Warning") != "" {
			t.Errorf("Encounter by a principal outside unscheduled care: Warning %q", res.Header.Get("Warning"))
		}
	}
	if n := len(w.communications(t, w.la, nhs)); n != 0 {
		t.Fatalf("notifications after Encounters by an administrator and a scheduled clinician: %d, want 0", n)
	}
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, http.MethodPost, ts.Base+"/Encounter", encounter(`{"reference":"`+pa+`"}`), bearer(w.cl)...).wantStatus(t, http.StatusCreated)
		}()
	}
	wg.Wait()
	if n := len(w.communications(t, w.la, nhs)); n != 1 {
		t.Errorf("notifications after 12 concurrent attendances: %d, want 1", n)
	}
}

// jsonPaths returns the element paths of a JSON value (arrays as []).
func jsonPaths(v any, prefix string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			jsonPaths(e, p, out)
		}
	case []any:
		for _, e := range x {
			jsonPaths(e, prefix+"[]", out)
		}
	default:
		out[prefix] = true
	}
}

// TestCPIS_NationalShapes: our answers have every element of the national
// examples (../shared/nhs-england/cpis-api: cpis-careteam-bundle-01.json,
// cpis-auditevent-bundle-01.json, cpis-empty-bundle-01.json, cpis-opoutcome-01.json; their element paths
// are listed here, the files are not copied) when the council sends the
// national CareTeam shape.
func TestCPIS_NationalShapes(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[0]
	body := upload(councilA, nhs, cpp, "2025-09-26", "2026-09-26", "2015-04-01")
	body = strings.ReplaceAll(body, `"code":"`+cpp+`"}`, `"code":"`+cpp+`","display":"Subject to child protection plan"}`)
	body = strings.Replace(body, `"name":"Children's Social Care","subject":{"reference":"urn:uuid:10000000-0000-4000-8000-000000000001"}`,
		`"name":"Council A Children's Services","subject":{"reference":"urn:uuid:10000000-0000-4000-8000-000000000001",`+
			`"identifier":{"system":"`+nhsSys+`","value":"`+nhs+`"},"display":"Alex TESTCHILD"}`, 1)
	postBundle(t, ts, body, "transaction-response", bearer(w.la)...)
	for _, c := range []struct {
		name, query string
		status      int
		national    []string
	}{
		{"cpis-careteam-bundle-01.json", lookupQuery("CareTeam", nhs), 200, []string{
			"entry[].fullUrl", "entry[].resource.category[].coding[].code", "entry[].resource.category[].coding[].display",
			"entry[].resource.category[].coding[].system", "entry[].resource.id", "entry[].resource.name", "entry[].resource.period.end",
			"entry[].resource.period.start", "entry[].resource.resourceType", "entry[].resource.subject.display",
			"entry[].resource.subject.identifier.system", "entry[].resource.subject.identifier.value", "entry[].resource.telecom[].system",
			"entry[].resource.telecom[].use", "entry[].resource.telecom[].value", "entry[].search.mode", "id", "link[].relation", "link[].url",
			"resourceType", "total", "type"}},
		// The access history of the lookup just above (the national
		// example's requestor is the string "true"; ours the boolean).
		{"cpis-auditevent-bundle-01.json", "AuditEvent?patient:identifier=" + url.QueryEscape(nhsSys+"|"+nhs), 200, []string{
			"entry[].fullUrl", "entry[].resource.agent[].requestor", "entry[].resource.agent[].type.coding[].code", "entry[].resource.agent[].type.coding[].display",
			"entry[].resource.agent[].type.coding[].system", "entry[].resource.agent[].who.identifier.system", "entry[].resource.agent[].who.identifier.value",
			"entry[].resource.agent[].who.reference", "entry[].resource.code[].coding[].code", "entry[].resource.code[].coding[].display",
			"entry[].resource.code[].coding[].system", "entry[].resource.id", "entry[].resource.identifier[].system", "entry[].resource.identifier[].value",
			"entry[].resource.organization.display", "entry[].resource.practitioner.display", "entry[].resource.recorded", "entry[].resource.resourceType",
			"entry[].resource.source.observer.reference", "entry[].resource.type.display", "entry[].resource.type.system", "entry[].search.mode",
			"id", "link[].relation", "link[].url", "resourceType", "total", "type"}},
		{"cpis-empty-bundle-01.json", lookupQuery("CareTeam", w.nhs[1]), 200, []string{"id", "link[].relation", "link[].url", "resourceType", "total", "type"}},
		// The national error example has an id; ours, an answer and not a
		// stored resource, has none.
		{"cpis-opoutcome-01.json", "Communication?subject:identifier=" + url.QueryEscape(nhsSys+"|"+nhs), 403, []string{
			"issue[].code", "issue[].details.coding[].code", "issue[].details.coding[].display", "issue[].details.coding[].system",
			"issue[].severity", "resourceType"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := do(t, http.MethodGet, ts.Base+"/"+c.query, "", bearer(w.cl)...).wantStatus(t, c.status)
			var v any
			if err := json.Unmarshal(res.Body, &v); err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			jsonPaths(v, "", got)
			for _, p := range c.national {
				if !got[p] {
					t.Errorf("the answer lacks %s, which the national example has; answer %s", p, res.Body)
				}
			}
		})
	}
}

// TestCPIS_RecordByNHSNumberOnly: a record whose subject is the NHS number
// alone (no Patient stored) is found by the lookup and notified on an
// attendance that names the child by NHS number.
func TestCPIS_RecordByNHSNumberOnly(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[3]
	subject := `{"identifier":{"system":"` + nhsSys + `","value":"` + nhs + `"}}`
	flag := strings.Replace(cpisFlag("Patient/x", cpp, "2026-01-15", "", "Organization/la-a"), `{"reference":"Patient/x"}`, subject, 1)
	flag = strings.Replace(flag, `{"reference":"Organization/la-a"}`, `{"reference":"Organization/la-a","identifier":{"system":"`+odsSys+`","value":"`+councilA+`"}}`, 1)
	do(t, http.MethodPost, ts.Base+"/Flag", flag, bearer(w.la)...).wantStatus(t, http.StatusCreated)
	if n := len(getSearchset(t, ts, lookupQuery("Flag", nhs), bearer(w.cl)...).mode("match")); n != 1 {
		t.Fatalf("lookup: %d Flags, want 1", n)
	}
	for range 2 {
		res := do(t, http.MethodPost, ts.Base+"/Encounter", encounter(subject), bearer(w.cl)...).wantStatus(t, http.StatusCreated)
		if res.Header.Get("Warning") == "" {
			t.Errorf("attendance of a child known by NHS number only: no Warning")
		}
	}
	cs := getSearchset(t, ts, "Communication?subject:identifier="+url.QueryEscape(nhsSys+"|"+nhs), bearer(w.la)...).mode("match")
	if len(cs) != 1 {
		t.Fatalf("notifications after two attendances: %d, want 1", len(cs))
	}
	if s := cs[0]["subject"].(map[string]any); s["reference"] != nil || s["identifier"] == nil {
		t.Errorf("notification subject %v, want the NHS number alone", s)
	}
}
