package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server"
)

const (
	profileBase = "https://fhir.cpis-fhir.org/StructureDefinition/"
	unborn      = "818901000000100" // Unborn child subject to child protection plan
	spineSystem = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SpineErrorOrWarningCode"
)

// cpisPatient is a Patient in the CP-IS Patient shape (verified NHS number,
// name, gender, birth date); claim adds meta.profile, restricted adds
// meta.security R.
func cpisPatient(id, nhs, gender, birth string, claim, restricted bool) string {
	var meta []string
	if claim {
		meta = append(meta, `"profile":["`+profileBase+`CPIS-Patient"]`)
	}
	if restricted {
		meta = append(meta, `"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]`)
	}
	idPart := ""
	if id != "" {
		idPart = `"id":"` + id + `",`
	}
	metaPart := ""
	if len(meta) > 0 {
		metaPart = `"meta":{` + strings.Join(meta, ",") + `},`
	}
	return `{"resourceType":"Patient",` + idPart + metaPart + `"identifier":[{"extension":[{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",` +
		`"valueCodeableConcept":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland","code":"01"}]}}],` +
		`"system":"` + nhsSys + `","value":"` + nhs + `"}],"name":[{"family":"Testchild","given":["Alex"]}],"gender":"` + gender + `","birthDate":"` + birth + `"}`
}

// cpisFlag is a CP-IS Flag (recognised by its code) on subject; an empty
// author leaves the author out.
func cpisFlag(subject, plan, start, end, author string) string {
	period := `"start":"` + start + `"`
	if end != "" {
		period += `,"end":"` + end + `"`
	}
	a := ""
	if author != "" {
		a = `,"author":{"reference":"` + author + `"}`
	}
	return `{"resourceType":"Flag","status":"active","category":[{"coding":[{"system":"` + snomed + `","code":"` + plan + `"}]}],"code":` + flagCode +
		`,"subject":{"reference":"` + subject + `"},"period":{` + period + `}` + a + `}`
}

// outcomeIssue is the part of an OperationOutcome issue the tests read.
type outcomeIssue struct {
	Severity, Code, Diagnostics string
	Expression                  []string
	Details                     struct {
		Coding []struct{ System, Code string }
	}
}

func issuesOf(tb testing.TB, res *response) []outcomeIssue {
	tb.Helper()
	var oo struct {
		ResourceType string
		Issue        []outcomeIssue
	}
	if err := json.Unmarshal(res.Body, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
		tb.Fatalf("%s %s: body %s, want an OperationOutcome", res.Request.Method, res.Request.URL.Path, res.Body)
	}
	return oo.Issue
}

// findIssue returns the first issue whose expression (its last one, after
// any Bundle.entry[i]) is expr, or nil.
func findIssue(issues []outcomeIssue, expr string) *outcomeIssue {
	for i, is := range issues {
		if n := len(is.Expression); n > 0 && is.Expression[n-1] == expr {
			return &issues[i]
		}
	}
	return nil
}

