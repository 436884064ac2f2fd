package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
)

func historyQuery(nhs string) string {
	return "AuditEvent?patient:identifier=" + url.QueryEscape(nhsSys+"|"+nhs)
}

// accessAgent returns the ASSIGNED agent's reference and the PAT agent's
// NHS number of an access AuditEvent.
func accessAgent(t *testing.T, ae map[string]any) (viewer, child string) {
	t.Helper()
	agents, _ := ae["agent"].([]any)
	for _, a := range agents {
		m := a.(map[string]any)
		b, _ := json.Marshal(m["type"])
		who, _ := m["who"].(map[string]any)
		switch {
		case strings.Contains(string(b), `"ASSIGNED"`):
			viewer, _ = who["reference"].(string)
		case strings.Contains(string(b), `"PAT"`):
			id, _ := who["identifier"].(map[string]any)
			child, _ = id["value"].(string)
		}
	}
	return viewer, child
}

// TestCPIS_AccessHistory: council uploads -> a scheduled lookup (no
// history, no notification) -> an unscheduled lookup: the clinician sees
// the plans with the council's phone numbers and then the access history
// (one AuditEvent per council whose records were seen, with the viewer's
// PractitionerRole); each council finds exactly one notification about
// the lookup and its own access entry, not the other's, nor the security
// audit; the 24-hour rules of the history and of notifications.
func TestCPIS_AccessHistory(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[0]
	w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	w.uploadChild(t, w.lb, councilB, nhs, lac, "2026-02-01", "", "2015-04-01")

	t.Run("scheduled lookups leave no history and notify no one", func(t *testing.T) {
		// A clinician in a scheduled setting reads silently whatever
		// the header says (missing means true).
		for _, h := range [][]string{append(bearer(w.cl), "IsUnscheduledAccessEvent", "false"),
			append(bearer(w.cls), "IsUnscheduledAccessEvent", "false"), bearer(w.cls), append(bearer(w.cls), "IsUnscheduledAccessEvent", "true")} {
			s := getSearchset(t, ts, lookupQuery("CareTeam", nhs), h...)
			if n := len(s.mode("match")); n != 2 {
				t.Fatalf("scheduled lookup: %d CareTeams, want 2", n)
			}
		}
		if n := len(getSearchset(t, ts, historyQuery(nhs), bearer(w.cl)...).mode("match")); n != 0 {
			t.Errorf("access history after scheduled lookups: %d entries, want 0", n)
		}
		if n := len(w.communications(t, w.la, nhs)) + len(w.communications(t, w.lb, nhs)); n != 0 {
			t.Errorf("notifications after scheduled lookups: %d, want 0", n)
		}
	})

	var mine map[string]string // council ODS -> its AuditEvent id
	t.Run("unscheduled lookup", func(t *testing.T) {
		s := getSearchset(t, ts, lookupQuery("CareTeam", nhs), bearer(w.cl)...)
		teams := s.mode("match")
		if len(teams) != 2 {
			t.Fatalf("lookup: %d CareTeams, want 2", len(teams))
		}
		for _, ct := range teams {
			tel, _ := json.Marshal(ct["telecom"])
			if !strings.Contains(string(tel), laPhoneA) || !strings.Contains(string(tel), laPhoneOOH) {
				t.Errorf("CareTeam telecom %s, want both council numbers", tel)
			}
		}
		h := getSearchset(t, ts, historyQuery(nhs), bearer(w.cl)...)
		events, roles := h.mode("match"), h.mode("include")
		if len(events) != 2 || len(roles) != 1 {
			t.Fatalf("access history: %d AuditEvents and %d PractitionerRoles, want 2 and 1: %s", len(events), len(roles), h.Entry)
		}
		role := roles[0]
		if role["resourceType"] != "PractitionerRole" {
			t.Fatalf("included %v, want the viewer's PractitionerRole", role["resourceType"])
		}
		b, _ := json.Marshal(role)
		for _, want := range []string{`"dr-1"`, `"R8000"`, `"` + siteODS + `"`, siteName} {
			if !strings.Contains(string(b), want) {
				t.Errorf("viewer PractitionerRole %s lacks %s", b, want)
			}
		}
		mine = map[string]string{}
		for _, ae := range events {
			viewer, child := accessAgent(t, ae)
			if viewer != "PractitionerRole/"+role["id"].(string) || child != nhs {
				t.Errorf("AuditEvent agents: viewer %q child %q, want the included role and the child", viewer, child)
			}
			b, _ := json.Marshal(ae)
			for _, ods := range []string{councilA, councilB} {
				if strings.Contains(string(b), `"code":"`+ods+`"`) {
					mine[ods] = ae["id"].(string)
				}
			}
			if !strings.Contains(string(b), `"Access/View Record Lifecycle Event"`) || !strings.Contains(string(b), `"CareTeam/`) {
				t.Errorf("AuditEvent %s: want the national type and the CareTeam seen", b)
			}
		}
		if len(mine) != 2 {
			t.Fatalf("AuditEvents by council %v, want one per council", mine)
		}
		for _, c := range []struct{ tok, ods, other string }{{w.la, councilA, councilB}, {w.lb, councilB, councilA}} {
			cs := w.communications(t, c.tok, nhs)
			if len(cs) != 1 {
				t.Fatalf("council %s: %d notifications, want 1", c.ods, len(cs))
			}
			about := refs(cs[0]["about"])
			if !contains(about, "AuditEvent/"+mine[c.ods]) || contains(about, "AuditEvent/"+mine[c.other]) || cs[0]["encounter"] != nil {
				t.Errorf("council %s notification about %v encounter %v, want its Flag and its access AuditEvent/%s", c.ods, about, cs[0]["encounter"], mine[c.ods])
			}
			if sender, _ := json.Marshal(cs[0]["sender"]); !strings.Contains(string(sender), siteODS) {
				t.Errorf("notification sender %s, want the clinician's organisation %s", sender, siteODS)
			}
			if text, _ := json.Marshal(cs[0]["payload"]); !strings.Contains(string(text), "looked up in CP-IS") || !strings.Contains(string(text), siteName) {
				t.Errorf("notification text %s, want a lookup at %s", text, siteName)
			}
			h := getSearchset(t, ts, historyQuery(nhs), bearer(c.tok)...).mode("match")
			if len(h) != 1 || h[0]["id"] != mine[c.ods] {
				t.Errorf("council %s access history %d entries, want its own AuditEvent/%s only", c.ods, len(h), mine[c.ods])
			}
			do(t, http.MethodGet, ts.Base+"/AuditEvent/"+mine[c.other], "", bearer(c.tok)...).wantStatus(t, http.StatusNotFound)
			do(t, http.MethodGet, ts.Base+"/AuditEvent/"+mine[c.ods], "", bearer(c.tok)...).wantStatus(t, http.StatusOK)
		}
		// The notification comes with the Encounter rule: a later
		// attendance at the same site within 24 hours adds none.
		do(t, http.MethodPost, ts.Base+"/Encounter", encounter(`{"identifier":{"system":"`+nhsSys+`","value":"`+nhs+`"}}`), bearer(w.cl)...).wantStatus(t, http.StatusCreated)
		if n := len(w.communications(t, w.la, nhs)); n != 1 {
			t.Errorf("after an attendance at the same site: %d notifications, want 1", n)
		}
	})

	t.Run("not the security audit", func(t *testing.T) {
		admin := getSearchset(t, ts, "AuditEvent?type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest&_count=1")
		sec := admin.mode("match")
		if len(sec) != 1 {
			t.Fatalf("admin: %d security AuditEvents, want 1", len(sec))
		}
		id := sec[0]["id"].(string)
		for _, tok := range []string{w.cl, w.la} {
			do(t, http.MethodGet, ts.Base+"/AuditEvent/"+id, "", bearer(tok)...).wantStatus(t, http.StatusNotFound)
		}
		do(t, http.MethodGet, ts.Base+"/AuditEvent?type=rest", "", bearer(w.cl)...).wantStatus(t, http.StatusForbidden)
		// The admin sees both kinds.
		if n := len(getSearchset(t, ts, historyQuery(nhs)+"&_count=100").mode("match")); n < 3 {
			t.Errorf("admin AuditEvent?patient:identifier: %d, want the access entries and the security records", n)
		}
	})

	t.Run("24 hours", func(t *testing.T) {
		ts.Clock.Add(time.Hour)
		getSearchset(t, ts, lookupQuery("CareTeam", nhs), bearer(w.cl)...)
		if n := len(getSearchset(t, ts, historyQuery(nhs), bearer(w.cl)...).mode("match")); n != 2 {
			t.Errorf("after a second look by the same person within 24 hours: %d listed, want 2", n)
		}
		other := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: siteODS, SDSRole: "R8000", Subject: "dr-2", ClientID: "epr"})
		getSearchset(t, ts, lookupQuery("CareTeam", nhs), bearer(other)...)
		h := getSearchset(t, ts, historyQuery(nhs), bearer(w.cl)...)
		if n, r := len(h.mode("match")), len(h.mode("include")); n != 4 || r != 2 {
			t.Errorf("after a look by another person: %d listed with %d roles, want 4 and 2", n, r)
		}
		if n := len(w.communications(t, w.la, nhs)); n != 1 {
			t.Errorf("after more looks from the same site within 24 hours: %d notifications, want 1", n)
		}
		elsewhere := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: "RYY02", SDSRole: "R8000", Subject: "dr-3", ClientID: "epr3"})
		getSearchset(t, ts, lookupQuery("CareTeam", nhs), bearer(elsewhere)...)
		if n := len(w.communications(t, w.la, nhs)); n != 2 {
			t.Errorf("after a look from another site: %d notifications, want 2", n)
		}
		ts.Clock.Add(24 * time.Hour)
		w.renew(t)
		getSearchset(t, ts, lookupQuery("CareTeam", nhs), bearer(w.cl)...)
		if n := len(getSearchset(t, ts, historyQuery(nhs), bearer(w.cl)...).mode("match")); n != 8 {
			t.Errorf("after a look 25 hours later: %d listed, want 8", n)
		}
		if n := len(w.communications(t, w.la, nhs)); n != 3 {
			t.Errorf("after a look 25 hours later: %d notifications, want 3", n)
		}
		if n := len(w.communications(t, w.lb, nhs)); n != 3 {
			t.Errorf("council B after a look 25 hours later: %d notifications, want 3", n)
		}
	})

	t.Run("errors", func(t *testing.T) {
		res := do(t, http.MethodGet, ts.Base+"/AuditEvent", "", bearer(w.cl)...).wantStatus(t, http.StatusForbidden)
		if !strings.Contains(string(res.Body), "ACCESS_DENIED") {
			t.Errorf("AuditEvent without a child: %s, want ACCESS_DENIED", res.Body)
		}
		res = do(t, http.MethodGet, ts.Base+"/"+historyQuery("9990000019"), "", bearer(w.cl)...).wantStatus(t, http.StatusBadRequest)
		if !strings.Contains(string(res.Body), "INVALID_SEARCH_DATA") {
			t.Errorf("AuditEvent with an invalid NHS number: %s, want INVALID_SEARCH_DATA", res.Body)
		}
		res = do(t, http.MethodGet, ts.Base+"/"+historyQuery(nhs), "", append(bearer(w.cl), "IsUnscheduledAccessEvent", "maybe")...).wantStatus(t, http.StatusBadRequest)
		if !strings.Contains(string(res.Body), "PRECONDITION_FAILED") {
			t.Errorf("AuditEvent with a bad header: %s, want PRECONDITION_FAILED", res.Body)
		}
		// The national call's include is accepted.
		getSearchset(t, ts, historyQuery(nhs)+"&_include="+url.QueryEscape("AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED"), bearer(w.cl)...)
	})
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestCPIS_AccessHistoryNewest: at most 25 entries, newest first.
func TestCPIS_AccessHistoryNewest(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[1]
	w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	for i := range 30 {
		ts.Clock.Add(time.Minute)
		tok := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: siteODS, SDSRole: "R8000", Subject: fmt.Sprintf("dr-%d", i), ClientID: "epr"})
		getSearchset(t, ts, lookupQuery("Flag", nhs), bearer(tok)...)
	}
	h := getSearchset(t, ts, historyQuery(nhs)+"&_count=100", bearer(w.cl)...)
	events := h.mode("match")
	if len(events) != 25 || len(h.mode("include")) != 25 {
		t.Fatalf("access history: %d entries and %d roles, want 25 and 25", len(events), len(h.mode("include")))
	}
	prev := ""
	for i, ae := range events {
		rec := ae["recorded"].(string)
		if prev != "" && rec >= prev {
			t.Errorf("entry %d recorded %s after %s: want newest first", i, rec, prev)
		}
		prev = rec
	}
	if n := len(w.communications(t, w.la, nhs)); n != 1 {
		t.Errorf("30 looks from one site: %d notifications, want 1", n)
	}
}

