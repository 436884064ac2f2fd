package server_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/server"
)

func TestCreate(t *testing.T) {
	ts := startServer(t, server.Config{})
	res := do(t, "POST", ts.Base+"/Patient", patientJSON("client-chosen", nhs1)).wantStatus(t, http.StatusCreated)
	loc := res.Header.Get("Location")
	m := regexp.MustCompile(`^` + regexp.QuoteMeta(ts.Base) + `/Patient/([A-Za-z0-9\-.]{1,64})/_history/1$`).FindStringSubmatch(loc)
	if m == nil {
		t.Fatalf("Location %q, want %s/Patient/{id}/_history/1", loc, ts.Base)
	}
	id := m[1]
	if id == "client-chosen" {
		t.Errorf("create kept the body's id; the server must assign one")
	}
	if got := res.Header.Get("ETag"); got != `W/"1"` {
		t.Errorf("ETag %q, want W/\"1\"", got)
	}
	if got := res.Header.Get("Last-Modified"); got != "Sun, 01 Mar 2026 09:00:00 GMT" {
		t.Errorf("Last-Modified %q, want the fake clock's time", got)
	}
	body := res.object(t)
	meta, _ := body["meta"].(map[string]any)
	if body["id"] != id || meta["versionId"] != "1" || meta["lastUpdated"] != "2026-03-01T09:00:00.000Z" {
		t.Errorf("created body id %v meta %v; want id %s, versionId 1, lastUpdated 2026-03-01T09:00:00.000Z", body["id"], meta, id)
	}
	read := do(t, "GET", ts.Base+"/Patient/"+id, "").wantStatus(t, http.StatusOK)
	if string(read.Body) != string(res.Body) {
		t.Errorf("read after create: %s, want the created body %s", read.Body, res.Body)
	}
}

func TestCreate_Prefer(t *testing.T) {
	ts := startServer(t, server.Config{})
	t.Run("minimal", func(t *testing.T) {
		res := do(t, "POST", ts.Base+"/Patient", patientJSON("", nhs1), "Prefer", "return=minimal").wantStatus(t, http.StatusCreated)
		if len(res.Body) != 0 || res.Header.Get("Location") == "" || res.Header.Get("ETag") != `W/"1"` {
			t.Errorf("return=minimal: body %q, Location %q, ETag %q; want no body, a Location and an ETag", res.Body, res.Header.Get("Location"), res.Header.Get("ETag"))
		}
	})
	t.Run("OperationOutcome", func(t *testing.T) {
		res := do(t, "POST", ts.Base+"/Patient", patientJSON("", nhs1), "Prefer", "return=OperationOutcome").wantStatus(t, http.StatusCreated)
		if code, _, _ := res.outcome(t); code != "informational" {
			t.Errorf("return=OperationOutcome: issue code %q, want informational", code)
		}
	})
	t.Run("representation", func(t *testing.T) {
		res := do(t, "POST", ts.Base+"/Patient", patientJSON("", nhs1), "Prefer", "return=representation").wantStatus(t, http.StatusCreated)
		if res.object(t)["resourceType"] != "Patient" {
			t.Errorf("return=representation: body %s, want the Patient", res.Body)
		}
	})
}

func TestCreate_Errors(t *testing.T) {
	ts := startServer(t, server.Config{MaxBodyBytes: 4096})
	tests := []struct {
		name, path, body string
		headers          []string
		status           int
		code             string
		expression       string
	}{
		{"invalid JSON", "/Patient", `{"resourceType":"Patient",`, nil, 400, "structure", ""},
		{"not an object", "/Patient", `[{"resourceType":"Patient"}]`, nil, 400, "structure", ""},
		{"empty body", "/Patient", ` `, nil, 400, "structure", ""},
		{"unknown element", "/Patient", `{"resourceType":"Patient","colour":"blue"}`, nil, 400, "structure", "Patient.colour"},
		{"bad code", "/Patient", `{"resourceType":"Patient","gender":"unknown-gender"}`, nil, 400, "invalid", "Patient.gender"},
		{"bad date", "/Patient", `{"resourceType":"Patient","birthDate":"2015-13-45"}`, nil, 400, "invalid", "Patient.birthDate"},
		{"missing required", "/Flag", `{"resourceType":"Flag","status":"active","subject":{"reference":"Patient/1"}}`, nil, 400, "required", "Flag.code"},
		{"unknown resourceType in body", "/Patient", `{"resourceType":"Patientx"}`, nil, 400, "not-supported", "resourceType"},
		{"body of another type", "/Flag", patientJSON("", nhs1), nil, 400, "invalid", "resourceType"},
		{"unknown type in URL", "/Child", patientJSON("", nhs1), nil, 404, "not-found", ""},
		{"XML body", "/Patient", `<Patient xmlns="http://hl7.org/fhir"/>`, []string{"Content-Type", "application/fhir+xml"}, 415, "not-supported", ""},
		{"too large", "/Patient", `{"resourceType":"Patient","name":[{"family":"` + strings.Repeat("x", 5000) + `"}]}`, nil, 413, "too-long", ""},
		{"conditional create on an unknown parameter", "/Patient", patientJSON("", nhs1), []string{"If-None-Exist", "colour=blue"}, 400, "not-supported", ""},
		{"conditional create with a malformed search", "/Patient", patientJSON("", nhs1), []string{"If-None-Exist", "birthdate=notadate"}, 400, "invalid", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, "POST", ts.Base+tt.path, tt.body, tt.headers...).wantStatus(t, tt.status)
			code, diag, expr := res.outcome(t)
			if code != tt.code {
				t.Errorf("issue code %q, want %q (diagnostics %q)", code, tt.code, diag)
			}
			if tt.expression != "" && (len(expr) == 0 || expr[0] != tt.expression) {
				t.Errorf("issue expression %v, want %q (diagnostics %q)", expr, tt.expression, diag)
			}
		})
	}
	// Nothing was written by any of the failures.
	// (The server writes only the CP-IS StructureDefinitions and the
	// terminology's CodeSystems and ValueSets at start.)
	res := do(t, "GET", ts.Base+"/_history", "").wantStatus(t, http.StatusOK)
	entries, _ := res.object(t)["entry"].([]any)
	for _, e := range entries {
		if u := e.(map[string]any)["request"].(map[string]any)["url"].(string); !strings.HasPrefix(u, "StructureDefinition/CPIS-") && !strings.HasPrefix(u, "CodeSystem/") && !strings.HasPrefix(u, "ValueSet/") {
			t.Errorf("history after failed creates holds %s, want only the profiles and terminology written at start", u)
		}
	}
}
