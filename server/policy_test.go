package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
)

const (
	odsSys   = "https://fhir.nhs.uk/Id/ods-organization-code"
	councilA = "E09000001"
	councilB = "E09000002"
	siteODS  = "RXX01"
)

// policyWorld is a mixed data set: two councils, four children (child 1
// known to both councils, each with its own Patient), Flags, CarePlans,
// CareTeams (the national shape: subject by NHS number only), Encounters,
// Communications to each council and an AuditEvent. owner and about are
// the oracle: the council each record belongs to and the child (NHS
// number) it is about.
type policyWorld struct {
	ts         *testServer
	nhs        [4]string
	owner      map[string]string // Type/id -> ODS code of the owning council (Communication: recipient)
	about      map[string]string // Type/id -> NHS number of the child
	la, lb, cl string            // tokens: council A, council B, unscheduled clinician at siteODS
	cls        string            // scheduled clinician
}

func newPolicyWorld(t *testing.T) *policyWorld {
	t.Helper()
	ts := startServer(t, server.Config{})
	w := &policyWorld{ts: ts, owner: map[string]string{}, about: map[string]string{}}
	for i, serial := 0, 100; i < len(w.nhs); serial++ {
		if n, ok := fhirtest.NHSNumber(serial); ok {
			w.nhs[i] = n
			i++
		}
	}
	put := func(typ, id, body string) {
		t.Helper()
		do(t, http.MethodPut, ts.Base+"/"+typ+"/"+id, body).wantStatus(t, http.StatusCreated)
	}
	org := func(id, ods, name string) {
		put("Organization", id, `{"resourceType":"Organization","id":"`+id+`","identifier":[{"system":"`+odsSys+`","value":"`+ods+`"}],"name":"`+name+`"}`)
	}
	org("la-a", councilA, "Council A")
	org("la-b", councilB, "Council B")
	org("site", siteODS, "Hospital")
	owned := func(ods string) string {
		id := map[string]string{councilA: "la-a", councilB: "la-b"}[ods]
		return `{"reference":"Organization/` + id + `","identifier":{"system":"` + odsSys + `","value":"` + ods + `"}}`
	}
	child := func(pid string, n int, ods string) {
		nhs := w.nhs[n]
		body := strings.Replace(cpisPatient(pid, nhs, "female", "2015-04-01", false, false), `"gender"`, `"managingOrganization":`+owned(ods)+`,"gender"`, 1)
		put("Patient", pid, body)
		ref := "Patient/" + pid
		w.owner[ref], w.about[ref] = ods, nhs
		subject := `{"reference":"` + ref + `","identifier":{"system":"` + nhsSys + `","value":"` + nhs + `"}}`
		fid := "f-" + pid
		put("Flag", fid, `{"resourceType":"Flag","id":"`+fid+`","status":"active","category":[{"coding":[{"system":"`+snomed+`","code":"342191000000101"}]}],"code":`+flagCode+
			`,"subject":`+subject+`,"period":{"start":"2026-01-15"},"author":`+owned(ods)+`}`)
		w.owner["Flag/"+fid], w.about["Flag/"+fid] = ods, nhs
		cp := "cp-" + pid
		put("CarePlan", cp, `{"resourceType":"CarePlan","id":"`+cp+`","status":"active","intent":"plan","subject":{"reference":"`+ref+`"},"author":`+owned(ods)+`}`)
		w.owner["CarePlan/"+cp], w.about["CarePlan/"+cp] = ods, nhs
		ct := "ct-" + pid
		put("CareTeam", ct, `{"resourceType":"CareTeam","id":"`+ct+`","status":"active","subject":{"identifier":{"system":"`+nhsSys+`","value":"`+nhs+`"}},`+
			`"managingOrganization":[`+owned(ods)+`],"name":"Children's Social Care"}`)
		w.owner["CareTeam/"+ct], w.about["CareTeam/"+ct] = ods, nhs
		enc := "e-" + pid
		put("Encounter", enc, `{"resourceType":"Encounter","id":"`+enc+`","status":"arrived","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},`+
			`"subject":{"reference":"`+ref+`"},"serviceProvider":{"reference":"Organization/site","identifier":{"system":"`+odsSys+`","value":"`+siteODS+`"}}}`)
		w.about["Encounter/"+enc] = nhs
		com := "com-" + pid
		put("Communication", com, `{"resourceType":"Communication","id":"`+com+`","status":"completed","subject":{"reference":"`+ref+`"},`+
			`"encounter":{"reference":"Encounter/`+enc+`"},"about":[{"reference":"Flag/`+fid+`"}],"recipient":[`+owned(ods)+`],"payload":[{"contentString":"Access to Service Notification"}]}`)
		w.owner["Communication/"+com], w.about["Communication/"+com] = ods, nhs
	}
	child("pa1", 1, councilA)
	child("pb1", 1, councilB)
	child("pa2", 2, councilA)
	child("pb3", 3, councilB)
	put("AuditEvent", "ae-1", `{"resourceType":"AuditEvent","id":"ae-1","type":{"system":"http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle","code":"access"},`+
		`"recorded":"2026-02-01T10:15:30Z","agent":[{"who":{"identifier":{"system":"`+nhsSys+`","value":"`+w.nhs[1]+`"}},"requestor":false}],"source":{"observer":{"display":"cpis"}}}`)
	w.about["AuditEvent/ae-1"] = w.nhs[1] // an access AuditEvent about child 1, of no council
	w.la = ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: councilA, Subject: "la-a-system", ClientID: "la-a"})
	w.lb = ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: councilB, Subject: "la-b-system", ClientID: "la-b"})
	w.cl = ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: siteODS, SDSRole: "R8000", Subject: "dr-1", ClientID: "epr"})
	w.cls = ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianScheduled, ODS: "Y00001", SDSRole: "R8000", Subject: "gp-1", ClientID: "gp"})
	return w
}