// TestCPIS_AccessRepeatCanonical: the repeat version of an access
// AuditEvent, made from the listed one without a parse, is the codec's
// canonical JSON, and its index finds it by its tag and not by the other.
func TestCPIS_AccessRepeatCanonical(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[2]
	w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	for range 2 {
		getSearchset(t, ts, lookupQuery("CareTeam", nhs), bearer(w.cl)...)
	}
	listed, repeat := accessEntries(t, ts, nhs, "listed"), accessEntries(t, ts, nhs, "repeat")
	if len(listed) != 1 || len(repeat) != 1 || listed[0]["id"] == repeat[0]["id"] {
		t.Fatalf("admin: %d listed and %d repeat access AuditEvents, want 1 and 1", len(listed), len(repeat))
	}
	stored, canon := storedCanonical(t, ts, "AuditEvent", repeat[0]["id"].(string))
	if string(canon) != string(stored) || !strings.Contains(string(stored), `"code":"repeat"`) {
		t.Errorf("stored repeat AuditEvent is not canonical or not tagged repeat:\n got %s\nwant %s", stored, canon)
	}
}

// storedCanonical reads typ/id from the store and returns its stored JSON
// and the codec's canonical JSON of it; the test fails when it is not
// valid R4.
func storedCanonical(t *testing.T, ts *testServer, typ, id string) (stored, canon []byte) {
	t.Helper()
	r, err := ts.Store.Read(t.Context(), typ, id)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	p, err := codec.Parse(r.JSON)
	if err != nil {
		t.Fatalf("stored %s is not valid R4: %v; %s", typ, err, r.JSON)
	}
	if canon, err = codec.Marshal(p); err != nil {
		t.Fatal(err)
	}
	return r.JSON, canon
}

