package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cpis-fhir/cpis/server"
)

const mediaJSONPatch = "application/json-patch+json"

func TestPatch(t *testing.T) {
	ts := startServer(t, server.Config{})
	do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1)).wantStatus(t, http.StatusCreated)

	t.Run("JSON Patch", func(t *testing.T) {
		res := do(t, "PATCH", ts.Base+"/Patient/p1",
			`[{"op":"test","path":"/gender","value":"female"},{"op":"replace","path":"/gender","value":"male"}]`,
			"Content-Type", mediaJSONPatch).wantStatus(t, http.StatusOK)
		if res.Header.Get("ETag") != `W/"2"` || res.Header.Get("Location") != ts.Base+"/Patient/p1/_history/2" {
			t.Errorf("PATCH: ETag %q Location %q, want W/\"2\" and .../_history/2", res.Header.Get("ETag"), res.Header.Get("Location"))
		}
		m := res.object(t)
		if m["gender"] != "male" || m["birthDate"] != "2015-04-01" {
			t.Errorf("PATCH body %s: want gender male and the birthDate kept", res.Body)
		}
		got := do(t, "GET", ts.Base+"/Patient/p1", "").wantStatus(t, http.StatusOK).object(t)
		if got["gender"] != "male" || got["meta"].(map[string]any)["versionId"] != "2" {
			t.Errorf("GET after PATCH: gender %v meta %v, want male, version 2", got["gender"], got["meta"])
		}
		// The search index follows the patch.
		b := do(t, "GET", ts.Base+"/Patient?gender=male", "").wantStatus(t, http.StatusOK)
		if !strings.Contains(string(b.Body), `"id":"p1"`) {
			t.Errorf("Patient?gender=male after the patch: %s, want p1", b.Body)
		}
	})

	t.Run("FHIRPath Patch", func(t *testing.T) {
		patch := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[` +
			`{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient.name[0]"},` +
			`{"name":"name","valueString":"given"},{"name":"value","valueString":"Jo"}]},` +
			`{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.birthDate"},` +
			`{"name":"value","valueDate":"2015-04-02"}]}]}`
		res := do(t, "PATCH", ts.Base+"/Patient/p1", patch, "If-Match", `W/"2"`).wantStatus(t, http.StatusOK)
		if !strings.Contains(string(res.Body), `"given":["Alex","Jo"]`) || !strings.Contains(string(res.Body), `"birthDate":"2015-04-02"`) {
			t.Errorf("FHIRPath PATCH body %s: want given Alex, Jo and birthDate 2015-04-02", res.Body)
		}
		if res.Header.Get("ETag") != `W/"3"` {
			t.Errorf("FHIRPath PATCH: ETag %q, want W/\"3\"", res.Header.Get("ETag"))
		}
	})

	t.Run("Prefer return=minimal", func(t *testing.T) {
		res := do(t, "PATCH", ts.Base+"/Patient/p1", `[{"op":"remove","path":"/name/0/given/1"}]`,
			"Content-Type", mediaJSONPatch, "Prefer", "return=minimal").wantStatus(t, http.StatusOK)
		if len(res.Body) != 0 || res.Header.Get("ETag") != `W/"4"` {
			t.Errorf("minimal PATCH: body %q ETag %q, want no body and W/\"4\"", res.Body, res.Header.Get("ETag"))
		}
	})

	tests := []struct {
		name, path, body string
		headers          []string
		status           int
		code             string
		expression       string
	}{
		{"If-Match stale", "/Patient/p1", `[{"op":"replace","path":"/gender","value":"female"}]`,
			[]string{"Content-Type", mediaJSONPatch, "If-Match", `W/"1"`}, 412, "conflict", ""},
		{"If-Match malformed", "/Patient/p1", `[{"op":"replace","path":"/gender","value":"female"}]`,
			[]string{"Content-Type", mediaJSONPatch, "If-Match", `banana`}, 400, "invalid", ""},
		{"invalid result", "/Patient/p1", `[{"op":"replace","path":"/gender","value":"banana"}]`,
			[]string{"Content-Type", mediaJSONPatch}, 422, "", "Patient.gender"},
		{"unknown element in the result", "/Patient/p1", `[{"op":"add","path":"/colour","value":"red"}]`,
			[]string{"Content-Type", mediaJSONPatch}, 422, "structure", "Patient.colour"},
		{"failed test", "/Patient/p1", `[{"op":"test","path":"/gender","value":"female"}]`,
			[]string{"Content-Type", mediaJSONPatch}, 422, "processing", ""},
		{"path selects nothing", "/Patient/p1", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.deceasedBoolean"},{"name":"value","valueBoolean":true}]}]}`,
			nil, 422, "processing", ""},
		{"bad JSON Patch", "/Patient/p1", `{"op":"remove","path":"/gender"}`,
			[]string{"Content-Type", mediaJSONPatch}, 400, "invalid", ""},
		{"bad FHIRPath Patch", "/Patient/p1", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"explode"},{"name":"path","valueString":"Patient"}]}]}`,
			nil, 400, "invalid", ""},
		{"patch changes the id", "/Patient/p1", `[{"op":"replace","path":"/id","value":"p2"}]`,
			[]string{"Content-Type", mediaJSONPatch}, 400, "invalid", "Patient.id"},
		{"unknown resource", "/Patient/nobody", `[{"op":"remove","path":"/gender"}]`,
			[]string{"Content-Type", mediaJSONPatch}, 404, "not-found", ""},
		{"unknown type", "/Nothing/p1", `[{"op":"remove","path":"/gender"}]`,
			[]string{"Content-Type", mediaJSONPatch}, 404, "not-found", ""},
		{"text/plain", "/Patient/p1", `remove gender`,
			[]string{"Content-Type", "text/plain"}, 415, "not-supported", ""},
		{"XML patch", "/Patient/p1", `<diff/>`,
			[]string{"Content-Type", "application/xml-patch+xml"}, 415, "not-supported", ""},
		{"no Content-Type", "/Patient/p1", `[{"op":"remove","path":"/gender"}]`,
			[]string{"Content-Type", ""}, 415, "not-supported", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, "PATCH", ts.Base+tt.path, tt.body, tt.headers...).wantStatus(t, tt.status)
			code, diag, expr := res.outcome(t)
			if tt.code != "" && code != tt.code {
				t.Errorf("PATCH %s: issue code %q, want %q (%s)", tt.path, code, tt.code, diag)
			}
			if tt.expression != "" && (len(expr) == 0 || expr[0] != tt.expression) {
				t.Errorf("PATCH %s: issue expression %v, want %s (%s)", tt.path, expr, tt.expression, diag)
			}
			if strings.Contains(diag, nhs1) || strings.Contains(diag, "Alex") {
				t.Errorf("PATCH %s: diagnostics %q quote patient data", tt.path, diag)
			}
		})
	}
	// None of the failed patches wrote a version.
	if res := do(t, "GET", ts.Base+"/Patient/p1", ""); res.Header.Get("ETag") != `W/"4"` {
		t.Errorf("after the failed patches: ETag %q, want W/\"4\"", res.Header.Get("ETag"))
	}

	t.Run("deleted", func(t *testing.T) {
		do(t, "PUT", ts.Base+"/Patient/gone", patientJSON("gone", nhs2)).wantStatus(t, http.StatusCreated)
		do(t, "DELETE", ts.Base+"/Patient/gone", "").wantStatus(t, http.StatusNoContent)
		res := do(t, "PATCH", ts.Base+"/Patient/gone", `[{"op":"remove","path":"/gender"}]`, "Content-Type", mediaJSONPatch).wantStatus(t, http.StatusGone)
		if code, _, _ := res.outcome(t); code != "deleted" {
			t.Errorf("PATCH of a deleted resource: code %q, want deleted", code)
		}
	})
}

// TestPatch_Concurrent has clients patch one resource at once without
// If-Match: every 200 must show in the final resource (no lost update); a
// client may get 409 only when the resource kept changing under it.
func TestPatch_Concurrent(t *testing.T) {
	ts := startServer(t, server.Config{})
	do(t, "PUT", ts.Base+"/Patient/hot", patientJSON("hot", nhs1)).wantStatus(t, http.StatusCreated)
	const clients = 8
	statuses := make([]int, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			patch := fmt.Sprintf(`[{"op":"add","path":"/name/0/given/-","value":"Kid%c"}]`, 'A'+i)
			statuses[i] = do(t, "PATCH", ts.Base+"/Patient/hot", patch, "Content-Type", mediaJSONPatch).StatusCode
		}()
	}
	wg.Wait()
	body := string(do(t, "GET", ts.Base+"/Patient/hot", "").wantStatus(t, http.StatusOK).Body)
	ok := 0
	for i, st := range statuses {
		name := fmt.Sprintf(`"Kid%c"`, 'A'+i)
		switch st {
		case http.StatusOK:
			ok++
			if !strings.Contains(body, name) {
				t.Errorf("client %d got 200 but %s is not in the resource: %s", i, name, body)
			}
		case http.StatusConflict:
			if strings.Contains(body, name) {
				t.Errorf("client %d got 409 but %s is in the resource", i, name)
			}
		default:
			t.Errorf("client %d: status %d, want 200 or 409", i, st)
		}
	}
	if ok == 0 {
		t.Errorf("no concurrent patch succeeded: %v", statuses)
	}
	t.Logf("statuses %v", statuses)
	res := do(t, "GET", ts.Base+"/Patient/hot", "")
	if want := fmt.Sprintf(`W/"%d"`, 1+ok); res.Header.Get("ETag") != want {
		t.Errorf("after %d successful patches: ETag %q, want %s", ok, res.Header.Get("ETag"), want)
	}
}

// BenchmarkHTTP_Patch sends FHIRPath Patches (replace birthDate) from 32
// concurrent clients, each on its own 1.5 KB Patient: read, patch, parse
// and validate, durable write.
func BenchmarkHTTP_Patch(b *testing.B) {
	ts, client := benchServer(b)
	const patients = 64
	fixture := patientFixture(b)
	for i := range patients {
		body := bytes.Replace(fixture, []byte(`"resourceType": "Patient",`), []byte(fmt.Sprintf(`"resourceType": "Patient", "id": "b%d",`, i)), 1)
		req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/Patient/b%d", ts.Base, i), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		res, err := client.Do(req)
		if err != nil || res.StatusCode != http.StatusCreated {
			b.Fatalf("PUT b%d: %v %v", i, res, err)
		}
		res.Body.Close()
	}
	patch := []byte(`{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},` +
		`{"name":"path","valueString":"Patient.birthDate"},{"name":"value","valueDate":"2015-04-02"}]}]}`)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		url := fmt.Sprintf("%s/Patient/b%d", ts.Base, next.Add(1)%patients)
		for pb.Next() {
			req, _ := http.NewRequest("PATCH", url, bytes.NewReader(patch))
			req.Header.Set("Content-Type", "application/fhir+json")
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("PATCH: status %d, want 200", res.StatusCode)
				return
			}
		}
	})
}
