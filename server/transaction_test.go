package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cpis-fhir/cpis/profiles"
	"github.com/cpis-fhir/cpis/server"
)

// responseBundle is the part of a transaction-response or batch-response
// Bundle the tests read.
type responseBundle struct {
	ResourceType, Type string
	Entry              []struct {
		FullURL  string
		Resource json.RawMessage
		Response struct {
			Status, Location, Etag, LastModified string
			Outcome                              json.RawMessage
		}
	}
}

func (b *responseBundle) statuses() []string {
	var out []string
	for _, e := range b.Entry {
		out = append(out, strings.Fields(e.Response.Status)[0])
	}
	return out
}

// postBundle POSTs a Bundle to the base and decodes the response Bundle of
// the type want.
func postBundle(tb testing.TB, ts *testServer, body, want string, headers ...string) *responseBundle {
	tb.Helper()
	res := do(tb, http.MethodPost, ts.Base, body, headers...).wantStatus(tb, http.StatusOK)
	var b responseBundle
	if err := json.Unmarshal(res.Body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != want {
		tb.Fatalf("POST %s: body %s, want a %s Bundle", ts.Base, res.Body, want)
	}
	return &b
}

func readExample(tb testing.TB, name string) map[string]any {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "r4-examples", name))
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// countPatients returns the number of current Patients with the NHS number.
func countPatients(tb testing.TB, ts *testServer, nhs string) int {
	tb.Helper()
	b := getBundle(tb, ts.Base+"/Patient?_total=accurate&identifier="+url.QueryEscape(nhsSys+"|"+nhs))
	return *b.Total
}

// TestTransaction_OfficialExample runs Bundle-bundle-transaction.json, the
// R4 transaction example. Whole, it fails: its entry 7 calls the
// ValueSet/$lookup operation, which this server does not support inside
// Bundles, so nothing is written and the OperationOutcome names entry 7.
// Without that entry it succeeds with the statuses the R4 rules give for
// this server's store (hand-worked below, in request order).
func TestTransaction_OfficialExample(t *testing.T) {
	ts := startServer(t, server.Config{})
	// The resources the example expects to exist: Patient/123a at version
	// 2 (its PUT has ifMatch W/"2"), Patient/234 (deleted), Patient/12334
	// at version 4 (its GET has ifNoneMatch W/"4").
	put(t, ts, "Patient/123a", patientJSON("123a", nhs1))
	put(t, ts, "Patient/123a", patientJSON("123a", nhs1))
	put(t, ts, "Patient/234", patientJSON("234", nhs2))
	for range 4 {
		put(t, ts, "Patient/12334", patientJSON("12334", "9990000034"))
	}
	ex := readExample(t, "Bundle-bundle-transaction.json")

	t.Run("whole example fails on the operation entry", func(t *testing.T) {
		res := do(t, http.MethodPost, ts.Base, mustJSON(t, ex)).wantStatus(t, http.StatusBadRequest)
		code, diag, _ := res.outcome(t)
		if code != "not-supported" || !strings.Contains(diag, "entry 7 (fullUrl urn:uuid:79378cb8-8f58-48e8-a5e8-60ac2755b674)") {
			t.Errorf("outcome %q %q, want not-supported naming entry 7 and its fullUrl", code, diag)
		}
		if n := len(getBundle(t, ts.Base+"/Patient?name=peter").Entry); n != 0 {
			t.Errorf("Patients named Peter after the failed transaction: %d, want 0", n)
		}
	})

	t.Run("without the operation", func(t *testing.T) {
		entries := ex["entry"].([]any)
		ex["entry"] = append(append([]any{}, entries[:7]...), entries[8:]...)
		b := postBundle(t, ts, mustJSON(t, ex), "transaction-response")
		// POST, POST ifNoneExist (no match), PUT Patient/123 (new), PUT
		// Patient?identifier (no match: create), PUT 123a ifMatch 2,
		// DELETE Patient/234, DELETE Patient?identifier (no match),
		// GET Patient?name=peter, GET Patient/12334 ifNoneMatch 4.
		want := []string{"201", "201", "201", "201", "200", "204", "204", "200", "304"}
		if got := b.statuses(); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("statuses %v, want %v", got, want)
		}
		if loc := b.Entry[4].Response.Location; !strings.HasSuffix(loc, "/Patient/123a/_history/3") {
			t.Errorf("PUT Patient/123a location %q, want .../Patient/123a/_history/3", loc)
		}
		if loc := b.Entry[2].Response.Location; !strings.HasSuffix(loc, "/Patient/123/_history/1") {
			t.Errorf("PUT Patient/123 location %q, want .../Patient/123/_history/1", loc)
		}
		// One commit: every write has the same lastModified.
		lm := b.Entry[0].Response.LastModified
		for _, i := range []int{1, 2, 3, 4, 5} {
			if b.Entry[i].Response.LastModified != lm {
				t.Errorf("entry %d lastModified %q, want the commit's %q", i, b.Entry[i].Response.LastModified, lm)
			}
		}
		// The search inside sees the transaction's five Peters.
		var sb searchBundle
		if err := json.Unmarshal(b.Entry[7].Resource, &sb); err != nil || len(sb.Entry) != 5 {
			t.Errorf("search entry: %d matches (%v), want the 5 Patients the transaction wrote", len(sb.Entry), err)
		}
		do(t, http.MethodGet, ts.Base+"/Patient/234", "").wantStatus(t, http.StatusGone)
		if n := len(getBundle(t, ts.Base+"/Patient?name=peter").Entry); n != 5 {
			t.Errorf("Patients named Peter after the transaction: %d, want 5", n)
		}
	})
}

