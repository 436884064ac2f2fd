package server_test

import (
	"database/sql"
	"net/http"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/server"
	_ "modernc.org/sqlite" // to break the database under the server
)

func TestErrors_Routes(t *testing.T) {
	ts := startServer(t, server.Config{})
	for _, tt := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"PATCH", "/fhir/Patient/p1/_history/1", 405, "not-supported"},
		{"POST", "/fhir/Patient/p1", 405, "not-supported"},
		{"DELETE", "/fhir/metadata", 405, "not-supported"},
		{"GET", "/nothing-here", 404, "not-found"},
		{"GET", "/fhir/Patient/p1/_history/1/extra", 404, "not-found"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			res := do(t, tt.method, ts.URL+tt.path, "").wantStatus(t, tt.status)
			if code, _, _ := res.outcome(t); code != tt.code {
				t.Errorf("issue code %q, want %q", code, tt.code)
			}
		})
	}
}

func TestErrors_InternalIsOpaque(t *testing.T) {
	ts := startServer(t, server.Config{})
	// Break the database under the running server: every write now fails
	// inside SQLite with an error the server did not foresee.
	db, err := sql.Open("sqlite", ts.Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TABLE history`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	res := do(t, "POST", ts.Base+"/Patient", patientJSON("", nhs1), "X-Request-Id", "req-500").wantStatus(t, http.StatusInternalServerError)
	code, diag, _ := res.outcome(t)
	if code != "exception" || !strings.Contains(diag, "req-500") || strings.Contains(diag, "sqlite") || strings.Contains(diag, "history") {
		t.Errorf("500 outcome %q %q: want exception, naming the request id and no internal detail", code, diag)
	}
	if !strings.Contains(ts.Log(), "req-500") || !strings.Contains(ts.Log(), "no such table") {
		t.Errorf("log %s: want the request id and the internal error", ts.Log())
	}
}

func TestErrors_StoreClosed(t *testing.T) {
	ts := startServer(t, server.Config{})
	ts.Store.Close() // as during shutdown
	res := do(t, "POST", ts.Base+"/Patient", patientJSON("", nhs1)).wantStatus(t, http.StatusServiceUnavailable)
	if code, _, _ := res.outcome(t); code != "transient" {
		t.Errorf("write to a closed store: issue code %q, want transient", code)
	}
	do(t, "GET", ts.URL+"/readyz", "").wantStatus(t, http.StatusServiceUnavailable)
	do(t, "GET", ts.URL+"/healthz", "").wantStatus(t, http.StatusOK)
}

func TestRequestID(t *testing.T) {
	ts := startServer(t, server.Config{})
	if got := do(t, "GET", ts.Base+"/metadata", "", "X-Request-Id", "abc-123").Header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("X-Request-Id echoed %q, want abc-123", got)
	}
	a := do(t, "GET", ts.Base+"/metadata", "").Header.Get("X-Request-Id")
	b := do(t, "GET", ts.Base+"/metadata", "").Header.Get("X-Request-Id")
	if a == "" || a == b {
		t.Errorf("generated request ids %q and %q, want two different non-empty ids", a, b)
	}
	if got := do(t, "GET", ts.Base+"/metadata", "", "X-Request-Id", "bad id\u00e9<script>").Header.Get("X-Request-Id"); strings.Contains(got, "<") || got == "" {
		t.Errorf("malformed X-Request-Id came back as %q, want a fresh id", got)
	}
}

// TestPrivacy checks that neither logs nor error messages carry patient data.
func TestPrivacy(t *testing.T) {
	ts := startServer(t, server.Config{})
	do(t, "PUT", ts.Base+"/Patient/"+nhs1, patientJSON(nhs1, nhs1)).wantStatus(t, 201)
	do(t, "GET", ts.Base+"/Patient/"+nhs1+"?identifier="+nhs2, "").wantStatus(t, 200)
	do(t, "GET", ts.Base+"/Patient/"+nhs2, "").wantStatus(t, 404)
	bad := do(t, "POST", ts.Base+"/Patient", `{"resourceType":"Patient","birthDate":"Testchild-`+nhs2+`"}`).wantStatus(t, 400)
	if strings.Contains(string(bad.Body), nhs2) || strings.Contains(string(bad.Body), "Testchild") {
		t.Errorf("error body %s quotes the submitted value", bad.Body)
	}
	gone := do(t, "GET", ts.Base+"/Patient/"+nhs2, "").wantStatus(t, 404)
	if strings.Contains(string(gone.Body), nhs2) {
		t.Errorf("404 body %s echoes the id", gone.Body)
	}
	log := ts.Log()
	for _, secret := range []string{nhs1, nhs2, "Testchild", "Alex"} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains %q:\n%s", secret, log)
		}
	}
	if !strings.Contains(log, `"route":"/fhir/:type/:id"`) {
		t.Errorf("log %s: want request lines with the route pattern", log)
	}
}
