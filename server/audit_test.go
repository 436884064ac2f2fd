package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/journal"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server"
)

type auditRec struct {
	Time, Request, Sub, Client, Role, Ods, Jti, Interaction, Method, Path, Type, ID, Query string
	Status                                                                                 int
	Unscheduled                                                                            *bool
	Patients, Resources, Written                                                           []string
}

// auditMark is how many records each trail holds: the write trail's and
// the read trail's.
type auditMark [2]int64

// auditRows returns the records of both trails after mark, each trail
// verified: the write trail's, then the read trail's; and the new mark.
func auditRows(t *testing.T, st *sqlite.Store, after auditMark) ([]auditRec, auditMark) {
	t.Helper()
	var out []auditRec
	add := func(seq, after int64, rec []byte) error {
		if seq <= after {
			return nil
		}
		var a auditRec
		if err := json.Unmarshal(rec, &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	}
	writes, err := st.VerifyAudit(context.Background(), func(r sqlite.AuditRow) error { return add(r.Seq, after[0], r.Record) })
	if err != nil || writes.Break != nil {
		t.Fatalf("VerifyAudit: %v %+v", err, writes)
	}
	reads, err := journal.Verify(st.ReadAuditPath(), func(e journal.Entry) error { return add(e.Seq, after[1], e.Record) })
	if err != nil || reads.Break != nil {
		t.Fatalf("journal.Verify: %v %+v", err, reads)
	}
	return out, auditMark{writes.HeadSeq, reads.HeadSeq}
}

func TestAudit_Records(t *testing.T) {
	w := newPolicyWorld(t)
	ts := w.ts
	_, before := auditRows(t, ts.Store, auditMark{})
	nhs := w.nhs[1]

	// A scheduled look-up by NHS number in a form body.
	form := "subject:identifier=" + url.QueryEscape(nhsSys+"|"+nhs) + "&status=active"
	do(t, http.MethodPost, ts.Base+"/Flag/_search", form, append(bearer(w.cl), "Content-Type", "application/x-www-form-urlencoded",
		"IsUnscheduledAccessEvent", "false", "X-Request-Id", "req-lookup")...).wantStatus(t, http.StatusOK)
	// A refused search.
	do(t, http.MethodGet, ts.Base+"/Flag?status=active", "", append(bearer(w.cl), "X-Request-Id", "req-refused")...).wantStatus(t, http.StatusForbidden)
	// A scheduled-setting clinician's look-up without the header is
	// scheduled: its token's setting is verified, the header is not.
	do(t, http.MethodGet, ts.Base+"/Flag?"+form, "", append(bearer(w.cls), "X-Request-Id", "req-scheduled")...).wantStatus(t, http.StatusOK)
	// A council's write.
	body := strings.Replace(cpisPatient("", nhs, "female", "2015-04-01", false, false), `"gender"`,
		`"managingOrganization":{"identifier":{"system":"`+odsSys+`","value":"`+councilA+`"}},"gender"`, 1)
	do(t, http.MethodPost, ts.Base+"/Patient", body, append(bearer(w.la), "X-Request-Id", "req-write")...).wantStatus(t, http.StatusCreated)
	// Not CP-IS data: no record.
	do(t, http.MethodGet, ts.Base+"/metadata", "").wantStatus(t, http.StatusOK)
	do(t, http.MethodGet, ts.Base+"/ValueSet?_summary=count", "", bearer(w.cl)...).wantStatus(t, http.StatusOK)

	rows, _ := auditRows(t, ts.Store, before)
	byReq := map[string][]auditRec{}
	for _, r := range rows {
		byReq[r.Request] = append(byReq[r.Request], r)
	}
	if len(rows) != 5 {
		t.Fatalf("%d new audit records, want 5 (look-up, refusal, scheduled look-up, write's commit, write): %+v", len(rows), rows)
	}
	if r := byReq["req-scheduled"]; len(r) != 1 || r[0].Unscheduled == nil || *r[0].Unscheduled {
		t.Errorf("scheduled clinician's record %+v: want unscheduled false", r)
	}
	l := byReq["req-lookup"]
	if len(l) != 1 || l[0].Role != "clinician-unscheduled" || l[0].Sub != "dr-1" || l[0].Client != "epr" || l[0].Ods != siteODS || l[0].Jti == "" ||
		l[0].Interaction != "search-type" || l[0].Type != "Flag" || l[0].Status != 200 || l[0].Unscheduled == nil || *l[0].Unscheduled ||
		!strings.Contains(l[0].Query, nhs) || len(l[0].Patients) == 0 || l[0].Patients[0] != nhs || len(l[0].Resources) != 2 {
		t.Errorf("look-up record %+v: want who (role, sub, client, ODS, jti), search-type Flag, 200, unscheduled false, the query with the NHS number, the patient and the 2 Flags", l)
	}
	if r := byReq["req-refused"]; len(r) != 1 || r[0].Status != 403 || len(r[0].Resources) != 0 {
		t.Errorf("refused record %+v: want status 403 and no resources", r)
	}
	wr := byReq["req-write"]
	if len(wr) != 2 || wr[0].Interaction != "create:commit" || len(wr[0].Written) != 1 || !strings.HasPrefix(wr[0].Written[0], "Patient/") ||
		wr[1].Interaction != "create" || wr[1].Status != 201 || wr[1].Ods != councilA {
		t.Errorf("write records %+v: want the commit's record (versions written) then the request's (201)", wr)
	}
	if strings.Contains(ts.Log(), nhs) {
		t.Errorf("the log holds an NHS number: %s", ts.Log())
	}
}

// TestAudit_Unrecorded checks that nothing is disclosed when the record
// cannot be written: a write without the write trail, a lookup (whose
// record also keeps its access history) without the read trail.
func TestAudit_Unrecorded(t *testing.T) {
	w := newPolicyWorld(t)
	// Another process left a line that is not an entry where the read
	// trail's entries end: the next append stops at it.
	trail, err := os.ReadFile(w.ts.Store.ReadAuditPath())
	if err != nil {
		t.Fatal(err)
	}
	end := bytes.IndexByte(trail, 0)
	f, err := os.OpenFile(w.ts.Store.ReadAuditPath(), os.O_WRONLY, 0)
	if err != nil || end < 0 {
		t.Fatal(err, end)
	}
	if _, err := f.WriteAt([]byte("not an entry\n"), int64(end)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res := do(t, http.MethodGet, w.ts.Base+"/Flag?subject:identifier="+url.QueryEscape(nhsSys+"|"+w.nhs[1]), "", bearer(w.cl)...).wantStatus(t, http.StatusServiceUnavailable)
	if code, _, _ := res.outcome(t); code != "transient" || strings.Contains(string(res.Body), "Flag/") {
		t.Errorf("unrecorded read: %s; want a transient OperationOutcome and no Flag", res.Body)
	}

	db, err := sql.Open("sqlite", "file:"+w.ts.Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TABLE audit`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	body := strings.Replace(cpisPatient("", w.nhs[2], "female", "2015-04-01", false, false), `"gender"`,
		`"managingOrganization":{"identifier":{"system":"`+odsSys+`","value":"`+councilA+`"}},"gender"`, 1)
	res = do(t, http.MethodPost, w.ts.Base+"/Patient", body, bearer(w.la)...)
	if res.StatusCode < 500 || strings.Contains(string(res.Body), `"resourceType":"Patient"`) {
		t.Errorf("unrecorded write: %d %s; want a 5xx OperationOutcome", res.StatusCode, res.Body)
	}
}

// TestAudit_AuditEventSearch checks the AuditEvent projection of the trail:
// an administrator finds a clinician's look-up by patient, agent, date and
// entity; nobody else may search AuditEvents.
func TestAudit_AuditEventSearch(t *testing.T) {
	w := newPolicyWorld(t)
	ts := w.ts
	nhs := w.nhs[3]
	do(t, http.MethodGet, ts.Base+"/Flag?subject:identifier="+url.QueryEscape(nhsSys+"|"+nhs), "", append(bearer(w.cl), "X-Request-Id", "req-ae")...).wantStatus(t, http.StatusOK)
	find := func(q string) []map[string]any {
		t.Helper()
		res := do(t, http.MethodGet, ts.Base+"/AuditEvent?"+q, "").wantStatus(t, http.StatusOK)
		var b struct {
			Entry []struct{ Resource map[string]any }
		}
		json.Unmarshal(res.Body, &b)
		var out []map[string]any
		for _, e := range b.Entry {
			// The request's event; its access history's commit is another.
			if d, _ := e.Resource["outcomeDesc"].(string); strings.Contains(d, "HTTP 200; request req-ae") {
				out = append(out, e.Resource)
			}
		}
		return out
	}
	for _, q := range []string{
		"patient:identifier=" + url.QueryEscape(nhsSys+"|"+nhs),
		"agent:identifier=" + url.QueryEscape("https://fhir.cpis-fhir.org/Id/principal|dr-1"),
		"agent:identifier=" + url.QueryEscape(odsSys+"|"+siteODS) + "&action=E",
		"entity=Flag/f-pb3",
		"date=ge2026-01-01&subtype=search-type&_count=1000",
	} {
		got := find(q)
		if len(got) != 1 {
			t.Errorf("AuditEvent?%s: %d events of the look-up, want 1", q, len(got))
			continue
		}
		if got[0]["outcome"] != "0" || got[0]["action"] != "E" {
			t.Errorf("AuditEvent?%s: %v; want outcome 0, action E", q, got[0])
		}
	}
	if got := find("patient:identifier=" + url.QueryEscape(nhsSys+"|"+w.nhs[2])); len(got) != 0 {
		t.Errorf("AuditEvent by another child: %d events of the look-up, want 0", len(got))
	}
	// An administrator's command beside the server (cpis token) is in the
	// read trail and projected like a request.
	rec, err := server.AdminAuditRecord(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), "token-issued", "tester", url.Values{"role": {"la"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Store.AppendAudit(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	adm := getSearchset(t, ts, "AuditEvent?agent:identifier="+url.QueryEscape("https://fhir.cpis-fhir.org/Id/principal|os:tester")).mode("match")
	if b, _ := json.Marshal(adm); len(adm) != 1 || !strings.Contains(string(b), `"outcomeDesc":"cpis token-issued on the command line"`) || strings.Contains(string(b), "subtype") {
		t.Errorf("AuditEvent of cpis token: %s; want one, described, without a REST subtype", adm)
	}
	do(t, http.MethodGet, ts.Base+"/AuditEvent", "", bearer(w.cl)...).wantStatus(t, http.StatusForbidden)
	// A council reads the access history of its children, never the
	// security audit.
	if got := getSearchset(t, ts, "AuditEvent?_count=1000", bearer(w.la)...).mode("match"); len(got) != 0 {
		t.Errorf("council AuditEvent search: %d security AuditEvents, want 0", len(got))
	}
}