// TestBatch_OfficialExample runs Bundle-bundle-request-simplesummary.json,
// the R4 batch example: four GETs, each on its own. Patient/example does
// not exist here, so its entry is 404 with an OperationOutcome; the three
// searches succeed (empty).
func TestBatch_OfficialExample(t *testing.T) {
	ts := startServer(t, server.Config{})
	ex := readExample(t, "Bundle-bundle-request-simplesummary.json")
	b := postBundle(t, ts, mustJSON(t, ex), "batch-response")
	if got, want := strings.Join(b.statuses(), " "), "404 200 200 200"; got != want {
		t.Fatalf("statuses %s, want %s", got, want)
	}
	var oo struct{ ResourceType string }
	if err := json.Unmarshal(b.Entry[0].Response.Outcome, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
		t.Errorf("entry 0 outcome %s, want an OperationOutcome", b.Entry[0].Response.Outcome)
	}
	// With Patient/example there, the read succeeds and its Condition
	// search finds the one Condition of the patient.
	put(t, ts, "Patient/example", patientJSON("example", nhs1))
	put(t, ts, "Condition/c1", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/example"}}`)
	b = postBundle(t, ts, mustJSON(t, ex), "batch-response")
	if got, want := strings.Join(b.statuses(), " "), "200 200 200 200"; got != want {
		t.Fatalf("statuses %s, want %s", got, want)
	}
	var sb searchBundle
	if err := json.Unmarshal(b.Entry[1].Resource, &sb); err != nil || len(sb.Entry) != 1 {
		t.Errorf("Condition?patient=example: %d matches, want 1", len(sb.Entry))
	}
}

// TestBatch_EntriesOnTheirOwn: a failing batch entry does not stop the
// others.
func TestBatch_EntriesOnTheirOwn(t *testing.T) {
	ts := startServer(t, server.Config{})
	put(t, ts, "Patient/p1", patientJSON("p1", nhs1))
	body := `{"resourceType":"Bundle","type":"batch","entry":[
		{"resource":` + patientJSON("", nhs2) + `,"request":{"method":"POST","url":"Patient"}},
		{"resource":` + patientJSON("p1", nhs1) + `,"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\"7\""}},
		{"request":{"method":"DELETE","url":"Patient/p1"}}]}`
	b := postBundle(t, ts, body, "batch-response")
	if got, want := strings.Join(b.statuses(), " "), "201 412 204"; got != want {
		t.Fatalf("statuses %s, want %s", got, want)
	}
	if countPatients(t, ts, nhs2) != 1 {
		t.Errorf("the batch's created Patient is missing")
	}
	do(t, http.MethodGet, ts.Base+"/Patient/p1", "").wantStatus(t, http.StatusGone)
}

// councilUpload is a CP-IS council's upload for one child: the Patient
// created only if no Patient has the NHS number, and a Flag, CarePlan and
// CareTeam that refer to it and to each other by urn:uuid. The Flag also
// refers to the Patient from an extension and from a contained
// Provenance-like resource (a contained Basic), which must be rewritten
// too. flagStatus "bogus" makes the Flag invalid... it is kept valid; bad
// makes the CareTeam entry fail (its PUT names a version that does not
// exist), to test rollback.
func councilUpload(nhs string, n int, bad bool) string {
	nums := []string{nhs}
	if n > 1 {
		nums = nums[:0]
		for i := range n {
			nums = append(nums, nhsNumber(i))
		}
	}
	return councilBundle(nums, bad)
}

// councilBundle is councilUpload for one child per NHS number.
func councilBundle(nums []string, bad bool) string {
	n := len(nums)
	var entries []string
	for i := range n {
		p, f, cp, ct := fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", 4*i), fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", 4*i+1),
			fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", 4*i+2), fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", 4*i+3)
		num := nums[i]
		entries = append(entries,
			`{"fullUrl":"`+p+`","resource":`+patientJSON("", num)+`,"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=`+url.QueryEscape(nhsSys+"|"+num)+`"}}`,
			`{"fullUrl":"`+f+`","resource":{"resourceType":"Flag","status":"active","code":`+flagCode+`,
				"category":[{"coding":[{"system":"`+snomed+`","code":"`+cpp+`"}]}],
				"extension":[{"url":"https://example.org/cpis/plan","valueReference":{"reference":"`+cp+`"}}],
				"contained":[{"resourceType":"Basic","id":"note","code":{"text":"note"},"subject":{"reference":"`+p+`"}}],
				"subject":{"reference":"`+p+`"},"period":{"start":"2026-01-15"},"author":{"reference":"Organization/la-1"}},"request":{"method":"POST","url":"Flag"}}`,
			`{"fullUrl":"`+cp+`","resource":{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"`+p+`"},
				"careTeam":[{"reference":"`+ct+`"}]},"request":{"method":"POST","url":"CarePlan"}}`,
		)
		if bad && i == n-1 {
			entries = append(entries, `{"fullUrl":"`+ct+`","resource":{"resourceType":"CareTeam","id":"ct-bad","subject":{"reference":"`+p+`"}},
				"request":{"method":"PUT","url":"CareTeam/ct-bad","ifMatch":"W/\"3\""}}`)
		} else {
			entries = append(entries, `{"fullUrl":"`+ct+`","resource":{"resourceType":"CareTeam","status":"active","subject":{"reference":"`+p+`"}},
				"request":{"method":"POST","url":"CareTeam"}}`)
		}
	}
	return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
}