func TestValidate_WritesRefused(t *testing.T) {
	ts := startServer(t, server.Config{})
	put(t, ts, "Patient/child-1", cpisPatient("child-1", "9990000018", "female", "2015-04-01", true, false))
	put(t, ts, "Patient/restricted", cpisPatient("restricted", "9990000026", "female", "2015-04-01", false, true))
	put(t, ts, "Patient/boy", cpisPatient("boy", "9990000034", "male", "2010-06-01", false, false))
	put(t, ts, "Patient/adult", cpisPatient("adult", "9990000042", "female", "2008-01-15", false, false))
	put(t, ts, "Patient/nearly", cpisPatient("nearly", "9990000050", "female", "2008-01-16", false, false))

	for _, tt := range []struct {
		name, path, body string
		status           int
		expr, code       string // an issue expected at expr with code
		spine            string // its details code, if any
	}{
		{"valid CP-IS Flag", "Flag", cpisFlag("Patient/child-1", cpp, "2026-01-15", "", "Organization/la-1"), http.StatusCreated, "", "", ""},
		{"bad category", "Flag", cpisFlag("Patient/child-1", "123456", "2026-01-15", "", "Organization/la-1"), http.StatusUnprocessableEntity,
			"Flag.category[0]", "code-invalid", ""},
		{"no author", "Flag", cpisFlag("Patient/child-1", cpp, "2026-01-15", "", ""), http.StatusUnprocessableEntity, "Flag.author", "required", ""},
		// 9990000018 is valid (check digit 8); 9990000017 is not.
		{"NHS number check digit", "Patient", cpisPatient("", "9990000017", "female", "2015-04-01", true, false), http.StatusUnprocessableEntity,
			"Patient.identifier[0].value", "value", "INVALID_SEARCH_DATA"},
		{"restricted subject", "Flag", cpisFlag("Patient/restricted", cpp, "2026-01-15", "", "Organization/la-1"), http.StatusUnprocessableEntity,
			"Flag.subject", "business-rule", ""},
		{"unborn plan on a male", "Flag", cpisFlag("Patient/boy", unborn, "2026-01-15", "2026-09-01", "Organization/la-1"), http.StatusUnprocessableEntity,
			"Flag.subject", "business-rule", ""},
		// Born 2008-01-15: 18 on 2026-01-15, the plan start.
		{"CPP at 18", "Flag", cpisFlag("Patient/adult", cpp, "2026-01-15", "", "Organization/la-1"), http.StatusUnprocessableEntity,
			"Flag.period.start", "business-rule", ""},
		{"LAC at 18", "Flag", cpisFlag("Patient/adult", lac, "2026-01-15", "", "Organization/la-1"), http.StatusUnprocessableEntity,
			"Flag.period.start", "business-rule", ""},
		// Born 2008-01-16: 17 on 2026-01-15.
		{"CPP a day before 18", "Flag", cpisFlag("Patient/nearly", cpp, "2026-01-15", "", "Organization/la-1"), http.StatusCreated, "", "", ""},
		{"unborn plan on a woman", "Flag", cpisFlag("Patient/adult", unborn, "2026-01-15", "2026-09-01", "Organization/la-1"), http.StatusCreated, "", "", ""},
		{"subject unknown: data checks skipped", "Flag", cpisFlag("Patient/nobody", cpp, "2026-01-15", "", "Organization/la-1"), http.StatusCreated, "", "", ""},
		{"not a CP-IS Flag: not validated", "Flag", `{"resourceType":"Flag","status":"active","code":{"text":"x"},"subject":{"reference":"Patient/boy"}}`,
			http.StatusCreated, "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, http.MethodPost, ts.Base+"/"+tt.path, tt.body).wantStatus(t, tt.status)
			if tt.expr == "" {
				return
			}
			if strings.Contains(string(res.Body), "99900000") {
				t.Errorf("the OperationOutcome carries an NHS number: %s", res.Body)
			}
			is := findIssue(issuesOf(t, res), tt.expr)
			if is == nil {
				t.Fatalf("POST %s: issues %s, want one at %s", tt.path, res.Body, tt.expr)
			}
			if is.Severity != "error" || is.Code != tt.code {
				t.Errorf("issue at %s: %s %s, want error %s", tt.expr, is.Severity, is.Code, tt.code)
			}
			if tt.spine != "" && (len(is.Details.Coding) != 1 || is.Details.Coding[0].Code != tt.spine || is.Details.Coding[0].System != spineSystem) {
				t.Errorf("issue at %s: details %+v, want %s|%s", tt.expr, is.Details, spineSystem, tt.spine)
			}
		})
	}

	t.Run("update and patch are validated", func(t *testing.T) {
		f := cpisFlag("Patient/child-1", cpp, "2026-01-15", "", "Organization/la-1")
		put(t, ts, "Flag/f1", `{"id":"f1",`+f[1:])
		bad := cpisFlag("Patient/child-1", cpp, "2026-01-15", "", "")
		do(t, http.MethodPut, ts.Base+"/Flag/f1", `{"id":"f1",`+bad[1:]).wantStatus(t, http.StatusUnprocessableEntity)
		do(t, http.MethodPatch, ts.Base+"/Flag/f1", `[{"op":"remove","path":"/author"}]`, "Content-Type", "application/json-patch+json").
			wantStatus(t, http.StatusUnprocessableEntity)
		cond := url.QueryEscape("_id") + "=f1"
		do(t, http.MethodPatch, ts.Base+"/Flag?"+cond, `[{"op":"remove","path":"/author"}]`, "Content-Type", "application/json-patch+json").
			wantStatus(t, http.StatusUnprocessableEntity)
		do(t, http.MethodPut, ts.Base+"/Flag?"+cond, `{"id":"f1",`+bad[1:]).wantStatus(t, http.StatusUnprocessableEntity)
		if v := do(t, http.MethodGet, ts.Base+"/Flag/f1", "").wantStatus(t, http.StatusOK).Header.Get("ETag"); v != `W/"1"` {
			t.Errorf("Flag/f1 after refused writes: ETag %s, want W/\"1\"", v)
		}
	})
}

