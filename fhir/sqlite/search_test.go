package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// scanLine finds a step of a query plan that reads a whole table or index
// (SCAN), other than the page query's own result (q).
var scanLine = regexp.MustCompile(`^\s*SCAN (\S+)`)

// TestSearch_ExplainHotLookups checks that the CP-IS hot lookups are index
// searches from end to end: EXPLAIN QUERY PLAN shows no SCAN of res, of
// history or of an index table.
func TestSearch_ExplainHotLookups(t *testing.T) {
	s := MustOpen(t, time.Now)
	ctx := context.Background()
	err := s.Write(ctx, func(tx fhir.Tx) error {
		for i := range 300 {
			nhs, ok := nhsNumber(i)
			if !ok {
				continue
			}
			pid := "p" + strconv.Itoa(i)
			if err := tx.Put(&fhir.Resource{Type: "Patient", ID: pid, VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: []byte(`{}`),
				Index: &fhir.Index{Tokens: []fhir.IndexToken{{Param: "identifier", System: nhsSystem, Code: nhs}}}}); err != nil {
				return err
			}
			if err := tx.Put(&fhir.Resource{Type: "Flag", ID: "f" + strconv.Itoa(i), VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: []byte(`{}`),
				Index: flagIndex(i, pid, nhs)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := fhir.LookupSearchParam("Flag", "subject")
	patient, _ := fhir.LookupSearchParam("Flag", "patient")
	identifier, _ := fhir.LookupSearchParam("Patient", "identifier")
	nhs := nhsValue("9990000018")
	for _, c := range []struct {
		name string
		q    *fhir.Search
		want []string // steps the plan must have
	}{
		{"Flag?subject:identifier=nhs|X&status=active", &fhir.Search{Type: "Flag", Count: 20, Filters: []fhir.Filter{
			{Param: subject, Modifier: "identifier", Values: []fhir.Value{nhs}},
			{Param: flagStatus, Values: []fhir.Value{{Code: "active"}}},
		}}, []string{
			"USING PRIMARY KEY (pid=? AND code=? AND system=?)",
			"EXISTS USING COVERING INDEX idx_token_rid (rid=? AND pid=? AND code=?)",
			"SEARCH h USING INTEGER PRIMARY KEY (rowid=?)",
		}},
		{"Flag?patient.identifier=nhs|X", &fhir.Search{Type: "Flag", Count: 20, Filters: []fhir.Filter{{Param: patient, Chain: []fhir.ChainTarget{
			{Type: "Patient", Filter: fhir.Filter{Param: identifier, Values: []fhir.Value{nhs}}},
		}}}}, []string{
			"USING PRIMARY KEY (pid=? AND code=? AND system=?)",
			"USING PRIMARY KEY (pid=? AND ref_id=? AND ref_type=?)",
			"SEARCH h USING INTEGER PRIMARY KEY (rowid=?)",
		}},
		{"Flag?subject:identifier=nhs|X&status=active, restricted to that child", &fhir.Search{Type: "Flag", Count: 20, Filters: []fhir.Filter{
			{Param: subject, Modifier: "identifier", Values: []fhir.Value{nhs}},
			{Param: flagStatus, Values: []fhir.Value{{Code: "active"}}},
		}, Restrict: &fhir.Restriction{Types: map[string][]fhir.Filter{
			"Flag": {{Any: []fhir.Filter{{Param: subject, Modifier: "identifier", Values: []fhir.Value{nhs}},
				{Param: subject, Chain: []fhir.ChainTarget{{Type: "Patient", Filter: fhir.Filter{Param: identifier, Values: []fhir.Value{nhs}}}}}}}},
			"Patient": {{Param: identifier, Values: []fhir.Value{nhs}}},
		}}}, []string{
			"USING PRIMARY KEY (pid=? AND code=? AND system=?)",
			"SEARCH h USING INTEGER PRIMARY KEY (rowid=?)",
		}},
		// The CP-IS lookup as the server runs it (server/cpis.go):
		// subject:identifier OR subject.identifier, restricted to that child.
		{"CP-IS lookup: subject:identifier=nhs|X or subject.identifier=nhs|X, restricted", &fhir.Search{Type: "Flag", Count: 20, Filters: []fhir.Filter{
			{Any: []fhir.Filter{{Param: subject, Modifier: "identifier", Values: []fhir.Value{nhs}},
				{Param: subject, Chain: []fhir.ChainTarget{{Type: "Patient", Filter: fhir.Filter{Param: identifier, Values: []fhir.Value{nhs}}}}}}},
		}, Restrict: &fhir.Restriction{Types: map[string][]fhir.Filter{
			"Flag": {{Any: []fhir.Filter{{Param: subject, Modifier: "identifier", Values: []fhir.Value{nhs}},
				{Param: subject, Chain: []fhir.ChainTarget{{Type: "Patient", Filter: fhir.Filter{Param: identifier, Values: []fhir.Value{nhs}}}}}}}},
			"Patient": {{Param: identifier, Values: []fhir.Value{nhs}}},
		}}}, []string{
			"USING PRIMARY KEY (pid=? AND code=? AND system=?)",
			"USING PRIMARY KEY (pid=? AND ref_id=? AND ref_type=?)",
			"SEARCH h USING INTEGER PRIMARY KEY (rowid=?)",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan, err := s.Explain(ctx, c.q)
			if err != nil {
				t.Fatalf("Explain: %v", err)
			}
			t.Logf("EXPLAIN QUERY PLAN:\n%s", plan)
			for _, line := range strings.Split(plan, "\n") {
				if m := scanLine.FindStringSubmatch(line); m != nil && m[1] != "q" {
					t.Errorf("plan scans %s: %q", m[1], line)
				}
			}
			for _, w := range c.want {
				if !strings.Contains(plan, w) {
					t.Errorf("plan has no step %q", w)
				}
			}
			page, err := s.Search(ctx, c.q, nil, false)
			if err != nil {
				t.Fatalf("Search: %v", err)
			}
			if got := len(page.Matches); got != 1 || page.Matches[0].ID != "f1" {
				t.Errorf("Search: %d matches, want Flag/f1", got)
			}
		})
	}
}

// TestReindex_KeepsNewerWrites updates a resource while Reindex is between
// reading its batch and writing it: the update's rows must win.
func TestReindex_KeepsNewerWrites(t *testing.T) {
	s := MustOpen(t, time.Now)
	ctx := context.Background()
	gender := func(code string) *fhir.Index {
		return &fhir.Index{Tokens: []fhir.IndexToken{{Param: "gender", Code: code}}}
	}
	for _, id := range []string{"p1", "p2"} {
		put(t, s, id, 1, gender("female"))
	}
	err := s.Reindex(ctx, func(typ string, body []byte) (*fhir.Index, error) {
		if strings.Contains(string(body), `"p1"`) {
			put(t, s, "p1", 2, gender("male")) // a write that lands first
		}
		return gender("unknown"), nil
	}, nil)
	if err != nil {
		t.Fatalf("Reindex: %v", err)
	}
	genderParam, _ := fhir.LookupSearchParam("Patient", "gender")
	for code, want := range map[string][]string{"male": {"Patient/p1"}, "unknown": {"Patient/p2"}, "female": nil} {
		q := &fhir.Search{Type: "Patient", Count: 10, Filters: []fhir.Filter{{Param: genderParam, Values: []fhir.Value{{Code: code}}}}}
		page, err := s.Search(ctx, q, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range page.Matches {
			got = append(got, r.Ref())
		}
		if !slices.Equal(got, want) {
			t.Errorf("gender=%s after Reindex with a concurrent update: %v, want %v", code, got, want)
		}
	}
}

func put(t *testing.T, s *sqlite.Store, id string, version int64, idx *fhir.Index) {
	t.Helper()
	err := s.Write(context.Background(), func(tx fhir.Tx) error {
		return tx.Put(&fhir.Resource{Type: "Patient", ID: id, VersionID: version, LastUpdated: tx.Now(), Method: fhir.MethodUpdate,
			JSON: []byte(`{"resourceType":"Patient","id":"` + id + `"}`), Index: idx})
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func TestIndexVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpis.db")
	ctx := context.Background()
	s, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.IndexVersion(ctx); err != nil || v != "" {
		t.Errorf("IndexVersion of a new store: %q, %v; want empty", v, err)
	}
	for _, v := range []string{"1", "2"} {
		if err := s.SetIndexVersion(ctx, v); err != nil {
			t.Fatalf("SetIndexVersion(%q): %v", v, err)
		}
		if got, err := s.IndexVersion(ctx); err != nil || got != v {
			t.Errorf("IndexVersion after SetIndexVersion(%q): %q, %v", v, got, err)
		}
	}
	s.Close()
	if s, err = sqlite.Open(path, sqlite.Config{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.IndexVersion(ctx); err != nil || v != "2" {
		t.Errorf("IndexVersion after reopening: %q, %v; want 2", v, err)
	}
}

// TestMigration_ResourceTable opens a database written before search (the
// resource table of migration 0001) and checks that its resources keep
// their versions and come in the order they were created.
func TestMigration_ResourceTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpis.db")
	schema, err := os.ReadFile("migration/0001_resources.sql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	lu := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	for _, stmt := range []string{
		`CREATE TABLE schema_migration (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`,
		string(schema),
		`INSERT INTO schema_migration VALUES ('migration/0001_resources.sql', '2026-01-01T00:00:00Z')`,
		// p1 created, p3 created, p1 updated, p2 created, p2 deleted.
		fmt.Sprintf(`INSERT INTO history (seq, type, id, version, last_updated, method, body) VALUES
			(1, 'Patient', 'p1', 1, %d, 'PUT', '{"v":1}'),
			(2, 'Patient', 'p3', 1, %d, 'PUT', '{"v":1}'),
			(3, 'Patient', 'p1', 2, %d, 'PUT', '{"v":2}'),
			(4, 'Patient', 'p2', 1, %d, 'PUT', '{"v":1}'),
			(5, 'Patient', 'p2', 2, %d, 'DELETE', NULL)`, lu, lu, lu, lu, lu),
		`INSERT INTO resource (type, id, version, seq) VALUES ('Patient', 'p1', 2, 3), ('Patient', 'p3', 1, 2), ('Patient', 'p2', 2, 5)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()

	s, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatalf("Open after 0001: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	if r, err := s.Read(ctx, "Patient", "p1"); err != nil || r.VersionID != 2 || string(r.JSON) != `{"v":2}` {
		t.Errorf("Read Patient/p1: %v, %v; want version 2", r, err)
	}
	if r, err := s.Read(ctx, "Patient", "p2"); err != nil || !r.Deleted() {
		t.Errorf("Read Patient/p2: %v, %v; want the delete marker", r, err)
	}
	fhirtest.MustPut(t, s, "Patient", "p4", 1, `{"v":1}`)
	page, err := s.Search(ctx, &fhir.Search{Type: "Patient", Count: 10}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range page.Matches {
		got = append(got, r.ID+"/"+strconv.FormatInt(r.VersionID, 10))
	}
	if want := []string{"p1/2", "p3/1", "p4/1"}; !slices.Equal(got, want) {
		t.Errorf("Patients after the migration, in insertion order: %v, want %v", got, want)
	}
}
