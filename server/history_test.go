package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/server"
)

func TestHistory(t *testing.T) {
	ts := startServer(t, server.Config{})
	// Minute by minute: Patient p versions 1..3 and Flags f0..f2.
	for i := range 3 {
		do(t, "PUT", ts.Base+"/Patient/p", patientJSON("p", nhs1)).wantStatus(t, map[bool]int{true: 201, false: 200}[i == 0])
		do(t, "POST", ts.Base+"/Flag", fmt.Sprintf(`{"resourceType":"Flag","status":"active","code":{"text":"f%d"},"subject":{"reference":"Patient/p"}}`, i)).wantStatus(t, 201)
		ts.Clock.Add(time.Minute)
	}
	type entry struct{ url, method, status, etag string }
	entries := func(res *response) []entry {
		var out []entry
		list, _ := res.object(t)["entry"].([]any)
		for _, e := range list {
			m := e.(map[string]any)
			req := m["request"].(map[string]any)
			resp := m["response"].(map[string]any)
			if u := req["url"].(string); strings.HasPrefix(u, "StructureDefinition/") || strings.HasPrefix(u, "CodeSystem/") || strings.HasPrefix(u, "ValueSet/") {
				continue // the CP-IS profiles and the terminology, written at server start
			}
			out = append(out, entry{req["url"].(string), req["method"].(string), resp["status"].(string), resp["etag"].(string)})
		}
		return out
	}
	sys := entries(do(t, "GET", ts.Base+"/_history", "").wantStatus(t, 200))
	if len(sys) != 6 || sys[0].url != "Flag" || sys[0].method != "POST" || sys[1].url != "Patient/p" || sys[1].etag != `W/"3"` {
		t.Errorf("system history %v, want 6 entries newest first (Flag POST, then Patient/p W/\"3\")", sys)
	}
	if inst := entries(do(t, "GET", ts.Base+"/Patient/p/_history", "").wantStatus(t, 200)); len(inst) != 3 || inst[2].status != "201 Created" || inst[0].status != "200 OK" {
		t.Errorf("instance history %v, want 3 versions, the oldest 201 Created", inst)
	}
	if typ := entries(do(t, "GET", ts.Base+"/Flag/_history", "").wantStatus(t, 200)); len(typ) != 3 {
		t.Errorf("type history %v, want the 3 Flags", typ)
	}
	since := url.QueryEscape("2026-03-01T09:01:00Z")
	if got := entries(do(t, "GET", ts.Base+"/_history?_since="+since, "").wantStatus(t, 200)); len(got) != 4 {
		t.Errorf("_since 09:01: %d entries, want 4", len(got))
	}

	// Paging with _count follows next links to the end.
	var paged []entry
	next := ts.Base + "/_history?_count=4"
	for pages := 0; next != ""; pages++ {
		if pages > 20 { // 6 entries here and 71 written at start (9 profiles, 62 terminology resources)
			t.Fatal("too many pages")
		}
		res := do(t, "GET", next, "").wantStatus(t, 200)
		paged = append(paged, entries(res)...)
		next = ""
		for _, l := range res.object(t)["link"].([]any) {
			if l.(map[string]any)["relation"] == "next" {
				next = l.(map[string]any)["url"].(string)
			}
		}
	}
	if fmt.Sprint(paged) != fmt.Sprint(sys) {
		t.Errorf("paged history %v, want %v", paged, sys)
	}

	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/_history?_since=yesterday", 400},
		{"/_history?_count=many", 400},
		{"/_history?_cursor=abc", 400},
		{"/_history?_at=2026", 400},
		{"/Patient/nobody/_history", 404},
		{"/Child/_history", 404},
	} {
		res := do(t, "GET", ts.Base+tt.path, "").wantStatus(t, tt.status)
		res.outcome(t)
	}
	if n := len(entries(do(t, "GET", ts.Base+"/_history?_count=0", "").wantStatus(t, 200))); n != 0 {
		t.Errorf("_count=0: %d entries, want none", n)
	}
	res := do(t, "GET", ts.Base+"/_history", "").wantStatus(t, http.StatusOK)
	if res.object(t)["type"] != "history" {
		t.Errorf("history Bundle type %v, want history", res.object(t)["type"])
	}
}