func TestValidate_Bundles(t *testing.T) {
	ts := startServer(t, server.Config{})
	entry := func(fullURL, resource, method, u string) string {
		return `{"fullUrl":"` + fullURL + `","resource":` + resource + `,"request":{"method":"` + method + `","url":"` + u + `"}}`
	}
	bundle := func(typ string, entries ...string) string {
		return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
	}
	const pu, fu = "urn:uuid:00000000-0000-4000-8000-000000000010", "urn:uuid:00000000-0000-4000-8000-000000000011"

	t.Run("transaction: a subject in the Bundle", func(t *testing.T) {
		// An unborn plan on a male Patient that is an entry of the same
		// Bundle: refused, nothing written.
		body := bundle("transaction",
			entry(pu, cpisPatient("", "9990000018", "male", "1990-01-01", true, false), "POST", "Patient"),
			entry(fu, cpisFlag(pu, unborn, "2026-01-15", "2026-09-01", "Organization/la-1"), "POST", "Flag"))
		res := do(t, http.MethodPost, ts.Base, body).wantStatus(t, http.StatusUnprocessableEntity)
		is := findIssue(issuesOf(t, res), "Flag.subject")
		if is == nil || is.Expression[0] != "Bundle.entry[1]" || !strings.Contains(is.Diagnostics, "entry 1") {
			t.Errorf("outcome %s, want an issue naming entry 1 at Flag.subject", res.Body)
		}
		if n := countPatients(t, ts, "9990000018"); n != 0 {
			t.Errorf("Patients written by the refused transaction: %d, want 0", n)
		}
		// The same for a woman is accepted.
		body = strings.Replace(body, `"gender":"male"`, `"gender":"female"`, 1)
		b := postBundle(t, ts, body, "transaction-response")
		if got := strings.Join(b.statuses(), " "); got != "201 201" {
			t.Errorf("statuses %s, want 201 201", got)
		}
	})

	t.Run("transaction: one invalid entry writes nothing", func(t *testing.T) {
		body := bundle("transaction",
			entry(pu, cpisPatient("", "9990000026", "female", "2015-04-01", true, false), "POST", "Patient"),
			entry(fu, cpisFlag(pu, cpp, "2026-01-15", "", ""), "POST", "Flag"))
		res := do(t, http.MethodPost, ts.Base, body).wantStatus(t, http.StatusUnprocessableEntity)
		if findIssue(issuesOf(t, res), "Flag.author") == nil {
			t.Errorf("outcome %s, want an issue at Flag.author", res.Body)
		}
		if n := countPatients(t, ts, "9990000026"); n != 0 {
			t.Errorf("Patients written by the refused transaction: %d, want 0", n)
		}
	})

	t.Run("batch: the failing entry only", func(t *testing.T) {
		body := bundle("batch",
			entry(pu, cpisPatient("", "9990000034", "female", "2015-04-01", true, false), "POST", "Patient"),
			entry(fu, cpisFlag("Patient/x", cpp, "2026-01-15", "", ""), "POST", "Flag"),
			entry("urn:uuid:00000000-0000-4000-8000-000000000012", cpisPatient("", "9990000033", "female", "2015-04-01", true, false), "POST", "Patient"))
		b := postBundle(t, ts, body, "batch-response")
		if got := strings.Join(b.statuses(), " "); got != "201 422 422" {
			t.Fatalf("statuses %s, want 201 422 422", got)
		}
		var oo struct{ Issue []outcomeIssue }
		json.Unmarshal(b.Entry[2].Response.Outcome, &oo)
		if is := findIssue(oo.Issue, "Patient.identifier[0].value"); is == nil || len(is.Details.Coding) == 0 || is.Details.Coding[0].Code != "INVALID_SEARCH_DATA" {
			t.Errorf("entry 2 outcome %s, want INVALID_SEARCH_DATA at Patient.identifier[0].value", b.Entry[2].Response.Outcome)
		}
		if n := countPatients(t, ts, "9990000034"); n != 1 {
			t.Errorf("Patients of the batch's valid entry: %d, want 1", n)
		}
	})
}