// nhsNumber returns the i-th valid test NHS number 999000000c.. (the 999
// range, Modulus 11 check digit; numbers whose check digit would be 10 are
// skipped).
func nhsNumber(i int) string {
	for n := 999000000; ; n++ {
		num, ok := nhsWithCheck(n)
		if !ok {
			continue
		}
		if i == 0 {
			return num
		}
		i--
	}
}

// nhsWithCheck appends the Modulus 11 check digit to the nine digits n;
// ok is false when there is none (the check digit would be 10).
func nhsWithCheck(n int) (string, bool) {
	s := fmt.Sprint(n)
	c, ok := profiles.NHSCheckDigit(s)
	if !ok {
		return "", false
	}
	return s + string(c), true
}

func TestTransaction_CouncilUpload(t *testing.T) {
	ts := startServer(t, server.Config{})
	const nhs = "9990000042"
	b := postBundle(t, ts, councilUpload(nhs, 1, false), "transaction-response")
	if got, want := strings.Join(b.statuses(), " "), "201 201 201 201"; got != want {
		t.Fatalf("statuses %s, want %s", got, want)
	}
	var patient, careTeam, carePlan string
	refOf := func(i int) string {
		var r struct{ ResourceType, ID string }
		json.Unmarshal(b.Entry[i].Resource, &r)
		return r.ResourceType + "/" + r.ID
	}
	patient, carePlan, careTeam = refOf(0), refOf(2), refOf(3)
	var flag struct {
		Subject   struct{ Reference string }
		Extension []struct{ ValueReference struct{ Reference string } }
		Contained []struct{ Subject struct{ Reference string } }
	}
	if err := json.Unmarshal(b.Entry[1].Resource, &flag); err != nil {
		t.Fatal(err)
	}
	if flag.Subject.Reference != patient || flag.Extension[0].ValueReference.Reference != carePlan || flag.Contained[0].Subject.Reference != patient {
		t.Errorf("Flag subject %q, extension %q, contained subject %q; want %q, %q, %q",
			flag.Subject.Reference, flag.Extension[0].ValueReference.Reference, flag.Contained[0].Subject.Reference, patient, carePlan, patient)
	}
	var cp struct{ CareTeam []struct{ Reference string } }
	json.Unmarshal(b.Entry[2].Resource, &cp)
	if cp.CareTeam[0].Reference != careTeam {
		t.Errorf("CarePlan.careTeam %q, want %q", cp.CareTeam[0].Reference, careTeam)
	}
	// The references are searchable at once.
	if n := len(getBundle(t, ts.Base+"/Flag?patient.identifier="+url.QueryEscape(nhsSys+"|"+nhs)).Entry); n != 1 {
		t.Errorf("Flags of the child by NHS number: %d, want 1", n)
	}

	t.Run("resent: no duplicate Patient", func(t *testing.T) {
		b := postBundle(t, ts, councilUpload(nhs, 1, false), "transaction-response")
		if got, want := strings.Join(b.statuses(), " "), "200 201 201 201"; got != want {
			t.Fatalf("statuses %s, want %s", got, want)
		}
		if countPatients(t, ts, nhs) != 1 {
			t.Errorf("Patients with the NHS number after resending: want 1")
		}
		var f struct{ Subject struct{ Reference string } }
		json.Unmarshal(b.Entry[1].Resource, &f)
		if f.Subject.Reference != patient {
			t.Errorf("resent Flag subject %q, want the existing %q", f.Subject.Reference, patient)
		}
	})

	t.Run("one failing entry rolls back everything", func(t *testing.T) {
		const other = "9990000050"
		res := do(t, http.MethodPost, ts.Base, councilUpload(other, 1, true)).wantStatus(t, http.StatusPreconditionFailed)
		_, diag, expr := res.outcome(t)
		if !strings.Contains(diag, "entry 3 (fullUrl urn:uuid:00000000-0000-4000-8000-000000000003)") || len(expr) == 0 || expr[0] != "Bundle.entry[3]" {
			t.Errorf("outcome %q %v, want it to name entry 3 and its fullUrl", diag, expr)
		}
		if strings.Contains(string(res.Body), other) {
			t.Errorf("the OperationOutcome carries the NHS number: %s", res.Body)
		}
		if n := countPatients(t, ts, other); n != 0 {
			t.Errorf("Patients created by the failed transaction: %d, want 0", n)
		}
		if n := len(getBundle(t, ts.Base+"/CarePlan").Entry); n != 2 {
			t.Errorf("CarePlans after the failed transaction: %d, want the 2 of the earlier uploads", n)
		}
	})
}