// accessEntries returns the access AuditEvents about the child nhs tagged
// code (listed or repeat), as an administrator finds them.
func accessEntries(t *testing.T, ts *testServer, nhs, code string) []map[string]any {
	t.Helper()
	return getSearchset(t, ts, historyQuery(nhs)+"&_count=100&_tag="+url.QueryEscape(server.AccessTagSystem+"|"+code)+"&type="+
		url.QueryEscape("http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle|access")).mode("match")
}

// entityRefs returns the records (Type/id) an access AuditEvent lists.
func entityRefs(ae map[string]any) []string {
	var out []string
	ents, _ := ae["entity"].([]any)
	for _, e := range ents {
		what, _ := e.(map[string]any)["what"].(map[string]any)
		if r, _ := what["reference"].(string); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// readBundle is a batch or transaction Bundle of GET entries.
func readBundle(typ string, urls ...string) string {
	es := make([]string, len(urls))
	for i, u := range urls {
		es[i] = `{"request":{"method":"GET","url":"` + u + `"}}`
	}
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(es, ",") + `]}`
}

// entrySearchset decodes the searchset a search entry of a response
// Bundle answered.
func entrySearchset(t *testing.T, b *responseBundle, i int) *searchset {
	t.Helper()
	var s searchset
	if err := json.Unmarshal(b.Entry[i].Resource, &s); err != nil || s.Type != "searchset" {
		t.Fatalf("entry %d: %s, want a searchset", i, b.Entry[i].Resource)
	}
	return &s
}

// wantAccess checks how many listed and repeat access entries the child
// nhs has.
func wantAccess(t *testing.T, ts *testServer, what, nhs string, listed, repeat int) {
	t.Helper()
	if l, r := len(accessEntries(t, ts, nhs, "listed")), len(accessEntries(t, ts, nhs, "repeat")); l != listed || r != repeat {
		t.Errorf("%s: %d listed and %d repeat access entries, want %d and %d", what, l, r, listed, repeat)
	}
}

// TestCPIS_AccessHistoryBundles: CP-IS reads in batch and transaction
// Bundles (lookups by NHS number, reads by id) are lookups as outside a
// Bundle: the same answer (records found by literal reference too, the
// no-record outcome, INVALID_SEARCH_DATA), an access history entry per
// council and a notification for an unscheduled clinician, nothing for a
// scheduled one; the 24-hour rules across both paths.
func TestCPIS_AccessHistoryBundles(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[0]
	recs := w.uploadRecords(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	w.uploadChild(t, w.lb, councilB, nhs, lac, "2026-02-01", "", "2015-04-01")

	t.Run("scheduled", func(t *testing.T) {
		for _, c := range []struct {
			typ     string
			headers []string
		}{
			{"batch", bearer(w.cls)},
			{"transaction", bearer(w.cls)},
			{"batch", append(bearer(w.cl), "IsUnscheduledAccessEvent", "false")},
			{"transaction", append(bearer(w.cl), "IsUnscheduledAccessEvent", "false")},
		} {
			b := postBundle(t, ts, readBundle(c.typ, lookupQuery("CareTeam", nhs), recs[1]), c.typ+"-response", c.headers...)
			if got := strings.Join(b.statuses(), " "); got != "200 200" {
				t.Fatalf("%s: statuses %s, want 200 200", c.typ, got)
			}
			if n := len(entrySearchset(t, b, 0).mode("match")); n != 2 {
				t.Errorf("%s lookup entry: %d CareTeams, want 2", c.typ, n)
			}
		}
		wantAccess(t, ts, "scheduled reads in Bundles", nhs, 0, 0)
		if n := len(w.communications(t, w.la, nhs)) + len(w.communications(t, w.lb, nhs)); n != 0 {
			t.Errorf("notifications after scheduled reads in Bundles: %d, want 0", n)
		}
	})

	t.Run("unscheduled batch", func(t *testing.T) {
		b := postBundle(t, ts, readBundle("batch", lookupQuery("CareTeam", nhs), recs[1], lookupQuery("CareTeam", w.nhs[1]),
			lookupQuery("CareTeam", "9990000019")), "batch-response", bearer(w.cl)...)
		if got := strings.Join(b.statuses(), " "); got != "200 200 200 400" {
			t.Fatalf("statuses %s, want 200 200 200 400", got)
		}
		if n := len(entrySearchset(t, b, 0).mode("match")); n != 2 {
			t.Errorf("lookup entry: %d CareTeams, want 2", n)
		}
		none := entrySearchset(t, b, 2)
		if oo, _ := json.Marshal(none.mode("outcome")); len(none.mode("match")) != 0 || !strings.Contains(string(oo), "No CP-IS record is held") {
			t.Errorf("no-record lookup entry: %s, want no match and the no-record outcome", b.Entry[2].Resource)
		}
		if !strings.Contains(string(b.Entry[3].Response.Outcome), "INVALID_SEARCH_DATA") {
			t.Errorf("invalid NHS number entry: %s, want INVALID_SEARCH_DATA", b.Entry[3].Response.Outcome)
		}
		listed := accessEntries(t, ts, nhs, "listed")
		if len(listed) != 2 {
			t.Fatalf("access history: %d listed entries, want one per council", len(listed))
		}
		mine := map[string]string{}
		for _, ae := range listed {
			b, _ := json.Marshal(ae)
			for _, ods := range []string{councilA, councilB} {
				if strings.Contains(string(b), `"code":"`+ods+`"`) {
					mine[ods] = ae["id"].(string)
					if ods == councilA && (!contains(entityRefs(ae), recs[1]) || !contains(entityRefs(ae), recs[3])) {
						t.Errorf("council A entry lists %v, want the Flag %s and the CareTeam %s", entityRefs(ae), recs[1], recs[3])
					}
				}
			}
		}
		for _, c := range []struct{ tok, ods string }{{w.la, councilA}, {w.lb, councilB}} {
			cs := w.communications(t, c.tok, nhs)
			if len(cs) != 1 || !contains(refs(cs[0]["about"]), "AuditEvent/"+mine[c.ods]) {
				t.Errorf("council %s: %d notifications, want 1 about AuditEvent/%s", c.ods, len(cs), mine[c.ods])
			}
		}
	})

	t.Run("transaction within 24 hours", func(t *testing.T) {
		ts.Clock.Add(time.Hour)
		b := postBundle(t, ts, readBundle("transaction", recs[0], lookupQuery("Flag", nhs), historyQuery(nhs)), "transaction-response",
			append(bearer(w.cl), "X-Request-Id", "req-tx-reads")...)
		if got := strings.Join(b.statuses(), " "); got != "200 200 200" {
			t.Fatalf("statuses %s, want 200 200 200", got)
		}
		// The security audit record lists what the entries read, the
		// read by id inside the transaction too.
		rows, _ := auditRows(t, ts.Store, auditMark{})
		for _, r := range rows {
			if r.Request == "req-tx-reads" && !strings.Contains(strings.Join(r.Resources, " "), recs[0]+"/_history/1") {
				t.Errorf("audit record of the transaction lists %v, want %s among them", r.Resources, recs[0])
			}
		}
		// The national access-history form, as outside a Bundle: the
		// listed entries with the viewer's PractitionerRole.
		h := entrySearchset(t, b, 2)
		if m, i := len(h.mode("match")), len(h.mode("include")); m != 2 || i != 1 {
			t.Errorf("AuditEvent entry: %d entries and %d roles, want 2 and 1", m, i)
		}
		wantAccess(t, ts, "the same person again within 24 hours", nhs, 2, 2)
		// A count alone in a batch tells that records exist: another
		// person's count is listed.
		dr := bearer(ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: siteODS, SDSRole: "R8000", Subject: "dr-count", ClientID: "epr"}))
		cb := postBundle(t, ts, readBundle("batch", lookupQuery("CareTeam", nhs)+"&_count=0"), "batch-response", dr...)
		if cs := entrySearchset(t, cb, 0); cs.Total == nil || *cs.Total != 2 || len(cs.mode("match")) != 0 {
			t.Errorf("count entry: %s, want a total of 2 alone", cb.Entry[0].Resource)
		}
		wantAccess(t, ts, "a count in a batch", nhs, 4, 2)
		if n := len(w.communications(t, w.la, nhs)) + len(w.communications(t, w.lb, nhs)); n != 2 {
			t.Errorf("notifications after a second look from the same site: %d, want 2 (one per council)", n)
		}
	})
}

// TestCPIS_AccessHistoryReadsByID: reads by id (read, vread, instance
// history), compartment searches and searches by the child's Patient of
// CP-IS records enter the access history as lookups do, for unscheduled
// clinicians only; a later look at another resource of the same plan
// within 24 hours is a repeat; the notification rule is shared.
func TestCPIS_AccessHistoryReadsByID(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[1]
	recs := w.uploadRecords(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	patient, flag, plan, team := recs[0], recs[1], recs[2], recs[3]
	get := func(t *testing.T, path string, headers ...string) {
		t.Helper()
		do(t, http.MethodGet, ts.Base+"/"+path, "", headers...).wantStatus(t, http.StatusOK)
	}
	viewer := func(sub string) []string {
		return bearer(ts.TokenFor(t, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: siteODS, SDSRole: "R8000", Subject: sub, ClientID: "epr"}))
	}

	t.Run("scheduled", func(t *testing.T) {
		for _, path := range []string{flag, patient, plan + "/_history/1", patient + "/CareTeam"} {
			get(t, path, bearer(w.cls)...)
			get(t, path, append(bearer(w.cl), "IsUnscheduledAccessEvent", "false")...)
		}
		wantAccess(t, ts, "scheduled reads by id", nhs, 0, 0)
		if n := len(w.communications(t, w.la, nhs)); n != 0 {
			t.Errorf("notifications after scheduled reads: %d, want 0", n)
		}
	})

	t.Run("read by id, then the same plan again", func(t *testing.T) {
		get(t, flag, bearer(w.cl)...)
		listed := accessEntries(t, ts, nhs, "listed")
		if len(listed) != 1 || !contains(entityRefs(listed[0]), flag) {
			t.Fatalf("after GET %s: %d listed entries, want 1 listing it", flag, len(listed))
		}
		cs := w.communications(t, w.la, nhs)
		if len(cs) != 1 || !contains(refs(cs[0]["about"]), "AuditEvent/"+listed[0]["id"].(string)) {
			t.Fatalf("after GET %s: %d notifications, want 1 about the access entry", flag, len(cs))
		}
		for _, path := range []string{team, plan + "/_history/1", patient, lookupQuery("CareTeam", nhs)} {
			get(t, path, bearer(w.cl)...)
		}
		wantAccess(t, ts, "other resources of the same plan within 24 hours", nhs, 1, 4)
	})

	t.Run("the council's Patient, then the plan", func(t *testing.T) {
		dr := viewer("dr-2")
		get(t, patient, dr...)
		wantAccess(t, ts, "a first look at the Patient", nhs, 2, 4)
		get(t, flag, dr...)
		wantAccess(t, ts, "then at the plan", nhs, 3, 4)
		get(t, team, dr...)
		wantAccess(t, ts, "then at the plan's CareTeam", nhs, 3, 5)
	})

	t.Run("compartment, instance history and search by Patient", func(t *testing.T) {
		get(t, patient+"/Flag", viewer("dr-3")...)
		get(t, flag+"/_history", viewer("dr-4")...)
		get(t, "CarePlan?subject="+patient, viewer("dr-5")...)
		wantAccess(t, ts, "three more people", nhs, 6, 5)
		if n := len(w.communications(t, w.la, nhs)); n != 1 {
			t.Errorf("after more looks from the same site within 24 hours: %d notifications, want 1", n)
		}
	})

	t.Run("a count alone", func(t *testing.T) {
		for i, q := range []string{lookupQuery("CareTeam", nhs) + "&_summary=count", lookupQuery("Flag", nhs) + "&_count=0"} {
			s := getSearchset(t, ts, q, viewer(fmt.Sprintf("dr-count-%d", i))...)
			if s.Total == nil || *s.Total != 1 || len(s.mode("match")) != 0 {
				t.Fatalf("%s: total %v and %d matches, want a count of 1 alone", q, s.Total, len(s.mode("match")))
			}
		}
		wantAccess(t, ts, "two counts that tell that records exist", nhs, 8, 5)
		getSearchset(t, ts, lookupQuery("CareTeam", w.nhs[2])+"&_summary=count", bearer(w.cl)...)
		wantAccess(t, ts, "a count of another child's records, which has none", w.nhs[2], 0, 0)
	})

	t.Run("not CP-IS records", func(t *testing.T) {
		get(t, "Organization/site", bearer(w.cl)...)
		get(t, historyQuery(nhs), bearer(w.cl)...)
		wantAccess(t, ts, "reads of other resources", nhs, 8, 5)
	})
}