func TestValidate_Operation(t *testing.T) {
	ts := startServer(t, server.Config{})
	put(t, ts, "Patient/child-1", cpisPatient("child-1", "9990000018", "female", "2015-04-01", true, false))
	good := cpisFlag("Patient/child-1", cpp, "2026-01-15", "", "Organization/la-1")
	put(t, ts, "Flag/f1", `{"id":"f1",`+good[1:])
	// A valid resource without narrative gets the R4 best-practice
	// warning dom-6 and nothing else.
	noIssues := func(t *testing.T, res *response) {
		t.Helper()
		is := issuesOf(t, res)
		if len(is) != 1 || is[0].Severity != "warning" || !strings.HasPrefix(is[0].Diagnostics, "dom-6:") {
			t.Errorf("issues %s, want only the warning dom-6", res.Body)
		}
	}
	wantError := func(t *testing.T, res *response, expr string) {
		t.Helper()
		if is := findIssue(issuesOf(t, res), expr); is == nil || is.Severity != "error" {
			t.Errorf("issues %s, want an error at %s", res.Body, expr)
		}
	}
	t.Run("type, valid body", func(t *testing.T) {
		noIssues(t, do(t, http.MethodPost, ts.Base+"/Flag/$validate", good).wantStatus(t, http.StatusOK))
	})
	t.Run("type, invalid body", func(t *testing.T) {
		wantError(t, do(t, http.MethodPost, ts.Base+"/Flag/$validate", cpisFlag("Patient/child-1", cpp, "2026-01-15", "", "")).wantStatus(t, http.StatusOK), "Flag.author")
	})
	t.Run("type, base R4 error", func(t *testing.T) {
		wantError(t, do(t, http.MethodPost, ts.Base+"/Flag/$validate", `{"resourceType":"Flag","status":"bogus","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`).
			wantStatus(t, http.StatusOK), "Flag.status")
	})
	t.Run("Parameters with resource and profile", func(t *testing.T) {
		// A plain Patient (no verification status, no name) against the
		// CP-IS Patient profile it does not claim.
		body := `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":` + patientJSON("", "9990000017") +
			`},{"name":"profile","valueUri":"` + profileBase + `CPIS-Patient"}]}`
		res := do(t, http.MethodPost, ts.Base+"/Patient/$validate", body).wantStatus(t, http.StatusOK)
		wantError(t, res, "Patient.identifier[0].value")
		if strings.Contains(string(res.Body), "9990000017") {
			t.Errorf("the OperationOutcome carries the NHS number: %s", res.Body)
		}
	})
	t.Run("profile query parameter", func(t *testing.T) {
		res := do(t, http.MethodPost, ts.Base+"/Patient/$validate?profile="+url.QueryEscape(profileBase+"CPIS-Patient"), patientJSON("", "9990000018")).
			wantStatus(t, http.StatusOK)
		if is := findIssue(issuesOf(t, res), "Patient.identifier[0].extension"); is == nil || is.Severity != "error" {
			t.Errorf("issues %s, want an error (no verification status)", res.Body)
		}
		noIssues(t, do(t, http.MethodPost, ts.Base+"/Patient/$validate", patientJSON("", "9990000018")).wantStatus(t, http.StatusOK))
	})
	t.Run("base R4 definition", func(t *testing.T) {
		// Without a profile, or with the base one, a Patient is checked
		// against the R4 Patient definition: pat-1 (a contact needs
		// details), per-1 inside the Period data type, ele-1 (no empty
		// object).
		body := `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},` +
			`"contact":[{"gender":"female","period":{"start":"2026-02-01","end":"2026-01-01"}}],"maritalStatus":{}}`
		for _, q := range []string{"", "?profile=" + url.QueryEscape("http://hl7.org/fhir/StructureDefinition/Patient")} {
			res := do(t, http.MethodPost, ts.Base+"/Patient/$validate"+q, body).wantStatus(t, http.StatusOK)
			for _, expr := range []string{"Patient.contact[0]", "Patient.contact[0].period", "Patient.maritalStatus"} {
				wantError(t, res, expr)
			}
		}
		// The narrative a resource has is no warning.
		ok := `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"gender":"female"}`
		if is := issuesOf(t, do(t, http.MethodPost, ts.Base+"/Patient/$validate", ok).wantStatus(t, http.StatusOK)); len(is) != 1 || is[0].Diagnostics != "no issues found" {
			t.Errorf("issues %v, want no issues found", is)
		}
	})
	t.Run("instance, stored", func(t *testing.T) {
		noIssues(t, do(t, http.MethodPost, ts.Base+"/Flag/f1/$validate", "").wantStatus(t, http.StatusOK))
		do(t, http.MethodPost, ts.Base+"/Flag/nobody/$validate", "").wantStatus(t, http.StatusNotFound)
	})
	t.Run("instance, body", func(t *testing.T) {
		wantError(t, do(t, http.MethodPost, ts.Base+"/Flag/f1/$validate", cpisFlag("Patient/child-1", cpp, "2026-01-15", "", "")).wantStatus(t, http.StatusOK), "Flag.author")
	})
	t.Run("subject checks", func(t *testing.T) {
		put(t, ts, "Patient/r", cpisPatient("r", "9990000026", "female", "2015-04-01", false, true))
		wantError(t, do(t, http.MethodPost, ts.Base+"/Flag/$validate", cpisFlag("Patient/r", cpp, "2026-01-15", "", "Organization/la-1")).
			wantStatus(t, http.StatusOK), "Flag.subject")
	})
	t.Run("bad requests", func(t *testing.T) {
		do(t, http.MethodPost, ts.Base+"/Flag/$validate?profile="+url.QueryEscape(profileBase+"Nope"), good).wantStatus(t, http.StatusBadRequest)
		do(t, http.MethodPost, ts.Base+"/Patient/$validate", good).wantStatus(t, http.StatusBadRequest)
		do(t, http.MethodPost, ts.Base+"/Flag/$validate", "").wantStatus(t, http.StatusBadRequest)
	})
	if n := len(getBundle(t, ts.Base+"/Flag").Entry); n != 1 {
		t.Errorf("Flags after $validate: %d, want the 1 stored before", n)
	}
}

