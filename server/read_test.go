package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/server"
)

func TestRead(t *testing.T) {
	ts := startServer(t, server.Config{})
	do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1)).wantStatus(t, http.StatusCreated)
	ts.Clock.Add(time.Hour)
	upd := do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs2)).wantStatus(t, http.StatusOK)

	tests := []struct {
		name    string
		path    string
		headers []string
		status  int
		etag    string
	}{
		{"current", "/Patient/p1", nil, 200, `W/"2"`},
		{"If-None-Match current", "/Patient/p1", []string{"If-None-Match", `W/"2"`}, 304, `W/"2"`},
		{"If-None-Match old", "/Patient/p1", []string{"If-None-Match", `W/"1"`}, 200, `W/"2"`},
		{"If-Modified-Since later", "/Patient/p1", []string{"If-Modified-Since", "Sun, 01 Mar 2026 10:00:00 GMT"}, 304, `W/"2"`},
		{"If-Modified-Since earlier", "/Patient/p1", []string{"If-Modified-Since", "Sun, 01 Mar 2026 09:59:59 GMT"}, 200, `W/"2"`},
		{"vread 1", "/Patient/p1/_history/1", nil, 200, `W/"1"`},
		{"vread 2", "/Patient/p1/_history/2", nil, 200, `W/"2"`},
		{"vread If-None-Match", "/Patient/p1/_history/1", []string{"If-None-Match", `W/"1"`}, 304, `W/"1"`},
		{"vread missing version", "/Patient/p1/_history/3", nil, 404, ""},
		{"vread bad version", "/Patient/p1/_history/x", nil, 404, ""},
		{"unknown id", "/Patient/p2", nil, 404, ""},
		{"invalid id", "/Patient/" + strings.Repeat("a", 65), nil, 404, ""},
		{"unknown type", "/Child/p1", nil, 404, ""},
		{"other type same id", "/Flag/p1", nil, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, "GET", ts.Base+tt.path, "", tt.headers...).wantStatus(t, tt.status)
			if got := res.Header.Get("ETag"); got != tt.etag {
				t.Errorf("ETag %q, want %q", got, tt.etag)
			}
			switch tt.status {
			case 200:
				if !strings.Contains(string(res.Body), `"versionId":"`+strings.Trim(strings.TrimPrefix(tt.etag, "W/"), `"`)+`"`) {
					t.Errorf("body %s does not carry version %s", res.Body, tt.etag)
				}
			case 304:
				if len(res.Body) != 0 {
					t.Errorf("304 with a body: %s", res.Body)
				}
			case 404:
				if code, _, _ := res.outcome(t); code != "not-found" {
					t.Errorf("issue code %q, want not-found", code)
				}
			}
		})
	}
	if got := do(t, "GET", ts.Base+"/Patient/p1", "").Body; string(got) != string(upd.Body) {
		t.Errorf("read %s, want the update's body %s", got, upd.Body)
	}
	if res := do(t, "HEAD", ts.Base+"/Patient/p1", "").wantStatus(t, 200); len(res.Body) != 0 || res.Header.Get("ETag") != `W/"2"` {
		t.Errorf("HEAD: body %q ETag %q, want no body and W/\"2\"", res.Body, res.Header.Get("ETag"))
	}
}

func TestRead_PrettyAndFormat(t *testing.T) {
	ts := startServer(t, server.Config{})
	do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1)).wantStatus(t, http.StatusCreated)
	pretty := do(t, "GET", ts.Base+"/Patient/p1?_pretty=true", "").wantStatus(t, 200)
	if !strings.Contains(string(pretty.Body), "\n  \"") {
		t.Errorf("_pretty=true: body %s, want indented JSON", pretty.Body)
	}
	for _, f := range []string{"json", "application/fhir+json", "application/json"} {
		do(t, "GET", ts.Base+"/Patient/p1?_format="+f, "").wantStatus(t, 200)
	}
	for _, a := range []string{"application/fhir+json", "application/json", "*/*", "application/fhir+xml;q=0.9, application/fhir+json"} {
		do(t, "GET", ts.Base+"/Patient/p1", "", "Accept", a).wantStatus(t, 200)
	}
	for _, tt := range []struct{ query, accept string }{{"?_format=xml", ""}, {"?%5Fformat=xml", ""}, {"?_format=application/fhir%2Bxml", ""}, {"", "application/fhir+xml"}, {"", "text/html"}} {
		res := do(t, "GET", ts.Base+"/Patient/p1"+tt.query, "", "Accept", tt.accept).wantStatus(t, http.StatusNotAcceptable)
		if code, diag, _ := res.outcome(t); code != "not-supported" || !strings.Contains(diag, "JSON") {
			t.Errorf("%s Accept %q: issue %q %q, want not-supported saying JSON is supported", tt.query, tt.accept, code, diag)
		}
	}
}