func TestTransaction_ConditionalReference(t *testing.T) {
	ts := startServer(t, server.Config{})
	put(t, ts, "Patient/a", patientJSON("a", nhs1))
	put(t, ts, "Patient/b", patientJSON("b", nhs2))
	put(t, ts, "Patient/b2", patientJSON("b2", nhs2))
	flag := func(cond string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Flag","status":"active","code":` + flagCode +
			`,"category":[{"coding":[{"system":"` + snomed + `","code":"` + cpp + `"}]}],"period":{"start":"2026-01-15"},"author":{"reference":"Organization/la-1"}` +
			`,"subject":{"reference":"Patient?identifier=` + url.QueryEscape(nhsSys+"|"+cond) + `"}},"request":{"method":"POST","url":"Flag"}}]}`
	}
	b := postBundle(t, ts, flag(nhs1), "transaction-response")
	var f struct{ Subject struct{ Reference string } }
	json.Unmarshal(b.Entry[0].Resource, &f)
	if f.Subject.Reference != "Patient/a" {
		t.Errorf("resolved subject %q, want Patient/a", f.Subject.Reference)
	}
	do(t, http.MethodPost, ts.Base, flag("9990000034")).wantStatus(t, http.StatusNotFound)
	do(t, http.MethodPost, ts.Base, flag(nhs2)).wantStatus(t, http.StatusPreconditionFailed)
}

