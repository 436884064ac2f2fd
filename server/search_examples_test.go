package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/server"
)

// example is one official R4 example, decoded for the oracles below.
type example struct {
	typ, id string
	m       map[string]any
}

// TestSearch_R4Examples loads the official R4 examples and runs searches
// whose expected answers come from small oracles that read the examples'
// JSON directly, independently of the index extractor and the SQL.
func TestSearch_R4Examples(t *testing.T) {
	ts := startServer(t, server.Config{})
	files, err := filepath.Glob("../testdata/r4-examples/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	var exs []example
	for _, f := range files {
		if knownRejects[filepath.Base(f)] != "" {
			continue
		}
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		typ, _ := m["resourceType"].(string)
		id, _ := m["id"].(string)
		if id == "" || slices.ContainsFunc(exs, func(e example) bool { return e.typ == typ && e.id == id }) {
			continue
		}
		put(t, ts, typ+"/"+id, string(body))
		exs = append(exs, example{typ, id, m})
	}

	str := func(v any) string { s, _ := v.(string); return s }
	list := func(v any) []any {
		switch v := v.(type) {
		case []any:
			return v
		case nil:
			return nil
		}
		return []any{v}
	}
	obj := func(v any) map[string]any { m, _ := v.(map[string]any); return m }
	hasCoding := func(cc any, system, code string) bool {
		for _, c := range list(obj(cc)["coding"]) {
			if str(obj(c)["code"]) == code && (system == "" || str(obj(c)["system"]) == system) {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		query  string
		typ    string
		oracle func(m map[string]any) bool
	}{
		{"Patient?gender=male", "Patient", func(m map[string]any) bool { return m["gender"] == "male" }},
		{"Patient?family=van", "Patient", func(m map[string]any) bool {
			for _, n := range list(m["name"]) {
				if strings.HasPrefix(strings.ToLower(str(obj(n)["family"])), "van") {
					return true
				}
			}
			return false
		}},
		{"Patient?birthdate=lt1970", "Patient", func(m map[string]any) bool {
			b := str(m["birthDate"])
			return b != "" && b < "1970"
		}},
		{"Patient?active=true", "Patient", func(m map[string]any) bool { return m["active"] == true }},
		{"Observation?code=" + url.QueryEscape("http://loinc.org|29463-7"), "Observation", func(m map[string]any) bool {
			return hasCoding(m["code"], "http://loinc.org", "29463-7")
		}},
		{"Observation?subject=Patient/example", "Observation", func(m map[string]any) bool {
			return str(obj(m["subject"])["reference"]) == "Patient/example"
		}},
		{"Observation?value-quantity=gt100", "Observation", func(m map[string]any) bool {
			v, ok := obj(m["valueQuantity"])["value"].(float64)
			return ok && v > 100
		}},
		{"Encounter?status=finished", "Encounter", func(m map[string]any) bool { return m["status"] == "finished" }},
		{"Organization?name=health", "Organization", func(m map[string]any) bool {
			return strings.HasPrefix(strings.ToLower(str(m["name"])), "health")
		}},
		{"Organization?name:contains=health", "Organization", func(m map[string]any) bool {
			return strings.Contains(strings.ToLower(str(m["name"])), "health")
		}},
		{"Practitioner?identifier=" + url.QueryEscape("urn:oid:2.16.528.1.1007.3.1|"), "Practitioner", func(m map[string]any) bool {
			for _, i := range list(m["identifier"]) {
				if str(obj(i)["system"]) == "urn:oid:2.16.528.1.1007.3.1" {
					return true
				}
			}
			return false
		}},
		{"CarePlan?status=active", "CarePlan", func(m map[string]any) bool { return m["status"] == "active" }},
		{"CarePlan?subject=Patient/example", "CarePlan", func(m map[string]any) bool {
			return str(obj(m["subject"])["reference"]) == "Patient/example"
		}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			var want []string
			for _, e := range exs {
				if e.typ == tc.typ && tc.oracle(e.m) {
					want = append(want, e.typ+"/"+e.id)
				}
			}
			res := do(t, http.MethodGet, ts.Base+"/"+tc.query+"&_count=1000", "").wantStatus(t, http.StatusOK)
			got := decodeBundle(t, res).ids("match")
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("GET %s: %q, want %q", tc.query, got, want)
			}
			if len(want) == 0 {
				t.Errorf("GET %s: the oracle finds no example; pick a query that tests something", tc.query)
			}
		})
	}
}