// public reports whether every principal may see ref.
func public(ref string) bool {
	typ, _, _ := strings.Cut(ref, "/")
	switch typ {
	case "Organization", "StructureDefinition", "CodeSystem", "ValueSet", "SearchParameter":
		return true
	}
	return false
}

// entries returns the Type/id of every resource of a searchset or history
// Bundle (and of the Bundles inside a batch-response).
func entries(t *testing.T, body []byte) []string {
	t.Helper()
	var b struct {
		ResourceType string
		Entry        []struct {
			Resource json.RawMessage
		}
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	var out []string
	for _, e := range b.Entry {
		var r struct{ ResourceType, ID string }
		if len(e.Resource) == 0 || json.Unmarshal(e.Resource, &r) != nil {
			continue
		}
		switch r.ResourceType {
		case "OperationOutcome":
		case "Bundle":
			out = append(out, entries(t, e.Resource)...)
		default:
			out = append(out, r.ResourceType+"/"+r.ID)
		}
	}
	return out
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// TestPolicy_Leaks runs generated queries for each role over the mixed
// data set, over HTTP with real tokens, and checks every resource any
// answer holds against the oracle: a council sees only its own records
// (and public ones), a clinician only the one child its request names.
func TestPolicy_Leaks(t *testing.T) {
	w := newPolicyWorld(t)
	n := w.nhs
	nhsQ := func(k int) string { return url.QueryEscape(nhsSys + "|" + n[k]) }
	// Query templates: {N} is an NHS number (child 1, known to both
	// councils), {M} child 3 (council B only).
	var queries []string
	forms := []string{
		"Patient", "Patient?identifier={N}", "Patient?identifier={M}", "Patient?_id=pa1", "Patient?_id=pb1", "Patient?gender=female",
		"Patient?_has:Flag:patient:status=active", "Patient?identifier={N}&_has:Flag:patient:author:identifier=" + url.QueryEscape(odsSys+"|"+councilB),
		"Patient?identifier={N}&_revinclude=Flag:subject", "Patient?identifier={N}&_revinclude=*", "Patient?identifier={N}&_revinclude=Communication:subject",
		"Patient?identifier={N}&_revinclude=Flag:subject&_include:iterate=Flag:author&_revinclude:iterate=Flag:author",
		"Flag", "Flag?status=active", "Flag?subject:identifier={N}", "Flag?subject:identifier={M}", "Flag?subject:identifier={N}&status=active",
		"Flag?patient.identifier={N}", "Flag?patient.identifier={M}", "Flag?subject:Patient.identifier={N}", "Flag?patient=Patient/pb1", "Flag?subject=Patient/pa1",
		"Flag?patient.gender=female", "Flag?author:identifier=" + url.QueryEscape(odsSys+"|"+councilB), "Flag?author.name=Council",
		"Flag?subject:identifier={N}&_include=Flag:subject", "Flag?subject:identifier={N}&_include=*&_revinclude=*",
		"Flag?subject:identifier={N}&_include=Flag:author&_revinclude:iterate=Flag:author&_include:iterate=Flag:subject",
		"CarePlan?subject:identifier={N}", "CarePlan?patient.identifier={M}&_include=CarePlan:subject", "CarePlan?status=active",
		"CareTeam?patient:identifier={N}", "CareTeam?patient:identifier={M}", "CareTeam?status=active",
		"Encounter?patient.identifier={N}", "Encounter?status=arrived", "Encounter?subject=Patient/pb3&_revinclude=Communication:encounter",
		"Communication", "Communication?subject=Patient/pa1", "Communication?recipient:identifier=" + url.QueryEscape(odsSys+"|"+councilB), "Communication?_include=Communication:encounter",
		"AuditEvent", "AuditEvent?patient:identifier={N}",
		"Organization", "Organization?_revinclude=Flag:author", "Organization?_revinclude=Flag:author&_include:iterate=Flag:subject", "Organization?_has:Flag:author:status=active",
		"Patient/pa1/Flag", "Patient/pb1/Flag", "Patient/pb3/CarePlan", "Patient/pb3/Communication", "Patient/pa1/Encounter?_include=Encounter:subject",
		"?_type=Flag,Patient", "?_id=pa1,pb1",
		"_history", "Flag/_history", "Patient/pa1/_history", "Patient/pb1/_history", "Flag/f-pb3/_history", "Organization/_history",
		"Flag/f-pa1", "Flag/f-pb1", "Flag/f-pb3/_history/1", "Communication/com-pb3", "Encounter/e-pb3", "AuditEvent/ae-1",
	}
	// And the cross product of types, ways of naming a child and includes.
	for _, typ := range []string{"Patient", "Flag", "CarePlan", "CareTeam", "Encounter", "Communication", "AuditEvent", "Organization"} {
		pins := []string{"", "_lastUpdated=ge2000"}
		switch typ {
		case "Patient":
			pins = append(pins, "identifier={N}", "identifier={M}", "_id=pa1", "_id=pb3")
		case "Organization":
		default:
			pins = append(pins, "patient:identifier={N}", "patient:identifier={M}", "patient=Patient/pa1", "patient=Patient/pb3", "patient.identifier={N}")
		}
		for _, pin := range pins {
			for _, tail := range []string{"", "_include=*", "_revinclude=*", "_include=*&_revinclude=*&_include:iterate=*&_revinclude:iterate=*", "_summary=count", "_total=accurate&_count=1"} {
				q := typ + "?" + pin
				if tail != "" {
					q += "&" + tail
				}
				forms = append(forms, q)
			}
		}
	}
	for _, f := range forms {
		queries = append(queries, strings.NewReplacer("{N}", nhsQ(1), "{M}", nhsQ(3)).Replace(f))
	}
	type who struct {
		name, token, ods string
		clinician        bool
	}
	people := []who{{"council A", w.la, councilA, false}, {"council B", w.lb, councilB, false},
		{"unscheduled clinician", w.cl, "", true}, {"scheduled clinician", w.cls, "", true}}
	for _, p := range people {
		t.Run(p.name, func(t *testing.T) {
			seen := 0 // records (not public resources) returned, so that the test cannot pass by refusing all
			for _, q := range queries {
				// Scheduled reads, so that the world stays as the oracle
				// knows it (an unscheduled lookup writes access history
				// and notifications: TestCPIS_AccessHistory).
				hdr := append(bearer(p.token), "IsUnscheduledAccessEvent", "false")
				res := do(t, http.MethodGet, w.ts.Base+"/"+q, "", hdr...)
				check := func(where string, got []string) {
					for _, ref := range got {
						if public(ref) {
							continue
						}
						seen++
						if p.clinician {
							if !w.clinicianMaySee(t, q, ref) {
								t.Errorf("%s: GET %s%s: returned %s, which is not about the one child the request names", p.name, q, where, ref)
							}
							continue
						}
						if w.owner[ref] != p.ods {
							t.Errorf("%s: GET %s%s: returned %s, owned by %q", p.name, q, where, ref, w.owner[ref])
						}
					}
				}
				switch res.StatusCode {
				case http.StatusOK:
					var r struct{ ResourceType string }
					json.Unmarshal(res.Body, &r)
					if r.ResourceType == "Bundle" {
						check("", entries(t, res.Body))
					} else {
						var id struct{ ResourceType, ID string }
						json.Unmarshal(res.Body, &id)
						check("", []string{id.ResourceType + "/" + id.ID})
					}
				case http.StatusForbidden, http.StatusNotFound:
					res.outcome(t)
				default:
					t.Errorf("%s: GET %s: status %d; body %s", p.name, q, res.StatusCode, res.Body)
				}
				// The same request as a batch entry.
				body := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":` + jsonString(q) + `}}]}`
				bres := do(t, http.MethodPost, w.ts.Base, body, hdr...)
				if bres.StatusCode == http.StatusOK {
					check(" (batch entry)", entries(t, bres.Body))
				}
			}
			if seen < 20 {
				t.Errorf("%s: only %d records returned over %d queries; the policy refuses too much", p.name, seen, len(queries))
			}
			t.Logf("%s: %d records returned over %d queries (and their batch forms), none forbidden", p.name, seen, len(queries))
		})
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// clinicianMaySee reports whether a clinician's request q may return ref:
// a resource about the one child q names (by NHS number or Patient id).
func (w *policyWorld) clinicianMaySee(t *testing.T, q, ref string) bool {
	typ, _, _ := strings.Cut(ref, "/")
	switch typ {
	case "Patient", "Flag", "CarePlan", "CareTeam", "Encounter", "AuditEvent":
	default:
		return false
	}
	// Reads by id name their resource.
	if strings.HasPrefix(q, ref) {
		return true
	}
	child := ""
	for k, nhs := range w.nhs {
		if nhs != "" && strings.Contains(q, url.QueryEscape(nhsSys+"|"+nhs)) {
			child = w.nhs[k]
		}
	}
	for _, pid := range []string{"pa1", "pb1", "pa2", "pb3"} {
		if strings.Contains(q, "Patient/"+pid) || strings.Contains(q, "_id="+pid) {
			child = w.about["Patient/"+pid]
		}
	}
	return child != "" && w.about[ref] == child
}

// TestPolicy_Answers checks what each role is given, not only what it is
// refused, so that the leak test cannot pass by refusing everything.
func TestPolicy_Answers(t *testing.T) {
	w := newPolicyWorld(t)
	base := w.ts.Base
	nhs1 := url.QueryEscape(nhsSys + "|" + w.nhs[1])
	for _, c := range []struct {
		name, token, path string
		status            int
		want              []string // Type/id of the resources, in any order; nil: not checked
	}{
		{"council A lists its active Flags", w.la, "Flag?status=active", 200, []string{"Flag/f-pa1", "Flag/f-pa2"}},
		{"council B finds its own Patient for child 1", w.lb, "Patient?identifier=" + nhs1, 200, []string{"Patient/pb1"}},
		{"council A finds child 1's Flag with the Patient", w.la, "Flag?patient.identifier=" + nhs1 + "&_include=Flag:subject", 200, []string{"Flag/f-pa1", "Patient/pa1"}},
		{"council A reads its Communications", w.la, "Communication", 200, []string{"Communication/com-pa1", "Communication/com-pa2"}},
		{"council A reads another council's Flag", w.la, "Flag/f-pb1", 404, nil},
		{"council A reads another council's Flag history", w.la, "Flag/f-pb1/_history", 404, nil},
		{"council A reads another council's Flag version", w.la, "Flag/f-pb1/_history/1", 404, nil},
		{"council A reads an Encounter", w.la, "Encounter/e-pa1", 403, nil},
		{"council A searches AuditEvents: its access history only", w.la, "AuditEvent", 200, []string{}},
		{"council A type history", w.la, "Flag/_history", 403, nil},
		{"council A reads its Flag", w.la, "Flag/f-pa1", 200, nil},
		{"clinician looks child 1 up", w.cl, "Flag?subject:identifier=" + nhs1 + "&status=active", 200, []string{"Flag/f-pa1", "Flag/f-pb1"}},
		{"clinician national CareTeam lookup", w.cl, "CareTeam?patient:identifier=" + nhs1, 200, []string{"CareTeam/ct-pa1", "CareTeam/ct-pb1"}},
		{"clinician chained lookup with includes", w.cl, "Flag?patient.identifier=" + nhs1 + "&_include=Flag:subject&_include=Flag:author", 200,
			[]string{"Flag/f-pa1", "Flag/f-pb1", "Patient/pa1", "Patient/pb1", "Organization/la-a", "Organization/la-b"}},
		{"clinician revinclude from the council does not list other children", w.cl,
			"Flag?subject:identifier=" + nhs1 + "&_include=Flag:author&_revinclude:iterate=Flag:author", 200,
			[]string{"Flag/f-pa1", "Flag/f-pb1", "Organization/la-a", "Organization/la-b"}},
		{"clinician lists active Flags", w.cl, "Flag?status=active", 403, nil},
		{"clinician lists Patients", w.cl, "Patient", 403, nil},
		{"clinician chain not pinned", w.cl, "Flag?patient.gender=female", 403, nil},
		{"clinician two children at once", w.cl, "Flag?subject:identifier=" + nhs1 + "," + url.QueryEscape(w.nhs[3]), 403, nil},
		{"clinician system history", w.cl, "_history", 403, nil},
		{"clinician type history", w.cl, "Flag/_history", 403, nil},
		{"clinician compartment", w.cl, "Patient/pb3/Flag", 200, []string{"Flag/f-pb3"}},
		{"clinician reads a Communication", w.cl, "Communication/com-pa1", 403, nil},
		{"clinician reads the terminology", w.cl, "ValueSet?_summary=count", 200, nil},
		{"admin reads AuditEvents", w.ts.Token, "AuditEvent?_id=ae-1", 200, []string{"AuditEvent/ae-1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := do(t, http.MethodGet, base+"/"+c.path, "", bearer(c.token)...)
			if res.StatusCode != c.status {
				t.Fatalf("GET %s: status %d, want %d; body %s", c.path, res.StatusCode, c.status, res.Body)
			}
			if c.status != 200 {
				res.outcome(t)
				return
			}
			if c.want == nil {
				return
			}
			got := entries(t, res.Body)
			if !sameSet(got, c.want) {
				t.Errorf("GET %s: got %v, want %v", c.path, got, c.want)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		if m[x] == 0 {
			return false
		}
		m[x]--
	}
	return true
}

// TestPolicy_Writes checks the write side: a council writes its own
// records only, a clinician creates Encounters for its own site, and
// conditional interactions and transactions see only what the writer may.
func TestPolicy_Writes(t *testing.T) {
	w := newPolicyWorld(t)
	base := w.ts.Base
	flagFor := func(pid, ods string) string {
		org := map[string]string{councilA: "la-a", councilB: "la-b"}[ods]
		return `{"resourceType":"Flag","status":"active","category":[{"coding":[{"system":"` + snomed + `","code":"342191000000101"}]}],"code":` + flagCode +
			`,"subject":{"reference":"Patient/` + pid + `"},"period":{"start":"2026-01-15"},"author":{"reference":"Organization/` + org + `","identifier":{"system":"` + odsSys + `","value":"` + ods + `"}}}`
	}
	for _, c := range []struct {
		name, token, method, path, body string
		status                          int
	}{
		{"council A creates its Flag", w.la, "POST", "Flag", flagFor("pa2", councilA), 201},
		{"council A creates a Flag authored by B", w.la, "POST", "Flag", flagFor("pa2", councilB), 403},
		{"council A updates B's Flag", w.la, "PUT", "Flag/f-pb1", strings.Replace(flagFor("pb1", councilA), `{"resourceType":"Flag",`, `{"resourceType":"Flag","id":"f-pb1",`, 1), 403},
		{"council A deletes B's Flag", w.la, "DELETE", "Flag/f-pb1", "", 403},
		{"council A deletes its Flag", w.la, "DELETE", "Flag/f-pa2", "", 204},
		{"council A writes an Encounter", w.la, "POST", "Encounter", `{"resourceType":"Encounter","status":"arrived","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"}}`, 403},
		{"council A writes a ValueSet", w.la, "POST", "ValueSet", `{"resourceType":"ValueSet","status":"draft"}`, 403},
		{"clinician creates an Encounter at its site", w.cl, "POST", "Encounter", `{"resourceType":"Encounter","status":"arrived","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},` +
			`"subject":{"reference":"Patient/pa1"},"serviceProvider":{"identifier":{"system":"` + odsSys + `","value":"` + siteODS + `"}}}`, 201},
		{"clinician creates an Encounter for another site", w.cl, "POST", "Encounter", `{"resourceType":"Encounter","status":"arrived","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},` +
			`"serviceProvider":{"identifier":{"system":"` + odsSys + `","value":"RYY99"}}}`, 403},
		{"clinician writes a Flag", w.cl, "POST", "Flag", flagFor("pa1", councilA), 403},
		{"clinician updates an Encounter", w.cl, "PUT", "Encounter/e-pa1", `{"resourceType":"Encounter","id":"e-pa1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"}}`, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := do(t, c.method, base+"/"+c.path, c.body, bearer(c.token)...)
			if res.StatusCode != c.status {
				t.Fatalf("%s %s: status %d, want %d; body %s", c.method, c.path, res.StatusCode, c.status, res.Body)
			}
			if c.status >= 400 {
				res.outcome(t)
			}
		})
	}
	// B's Flag is untouched.
	do(t, http.MethodGet, base+"/Flag/f-pb1", "").wantStatus(t, http.StatusOK)

	t.Run("conditional create matches only the council's own Patient", func(t *testing.T) {
		// Child 3 has only council B's Patient: council A's conditional
		// create must create its own rather than match (and show) B's.
		nhs3 := w.nhs[3]
		body := strings.Replace(cpisPatient("", nhs3, "female", "2015-04-01", false, false), `"gender"`,
			`"managingOrganization":{"identifier":{"system":"`+odsSys+`","value":"`+councilA+`"}},"gender"`, 1)
		res := do(t, http.MethodPost, base+"/Patient", body, append(bearer(w.la), "If-None-Exist", "identifier="+nhsSys+"|"+nhs3)...)
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("conditional create: status %d, want 201 (a new Patient of council A); body %s", res.StatusCode, res.Body)
		}
	})
	t.Run("transaction with a conditional reference to another council's Patient", func(t *testing.T) {
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000001","resource":` +
			strings.Replace(flagFor("x", councilA), `"reference":"Patient/x"`, `"reference":"Patient?_id=pb3"`, 1) + `,"request":{"method":"POST","url":"Flag"}}]}`
		res := do(t, http.MethodPost, base, tx, bearer(w.la)...)
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("transaction: status %d, want 404 (no Patient of council A matches); body %s", res.StatusCode, res.Body)
		}
	})
	t.Run("batch: each entry on its own", func(t *testing.T) {
		b := `{"resourceType":"Bundle","type":"batch","entry":[` +
			`{"resource":` + flagFor("pa1", councilA) + `,"request":{"method":"POST","url":"Flag"}},` +
			`{"resource":` + flagFor("pb1", councilB) + `,"request":{"method":"POST","url":"Flag"}},` +
			`{"request":{"method":"GET","url":"Flag/f-pb3"}},{"request":{"method":"DELETE","url":"Flag/f-pb3"}}]}`
		res := do(t, http.MethodPost, base, b, bearer(w.la)...).wantStatus(t, http.StatusOK)
		var out struct {
			Entry []struct{ Response struct{ Status string } }
		}
		json.Unmarshal(res.Body, &out)
		var got []string
		for _, e := range out.Entry {
			got = append(got, e.Response.Status[:3])
		}
		if strings.Join(got, ",") != "201,403,404,403" {
			t.Errorf("batch statuses %v, want [201 403 404 403]", got)
		}
	})
}

// TestPolicy_PatientScopes checks that patient/ scopes cover the launch
// patient's data only.
func TestPolicy_PatientScopes(t *testing.T) {
	w := newPolicyWorld(t)
	tok := w.ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: siteODS, Subject: "dr-2", ClientID: "app",
		Scope: "launch/patient patient/Flag.rs patient/Patient.rs user/Organization.rs", Patient: "pa1"})
	nhs1 := url.QueryEscape(nhsSys + "|" + w.nhs[1])
	res := do(t, http.MethodGet, w.ts.Base+"/Flag?subject:identifier="+nhs1+"&_include=Flag:subject&_include=Flag:author", "", bearer(tok)...).wantStatus(t, http.StatusOK)
	if got, want := entries(t, res.Body), []string{"Flag/f-pa1", "Patient/pa1", "Organization/la-a"}; !sameSet(got, want) {
		t.Errorf("child 1's Flags with launch patient pa1: %v, want %v (not council B's Patient pb1 or its Flag)", got, want)
	}
	do(t, http.MethodGet, w.ts.Base+"/Flag/f-pa1", "", bearer(tok)...).wantStatus(t, http.StatusOK)
	do(t, http.MethodGet, w.ts.Base+"/Flag/f-pb1", "", bearer(tok)...).wantStatus(t, http.StatusNotFound)
	do(t, http.MethodGet, w.ts.Base+"/CarePlan?subject=Patient/pa1", "", bearer(tok)...).wantStatus(t, http.StatusForbidden)
}

// TestPolicy_Operations checks $validate on an instance (it reads the
// instance) and a transaction's read entries.
func TestPolicy_Operations(t *testing.T) {
	w := newPolicyWorld(t)
	base := w.ts.Base
	do(t, http.MethodPost, base+"/Flag/f-pa1/$validate", "", bearer(w.la)...).wantStatus(t, http.StatusOK)
	do(t, http.MethodPost, base+"/Flag/f-pb1/$validate", "", bearer(w.la)...).wantStatus(t, http.StatusNotFound)
	do(t, http.MethodPost, base+"/Communication/com-pa1/$validate", "", bearer(w.cl)...).wantStatus(t, http.StatusForbidden)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Flag/f-pb1"}},` +
		`{"request":{"method":"GET","url":"Flag?status=active"}}]}`
	res := do(t, http.MethodPost, base, tx, bearer(w.la)...)
	for _, ref := range entries(t, res.Body) {
		if w.owner[ref] != councilA {
			t.Errorf("transaction of council A returned %s", ref)
		}
	}
	if strings.Contains(string(res.Body), `"f-pb1"`) {
		t.Errorf("transaction of council A shows council B's Flag: %s", res.Body)
	}
}

// TestPolicy_Totals checks that counts see only what the principal may.
func TestPolicy_Totals(t *testing.T) {
	w := newPolicyWorld(t)
	for _, c := range []struct {
		who, token, path string
		want             float64
	}{
		{"council A", w.la, "Flag?_summary=count", 2},
		{"council B", w.lb, "Patient?_total=accurate&_count=1", 2},
		{"council A", w.la, "Communication?_summary=count", 2},
		{"clinician", w.cl, "Flag?subject:identifier=" + url.QueryEscape(nhsSys+"|"+w.nhs[1]) + "&_summary=count", 2},
		{"admin", w.ts.Token, "Flag?_summary=count", 4},
	} {
		res := do(t, http.MethodGet, w.ts.Base+"/"+c.path, "", bearer(c.token)...).wantStatus(t, http.StatusOK)
		if got := res.object(t)["total"]; got != c.want {
			t.Errorf("%s: GET %s: total %v, want %v", c.who, c.path, got, c.want)
		}
	}
}