func TestTransaction_Limits(t *testing.T) {
	ts := startServer(t, server.Config{MaxBundleEntries: 3})
	body := councilUpload("9990000069", 1, false) // 4 entries
	res := do(t, http.MethodPost, ts.Base, body).wantStatus(t, http.StatusRequestEntityTooLarge)
	if code, _, _ := res.outcome(t); code != "too-long" {
		t.Errorf("issue code %q, want too-long", code)
	}
	do(t, http.MethodPost, ts.Base, patientJSON("", nhs1)).wantStatus(t, http.StatusBadRequest)
	do(t, http.MethodPost, ts.Base, `{"resourceType":"Bundle","type":"collection"}`).wantStatus(t, http.StatusBadRequest)
	dup := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":` + patientJSON("x", nhs1) + `,"request":{"method":"PUT","url":"Patient/x"}},
		{"request":{"method":"DELETE","url":"Patient/x"}}]}`
	do(t, http.MethodPost, ts.Base, dup).wantStatus(t, http.StatusBadRequest)
}

// TestConditionalCreate_Concurrent: fifty clients send the same
// conditional create at once; exactly one Patient results, one answer is
// 201 and the other 49 are 200 naming it.
func TestConditionalCreate_Concurrent(t *testing.T) {
	ts := startServer(t, server.Config{})
	const nhs = "9990000077"
	cond := "identifier=" + url.QueryEscape(nhsSys+"|"+nhs)
	var wg sync.WaitGroup
	statuses := make([]int, 50)
	locs := make([]string, 50)
	for i := range statuses {
		wg.Go(func() {
			res := do(t, http.MethodPost, ts.Base+"/Patient", patientJSON("", nhs), "If-None-Exist", cond)
			statuses[i] = res.StatusCode
			var r struct{ ID string }
			json.Unmarshal(res.Body, &r)
			locs[i] = r.ID
		})
	}
	wg.Wait()
	created := 0
	for i, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Errorf("client %d: status %d, want 201 or 200", i, s)
		}
		if locs[i] != locs[0] {
			t.Errorf("client %d got Patient/%s, client 0 Patient/%s; want one Patient", i, locs[i], locs[0])
		}
	}
	if created != 1 {
		t.Errorf("%d answers were 201, want 1", created)
	}
	if n := countPatients(t, ts, nhs); n != 1 {
		t.Errorf("%d Patients with the NHS number, want 1", n)
	}
}

// TestTransaction_ConcurrentUploadsOnePatient: concurrent council uploads
// for the same child (conditional create in a transaction) make one
// Patient.
func TestTransaction_ConcurrentUploadsOnePatient(t *testing.T) {
	ts := startServer(t, server.Config{})
	const nhs = "9990000085"
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			do(t, http.MethodPost, ts.Base, councilUpload(nhs, 1, false)).wantStatus(t, http.StatusOK)
		})
	}
	wg.Wait()
	if n := countPatients(t, ts, nhs); n != 1 {
		t.Errorf("%d Patients with the NHS number, want 1", n)
	}
	if n := len(getBundle(t, ts.Base+"/Flag?_count=100").Entry); n != 20 {
		t.Errorf("%d Flags, want 20 (one per upload)", n)
	}
}

// TestTransaction_NoLostUpdate: clients update one Patient by transaction
// with ifMatch, each adding an identifier of its own and retrying on 412.
// Every addition must be in the final version, which is version 1 + the
// number of additions.
func TestTransaction_NoLostUpdate(t *testing.T) {
	ts := startServer(t, server.Config{})
	put(t, ts, "Patient/shared", `{"resourceType":"Patient","id":"shared"}`)
	const clients, each = 6, 5
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for k := range each {
				for {
					cur := do(t, http.MethodGet, ts.Base+"/Patient/shared", "").wantStatus(t, http.StatusOK)
					var p map[string]any
					json.Unmarshal(cur.Body, &p)
					ids, _ := p["identifier"].([]any)
					p["identifier"] = append(ids, map[string]any{"system": "https://example.org/test", "value": fmt.Sprintf("c%d-%d", c, k)})
					delete(p, "meta")
					body := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + mustJSON(t, p) +
						`,"request":{"method":"PUT","url":"Patient/shared","ifMatch":` + mustJSON(t, cur.Header.Get("ETag")) + `}}]}`
					res := do(t, http.MethodPost, ts.Base, body)
					if res.StatusCode == http.StatusOK {
						break
					}
					if res.StatusCode != http.StatusPreconditionFailed {
						t.Errorf("transaction: status %d, want 200 or 412; body %s", res.StatusCode, res.Body)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	res := do(t, http.MethodGet, ts.Base+"/Patient/shared", "").wantStatus(t, http.StatusOK)
	var p struct {
		Meta       struct{ VersionID string }
		Identifier []struct{ Value string }
	}
	json.Unmarshal(res.Body, &p)
	if len(p.Identifier) != clients*each || p.Meta.VersionID != fmt.Sprint(1+clients*each) {
		t.Errorf("final Patient has %d identifiers at version %s, want %d at version %d", len(p.Identifier), p.Meta.VersionID, clients*each, 1+clients*each)
	}
}

func TestConditionalUpdateAndDelete(t *testing.T) {
	ts := startServer(t, server.Config{})
	q := "?identifier=" + url.QueryEscape(nhsSys+"|"+nhs1)
	// No match: created with a new id.
	res := do(t, http.MethodPut, ts.Base+"/Patient"+q, patientJSON("", nhs1)).wantStatus(t, http.StatusCreated)
	var r struct{ ID string }
	json.Unmarshal(res.Body, &r)
	// One match: updated.
	res = do(t, http.MethodPut, ts.Base+"/Patient"+q, patientJSON("", nhs1)).wantStatus(t, http.StatusOK)
	if res.Header.Get("ETag") != `W/"2"` {
		t.Errorf("conditional update ETag %q, want W/\"2\"", res.Header.Get("ETag"))
	}
	// A body id that is not the match's.
	do(t, http.MethodPut, ts.Base+"/Patient"+q, patientJSON("other", nhs1)).wantStatus(t, http.StatusBadRequest)
	// No search at all.
	do(t, http.MethodPut, ts.Base+"/Patient", patientJSON("", nhs1)).wantStatus(t, http.StatusBadRequest)
	// Two matches: 412 for update and for a single delete.
	put(t, ts, "Patient/twin", patientJSON("twin", nhs1))
	do(t, http.MethodPut, ts.Base+"/Patient"+q, patientJSON("", nhs1)).wantStatus(t, http.StatusPreconditionFailed)
	do(t, http.MethodDelete, ts.Base+"/Patient"+q, "").wantStatus(t, http.StatusPreconditionFailed)
	do(t, http.MethodDelete, ts.Base+"/Patient/twin", "").wantStatus(t, http.StatusNoContent)
	do(t, http.MethodDelete, ts.Base+"/Patient"+q, "").wantStatus(t, http.StatusNoContent)
	do(t, http.MethodGet, ts.Base+"/Patient/"+r.ID, "").wantStatus(t, http.StatusGone)
	// Nothing left to match: still 204.
	do(t, http.MethodDelete, ts.Base+"/Patient"+q, "").wantStatus(t, http.StatusNoContent)

	t.Run("multiple", func(t *testing.T) {
		ts := startServer(t, server.Config{MaxConditionalDeletes: 2})
		put(t, ts, "Patient/a", patientJSON("a", nhs2))
		put(t, ts, "Patient/b", patientJSON("b", nhs2))
		q := "?identifier=" + url.QueryEscape(nhsSys+"|"+nhs2)
		do(t, http.MethodDelete, ts.Base+"/Patient"+q, "").wantStatus(t, http.StatusNoContent)
		do(t, http.MethodGet, ts.Base+"/Patient/a", "").wantStatus(t, http.StatusGone)
		do(t, http.MethodGet, ts.Base+"/Patient/b", "").wantStatus(t, http.StatusGone)
	})
}

// TestPatch_ConditionalAndInBundles: PATCH [type]?[search] patches the one
// match; inside a transaction a FHIRPath Patch (Parameters) and a JSON
// Patch (Binary, base64) apply to the current version.
func TestPatch_ConditionalAndInBundles(t *testing.T) {
	ts := startServer(t, server.Config{})
	put(t, ts, "Patient/p1", patientJSON("p1", nhs1))
	q := "?identifier=" + url.QueryEscape(nhsSys+"|"+nhs1)
	res := do(t, http.MethodPatch, ts.Base+"/Patient"+q, `[{"op":"replace","path":"/gender","value":"male"}]`,
		"Content-Type", "application/json-patch+json").wantStatus(t, http.StatusOK)
	if !strings.Contains(string(res.Body), `"gender":"male"`) || res.Header.Get("ETag") != `W/"2"` {
		t.Errorf("conditional patch: ETag %s, body %s; want W/\"2\" and gender male", res.Header.Get("ETag"), res.Body)
	}
	do(t, http.MethodPatch, ts.Base+"/Patient?identifier="+url.QueryEscape(nhsSys+"|"+nhs2), `[{"op":"replace","path":"/gender","value":"male"}]`,
		"Content-Type", "application/json-patch+json").wantStatus(t, http.StatusNotFound)

	// JSON Patch [{"op":"replace","path":"/birthDate","value":"2016-01-01"}], base64.
	const jsonPatch = "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9iaXJ0aERhdGUiLCJ2YWx1ZSI6IjIwMTYtMDEtMDEifV0="
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + jsonPatch + `"},
		 "request":{"method":"PATCH","url":"Patient/p1"}},
		{"request":{"method":"GET","url":"Patient/p1"}}]}`
	b := postBundle(t, ts, body, "transaction-response")
	if got := strings.Join(b.statuses(), " "); got != "200 200" {
		t.Fatalf("statuses %s, want 200 200", got)
	}
	if !strings.Contains(string(b.Entry[1].Resource), `"birthDate":"2016-01-01"`) {
		t.Errorf("read after patch in the transaction: %s, want birthDate 2016-01-01", b.Entry[1].Resource)
	}
	fp := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[
			{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.gender"},{"name":"value","valueCode":"female"}]}]},
		 "request":{"method":"PATCH","url":"Patient` + q + `"}}]}`
	b = postBundle(t, ts, fp, "transaction-response")
	if !strings.Contains(string(b.Entry[0].Resource), `"gender":"female"`) || b.Entry[0].Response.Etag != `W/"4"` {
		t.Errorf("FHIRPath Patch in a transaction: etag %s, %s; want W/\"4\" and gender female", b.Entry[0].Response.Etag, b.Entry[0].Resource)
	}
}