func TestStructureDefinitions(t *testing.T) {
	ts := startServer(t, server.Config{})
	b := getBundle(t, ts.Base+"/StructureDefinition?url="+url.QueryEscape(profileBase+"CPIS-Flag"))
	if len(b.Entry) != 1 {
		t.Fatalf("StructureDefinition?url=CPIS-Flag: %d entries, want 1", len(b.Entry))
	}
	var sd struct{ ResourceType, ID, URL, Type string }
	json.Unmarshal(b.Entry[0].Resource, &sd)
	if sd.ID != "CPIS-Flag" || sd.URL != profileBase+"CPIS-Flag" || sd.Type != "Flag" {
		t.Errorf("found %+v, want StructureDefinition CPIS-Flag for Flag", sd)
	}
	if n := len(getBundle(t, ts.Base+"/StructureDefinition").Entry); n != 9 {
		t.Errorf("StructureDefinitions: %d, want the 9 CP-IS profiles", n)
	}
	do(t, http.MethodGet, ts.Base+"/StructureDefinition/CPIS-Patient", "").wantStatus(t, http.StatusOK)

	// A second start over the same store writes nothing new.
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.New(ts.Store, codec, server.Config{Now: ts.Clock.Now}); err != nil {
		t.Fatal(err)
	}
	if v := do(t, http.MethodGet, ts.Base+"/StructureDefinition/CPIS-Flag", "").wantStatus(t, http.StatusOK).Header.Get("ETag"); v != `W/"1"` {
		t.Errorf("CPIS-Flag after a second start: ETag %s, want W/\"1\"", v)
	}

	// The CapabilityStatement lists the profile and $validate.
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type             string
				SupportedProfile []string
				Operation        []struct{ Name, Definition string }
			}
		}
	}
	json.Unmarshal(do(t, http.MethodGet, ts.Base+"/metadata", "").wantStatus(t, http.StatusOK).Body, &cs)
	found := false
	for _, r := range cs.Rest[0].Resource {
		if r.Type != "Flag" {
			continue
		}
		found = true
		if len(r.SupportedProfile) != 1 || r.SupportedProfile[0] != profileBase+"CPIS-Flag" {
			t.Errorf("Flag supportedProfile %v, want [%sCPIS-Flag]", r.SupportedProfile, profileBase)
		}
		if len(r.Operation) != 1 || r.Operation[0].Name != "validate" {
			t.Errorf("Flag operations %v, want validate", r.Operation)
		}
	}
	if !found {
		t.Error("no Flag in the CapabilityStatement")
	}
}