// TestTransaction_SearchParameterChecked: a SearchParameter the server
// cannot use fails its transaction with 422, as a single PUT does, and
// nothing of the transaction is stored.
func TestTransaction_SearchParameterChecked(t *testing.T) {
	ts := startServer(t, server.Config{})
	bad := `{"resourceType":"SearchParameter","id":"bad","url":"https://example.org/SearchParameter/bad","name":"Bad","status":"active",` +
		`"description":"d","code":"bad","base":["Patient"],"type":"token","expression":"Patient.identifier.((("}`
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":` + patientJSON("p1", nhs1) + `,"request":{"method":"PUT","url":"Patient/p1"}},
		{"resource":` + bad + `,"request":{"method":"PUT","url":"SearchParameter/bad"}}]}`
	res := do(t, http.MethodPost, ts.Base, body).wantStatus(t, http.StatusUnprocessableEntity)
	if _, diag, _ := res.outcome(t); !strings.Contains(diag, "entry 1") {
		t.Errorf("outcome %q, want it to name entry 1", diag)
	}
	do(t, http.MethodGet, ts.Base+"/Patient/p1", "").wantStatus(t, http.StatusNotFound)
}

// TestPatch_InvalidResult422: a patch whose result is not a valid resource
// is 422 wherever it comes: conditional PATCH, a transaction entry (the
// whole Bundle fails, nothing changes) and a batch entry.
func TestPatch_InvalidResult422(t *testing.T) {
	ts := startServer(t, server.Config{})
	put(t, ts, "Patient/p1", patientJSON("p1", nhs1))
	q := "?identifier=" + url.QueryEscape(nhsSys+"|"+nhs1)
	badJSONPatch := `[{"op":"replace","path":"/gender","value":"neither"}]`
	do(t, http.MethodPatch, ts.Base+"/Patient"+q, badJSONPatch, "Content-Type", "application/json-patch+json").
		wantStatus(t, http.StatusUnprocessableEntity)

	badFHIRPath := `{"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[
			{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.gender"},{"name":"value","valueCode":"neither"}]}]},
		 "request":{"method":"PATCH","url":"Patient/p1"}}`
	res := do(t, http.MethodPost, ts.Base, `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":`+patientJSON("p2", nhs2)+`,"request":{"method":"PUT","url":"Patient/p2"}},`+badFHIRPath+`]}`).
		wantStatus(t, http.StatusUnprocessableEntity)
	if _, diag, _ := res.outcome(t); !strings.Contains(diag, "entry 1") {
		t.Errorf("transaction outcome %q, want it to name entry 1", diag)
	}
	do(t, http.MethodGet, ts.Base+"/Patient/p2", "").wantStatus(t, http.StatusNotFound)

	b := postBundle(t, ts, `{"resourceType":"Bundle","type":"batch","entry":[`+badFHIRPath+`,
		{"request":{"method":"GET","url":"Patient/p1"}}]}`, "batch-response")
	if got := strings.Join(b.statuses(), " "); got != "422 200" {
		t.Errorf("batch statuses %s, want 422 200", got)
	}
	if !strings.Contains(string(b.Entry[1].Resource), `"gender":"female"`) || !strings.Contains(string(b.Entry[1].Resource), `"versionId":"1"`) {
		t.Errorf("Patient/p1 after the failed patches: %s, want version 1, gender female", b.Entry[1].Resource)
	}
}
